"""fitter_node: synchronized camera + LiDAR (+ 2D detections, + RViz clicks) -> 3D labels.

Subscribes (relative names, remap them): ``image`` (sensor_msgs/Image, or CompressedImage with
``compressed_image``), ``camera_info``, ``points`` (sensor_msgs/PointCloud2), ``detections``
(vision_msgs/Detection2DArray, unless ``sync_detections`` is false) and the RViz "Publish Point"
topic (``/clicked_point``). Publishes ``~/markers`` (MarkerArray), ``~/detections_3d``
(Detection3DArray, LiDAR frame, cloud stamp) and ``~/debug_image``.

The synchronizer callback only stores the set in a one-slot queue; a worker thread converts,
looks up TF, runs the Autolabeler and publishes, so a slow fit drops stale frames (counted and
logged) instead of building a backlog. All decisions live in the ROS-free modules
(``nodes/params.py``, ``runtime.py``, ``clicks.py``, ``inputs.py``, ``outputs.py``, ``io/frames.py``,
``io/messages.py``).
"""
from __future__ import annotations

import threading
import time

import numpy as np
from message_filters import ApproximateTimeSynchronizer, Subscriber
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time
from tf2_ros import Buffer, TransformException, TransformListener

from autolabel_ros.config import ConfigError
from autolabel_ros.core.geometry import transform_points
from autolabel_ros.io import messages as M
from autolabel_ros.io.frames import tf_frame_id
from autolabel_ros.nodes.clicks import ClickBuffer
from autolabel_ros.nodes.inputs import SkipFrame, frame_ids, prepare_frame
from autolabel_ros.nodes.outputs import frame_outputs
from autolabel_ros.nodes.params import fitter_specs, validate_parameters
from autolabel_ros.nodes.runtime import LatencyStats, LatestSlot, SyncMonitor, now_wall
from autolabel_ros.nodes.common import (StartupError, StatsLine, declare_parameters, image_msg_type,
                                        output_qos, rclpy_factory, run_node, sensor_qos, steady_timer,
                                        stop_worker, worker_loop)


class FitterNode(Node):
    def __init__(self, **kwargs):
        super().__init__('autolabel_fitter', **kwargs)
        values = declare_parameters(self, fitter_specs())
        self.cfg, self.settings = validate_parameters(values, fitter_specs(), self.get_name())
        s = self.settings
        self.factory = rclpy_factory()

        # Models once, at startup (lifecycle-style "configure"); failures end the node with exit 2.
        t0 = time.perf_counter()
        try:
            from autolabel_ros.core.device import set_torch_threads
            from autolabel_ros.pipeline import Autolabeler
            set_torch_threads(self.cfg.fit.threads)     # the process' torch threads, once at start
            self.labeler = Autolabeler(self.cfg)
            _ = self.labeler.segmenter   # SAM loads lazily: load it now, not on the first frame
        except (ConfigError, StartupError):
            raise
        except Exception as e:
            raise StartupError(f'{self.get_name()}: cannot build the Autolabeler: '
                               f'{type(e).__name__}: {e}') from e
        self.get_logger().info(f'Autolabeler ready in {time.perf_counter() - t0:.1f} s '
                               f'(device {self.cfg.device}, segmenter {self.cfg.segmenter.model})')

        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, self)

        from vision_msgs.msg import Detection2DArray, Detection3DArray
        from visualization_msgs.msg import MarkerArray
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from geometry_msgs.msg import PointStamped

        self.pub_markers = self.create_publisher(MarkerArray, '~/markers', output_qos())
        self.pub_det3d = self.create_publisher(Detection3DArray, '~/detections_3d', output_qos())
        self.pub_debug = (self.create_publisher(Image, '~/debug_image', output_qos(2))
                          if s.publish_debug_image else None)

        qos = sensor_qos(s.reliability, s.qos_depth)
        self.subs = [Subscriber(self, image_msg_type(s.compressed_image), 'image', qos_profile=qos),
                     Subscriber(self, CameraInfo, 'camera_info', qos_profile=qos),
                     Subscriber(self, PointCloud2, 'points', qos_profile=qos)]
        if s.sync_detections:
            self.subs.append(Subscriber(self, Detection2DArray, 'detections', qos_profile=qos))
        resolved = [sub.sub.topic_name for sub in self.subs]
        self.monitor = SyncMonitor(resolved, s.sync_warn_after, now_wall())
        for sub, name in zip(self.subs, resolved):
            sub.registerCallback(self._seen, name)
        self.sync = ApproximateTimeSynchronizer(self.subs, s.queue_size, s.slop)
        self.sync.registerCallback(self._on_frame)
        self.create_subscription(PointStamped, s.clicked_point_topic, self._on_click, 10)

        self.clicks = ClickBuffer(s.click_max_age)
        self.slot = LatestSlot()
        self.stats = LatencyStats()
        self._last_job = None
        self._stop = threading.Event()
        self.worker = threading.Thread(target=worker_loop, name='autolabel_fitter_worker', daemon=True,
                                       args=(self._stop, self.slot, lambda job: self._process(*job),
                                             self.get_logger(), 'frame'))
        self.worker.start()
        steady_timer(self, 1.0, self._watchdog)
        steady_timer(self, 10.0, StatsLine(self))
        self.get_logger().info(
            f'waiting for {", ".join(resolved)} (slop {s.slop} s, queue {s.queue_size}, '
            f'{s.reliability}); clicks on {s.clicked_point_topic}')

    # ------------------------------------------------------------------ callbacks (executor thread)

    def _seen(self, msg, topic: str):
        self.monitor.note(topic, M.header_stamp_ns(msg), now_wall())

    def _on_frame(self, image, info, cloud, dets=None):
        self.monitor.synced(now_wall())
        job = (image, info, cloud, dets)
        self._last_job = job
        if self.slot.put(job):
            self.get_logger().debug('worker busy: dropped the previous unprocessed frame')

    def _on_click(self, msg):
        p = msg.point
        self.clicks.add([p.x, p.y, p.z], msg.header.frame_id, now_wall())
        self.get_logger().info(f'click at ({p.x:.2f}, {p.y:.2f}, {p.z:.2f}) in {msg.header.frame_id!r}: '
                               f'point prompt for the next frame')
        # A paused bag sends no new frame: re-run the last one so the click takes effect now.
        if self._last_job is not None and not self.slot.pending:
            self.slot.put(self._last_job)

    def _watchdog(self):
        text = self.monitor.check(now_wall())
        if text:
            self.get_logger().warning(text)

    # ------------------------------------------------------------------ worker thread

    def _lookup(self, target: str, source: str, stamp, timeout: float):
        """4x4 target <- source at ``stamp`` (rclpy Time; Time() = latest), or None."""
        try:
            tf = self.tf_buffer.lookup_transform(target, source, stamp, timeout=Duration(seconds=timeout))
        except TransformException as e:
            self.get_logger().debug(f'TF {source} -> {target}: {e}')
            return None
        return M.transform_to_matrix(tf.transform)

    def _extrinsic(self, camera_frame: str, lidar_frame: str, stamp):
        T = self._lookup(camera_frame, lidar_frame, stamp, self.settings.tf_timeout)
        if T is None:
            T = self._lookup(camera_frame, lidar_frame, Time(), 0.0)   # a static mount: latest is fine
        if T is None and self.settings.T_cam_lidar_static is not None:
            T = self.settings.T_cam_lidar_static
        if T is None:
            self.get_logger().warning(
                f'no TF {lidar_frame} -> {camera_frame} at the frame stamp (waited '
                f'{self.settings.tf_timeout} s) and no static_transform parameter: frame skipped',
                throttle_duration_sec=5.0)
        return T

    def _clicks_in_camera(self, T_cam_lidar, lidar_frame: str, camera_frame: str) -> np.ndarray:
        """Pending clicks transformed into the camera optical frame (N x 3)."""
        pts = []
        for c in self.clicks.take(now_wall()):
            frame_id = tf_frame_id(c.frame_id)
            if frame_id in (lidar_frame, ''):
                pts.append(transform_points(T_cam_lidar, c.xyz[None])[0])
            elif frame_id == camera_frame:
                pts.append(c.xyz)
            else:
                T = self._lookup(camera_frame, frame_id, Time(), self.settings.tf_timeout)
                if T is None:
                    self.get_logger().warning(f'click in frame {c.frame_id!r}: no TF to '
                                              f'{camera_frame!r}; ignored')
                    continue
                pts.append(transform_points(T, c.xyz[None])[0])
        return np.array(pts, dtype=np.float64).reshape(-1, 3)

    def _process(self, image_msg, info_msg, cloud_msg, det_msg):
        t0 = time.perf_counter()
        s = self.settings
        lidar_frame, camera_frame = frame_ids(s, image_msg, cloud_msg)
        T = self._extrinsic(camera_frame, lidar_frame, Time.from_msg(cloud_msg.header.stamp))
        if T is None:
            return
        try:
            frame, prompts, outside = prepare_frame(
                image_msg, info_msg, cloud_msg, det_msg, T, s,
                clicks_cam=self._clicks_in_camera(T, lidar_frame, camera_frame))
        except SkipFrame as e:
            self.get_logger().warning(f'frame skipped: {e}', throttle_duration_sec=5.0)
            return
        if outside:
            self.get_logger().warning(f'{outside} click(s) fall outside the camera image; ignored')
        if self.cfg.proposals.lidar:
            from autolabel_ros.proposals import fused_prompts
            prompts, _ = fused_prompts(frame, prompts, self.cfg)
        labels, masks = [], None
        if prompts:
            result = self.labeler.label(frame, prompts)
            labels, masks = result.labels, result.masks
            if self.cfg.proposals.lidar:
                from autolabel_ros.proposals import reject_duplicates
                reject_duplicates(labels, self.cfg.proposals.duplicate_iou)
        # Always publish (also when empty): the DELETEALL marker clears the previous frame's boxes.
        out = frame_outputs(frame, labels, prompts, s, self.factory,
                                  image_stamp_ns=M.header_stamp_ns(image_msg), masks=masks)
        self.pub_markers.publish(out['markers'])
        self.pub_det3d.publish(out['detections_3d'])
        if self.pub_debug is not None:
            self.pub_debug.publish(out['debug_image'])
        processing = time.perf_counter() - t0
        latency = (self.get_clock().now().nanoseconds - frame.stamp_ns) / 1e9
        sources = None
        if self.cfg.proposals.lidar:
            from autolabel_ros.proposals import source_counts
            sources = source_counts(labels)
        self.stats.add(processing, latency, len(labels), sources=sources)
        accepted = sum(lab.accepted for lab in labels)
        self.get_logger().debug(f'{len(prompts)} prompts -> {accepted}/{len(labels)} accepted labels in '
                                f'{processing:.2f} s (latency {latency:.2f} s)')

    def destroy_node(self):
        stop_worker(self._stop, self.slot, self.worker)
        return super().destroy_node()


def main(args=None):
    return run_node(FitterNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
