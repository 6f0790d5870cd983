"""fitter_node: synchronized camera + LiDAR (+ 2D detections, + RViz clicks) -> 3D labels.

A lifecycle node (nodes/managed.py): configure loads the Autolabeler, activate subscribes.
Subscribes (relative names, remap them): ``image`` (sensor_msgs/Image, or CompressedImage with
``compressed_image``), ``camera_info``, ``points`` (sensor_msgs/PointCloud2), ``detections``
(vision_msgs/Detection2DArray, unless ``sync_detections`` is false) and the RViz "Publish Point"
topic (``/clicked_point``). Publishes ``~/markers`` (MarkerArray), ``~/detections_3d``
(Detection3DArray, LiDAR frame, cloud stamp) and ``~/debug_image`` (only drawn while subscribed).

The synchronizer callback only stores the set in the frame queue (one slot unless
``pending_frames`` says more); a worker thread converts, looks up TF, runs the Autolabeler and
publishes, so a slow fit drops stale frames (counted and logged) instead of building a backlog.
All decisions live in the ROS-free modules (``nodes/params.py``, ``runtime.py``, ``clicks.py``,
``inputs.py``, ``outputs.py``, ``tf_lookup.py``, ``io/frames.py``, ``io/messages.py``).
"""
from __future__ import annotations

import logging
import time

from message_filters import ApproximateTimeSynchronizer, Subscriber
from rclpy.duration import Duration
from rclpy.time import Time
from tf2_ros import Buffer, TransformException, TransformListener

from autolabel_ros.core.prompts import warn_dropped
from autolabel_ros.io import messages as M
from autolabel_ros.nodes.clicks import ClickBuffer, clicks_in_camera
from autolabel_ros.nodes.common import (StartupError, StatsLine, image_msg_type, output_qos, ros_type_name,
                                        run_node, sensor_qos, steady_timer)
from autolabel_ros.nodes.inputs import SkipFrame, frame_ids, missing_transform_text, prepare_frame
from autolabel_ros.nodes.managed import ManagedNode
from autolabel_ros.nodes.outputs import frame_outputs
from autolabel_ros.nodes.params import fitter_specs
from autolabel_ros.nodes.runtime import SyncMonitor, now_wall
from autolabel_ros.nodes.tf_lookup import transform_at


class FitterNode(ManagedNode):
    worker_what = 'frame'

    def __init__(self, **kwargs):
        super().__init__('autolabel_fitter', fitter_specs(), **kwargs)
        self.labeler = None
        self.fleet = None
        self.tf_buffer = self.tf_listener = None
        self.pub_markers = self.pub_det3d = self.pub_debug = None
        self.subs, self.sync = [], None
        self.click_sub = None
        self.clicks = ClickBuffer(self.settings.click_max_age)
        self.monitor = None
        self._last_job = None

    # ------------------------------------------------------------------ configure / cleanup
    def load_models(self):
        t0 = time.perf_counter()
        from autolabel_ros.config import ConfigError
        from autolabel_ros.pipeline import Autolabeler
        try:
            from autolabel_ros.core.device import process_threads
            threads = process_threads(self.cfg.fit.threads)    # as autolabel-bag's workers set them
            self.labeler = Autolabeler(self.cfg)
            _ = self.labeler.segmenter   # SAM loads lazily: load it now, not on the first frame
            from autolabel_ros.fit.fleet import RunningFleet
            # the fleet's car length learnt from this configuration's frames (fit/fleet.py)
            self.fleet = (RunningFleet(float(self.labeler.sdf.mean_size[0])) if self.cfg.fit.fleet_length
                          else None)
        except (ConfigError, StartupError):
            raise
        except Exception as e:
            raise StartupError(f'{self.get_name()}: cannot build the Autolabeler: '
                               f'{type(e).__name__}: {e}') from e
        self._loaded = (time.perf_counter() - t0, threads)
        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, self)

    def report_ready(self, warm_up_s):
        load_s, threads = self._loaded
        warm = f', warm-up frame {warm_up_s:.1f} s on the worker thread' if warm_up_s is not None else ''
        self.get_logger().info(f'Autolabeler ready in {load_s + (warm_up_s or 0.0):.1f} s '
                               f'(device {self.cfg.device}, {threads} torch thread(s), '
                               f'segmenter {self.cfg.segmenter.model}{warm})')

    def warm_up(self):
        """One synthetic frame of a real frame's size through prompts, the Autolabeler and the output
        messages (serialized, not published): see nodes/warmup.py. A failure here is only logged; real
        frames say more."""
        from rclpy.serialization import serialize_message

        from autolabel_ros.nodes.warmup import warmup_frame

        try:
            frame, prompts = warmup_frame()
            if self.cfg.proposals.lidar:
                from autolabel_ros.proposals import fused_prompts
                prompts, _ = fused_prompts(frame, prompts, self.cfg)
            result = self.labeler.label(frame, prompts)
            out = frame_outputs(frame, result.labels, prompts, self.settings, self.factory,
                                masks=result.masks, debug_image=self.settings.publish_debug_image)
            for msg in out.values():
                serialize_message(msg)
        except Exception as e:
            self.get_logger().warning(f'warm-up frame failed ({type(e).__name__}: {e}); the first real '
                                      f'frame will be slower')

    def release_models(self):
        if self.tf_listener is not None:
            self.tf_listener.unregister()
        self.tf_listener = self.tf_buffer = None
        self.fleet = None
        if self.labeler is not None:
            self.labeler = None
            try:
                import torch
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:
                pass

    def create_outputs(self):
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection3DArray
        from visualization_msgs.msg import MarkerArray

        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, '~/markers', output_qos())
        self.pub_det3d = self.create_lifecycle_publisher(Detection3DArray, '~/detections_3d', output_qos())
        self.pub_debug = (self.create_lifecycle_publisher(Image, '~/debug_image', output_qos(2))
                          if self.settings.publish_debug_image else None)

    def destroy_outputs(self):
        for pub in (self.pub_markers, self.pub_det3d, self.pub_debug):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.pub_markers = self.pub_det3d = self.pub_debug = None

    # ------------------------------------------------------------------ activate / deactivate
    def _sensor_topics(self) -> list[tuple[type, str]]:
        from sensor_msgs.msg import CameraInfo, PointCloud2
        from vision_msgs.msg import Detection2DArray

        s = self.settings
        topics = [(image_msg_type(s.compressed_image), 'image'), (CameraInfo, 'camera_info'),
                  (PointCloud2, 'points')]
        if s.sync_detections:
            topics.append((Detection2DArray, 'detections'))
        return topics

    def create_inputs(self):
        from geometry_msgs.msg import PointStamped

        s = self.settings
        resolved = [self.resolve_topic_name(name) for _, name in self._sensor_topics()]
        self.monitor = SyncMonitor(resolved, s.sync_warn_after, now_wall())
        self.click_sub = self.create_subscription(PointStamped, s.clicked_point_topic, self._on_click, 10)
        self.input_timers = [steady_timer(self, 1.0, self._watchdog),
                             steady_timer(self, 10.0, StatsLine(self))]
        types = {t: ros_type_name(cls) for (cls, _), t in zip(self._sensor_topics(), resolved)}
        self.subscribe_when_published(resolved, self._subscribe, types)

    def _subscribe(self, reliability_by_topic: dict):
        s = self.settings
        self.subs = []
        for (msg_type, name), topic in zip(self._sensor_topics(), reliability_by_topic):
            qos = sensor_qos(reliability_by_topic[topic], s.qos_depth)
            self.subs.append(Subscriber(self, msg_type, name, qos_profile=qos))
        for sub, topic in zip(self.subs, reliability_by_topic):
            sub.registerCallback(self._seen, topic)
        self.sync = ApproximateTimeSynchronizer(self.subs, s.queue_size, s.slop)
        self.sync.registerCallback(self._on_frame)
        qos_text = ', '.join(f'{t} ({r})' for t, r in reliability_by_topic.items())
        self.get_logger().info(f'waiting for {qos_text}; slop {s.slop} s, queue {s.queue_size}; '
                               f'clicks on {s.clicked_point_topic}')

    def destroy_inputs(self):
        for sub in self.subs:
            self.destroy_subscription(sub.sub)
        self.subs, self.sync = [], None
        if self.click_sub is not None:
            self.destroy_subscription(self.click_sub)
            self.click_sub = None
        self._last_job = None

    # ------------------------------------------------------------------ callbacks (executor threads)
    def _seen(self, msg, topic: str):
        self.monitor.note(topic, M.header_stamp_ns(msg), now_wall())

    def _on_frame(self, image, info, cloud, dets=None):
        self.monitor.synced(now_wall())
        job = (image, info, cloud, dets)
        self._last_job = job
        if self.slot.put(job):
            self.get_logger().debug('worker busy: dropped the oldest unprocessed frame')

    def _on_click(self, msg):
        p = msg.point
        if not self.clicks.add([p.x, p.y, p.z], msg.header.frame_id, now_wall(),
                               stamp_ns=M.header_stamp_ns(msg)):
            self.get_logger().warning(f'click on {self.settings.clicked_point_topic} at ({p.x}, {p.y}, '
                                      f'{p.z}) is not a finite point; ignored')
            return
        self.get_logger().info(f'click at ({p.x:.2f}, {p.y:.2f}, {p.z:.2f}) in {msg.header.frame_id!r}: '
                               f'point prompt for the next frame')
        # A paused bag sends no new frame: re-run the last one so the click takes effect now.
        if self._last_job is not None and not self.slot.pending:
            self.slot.put(self._last_job)

    def _watchdog(self):
        text = self.monitor.check(now_wall()) if self.monitor is not None else None
        if text:
            self.get_logger().warning(text)

    # ------------------------------------------------------------------ worker thread
    def _lookup(self, target: str, source: str, stamp_ns, timeout: float):
        """tf2 as a nodes.tf_lookup.Lookup: 4x4 target <- source at ``stamp_ns`` (None = latest)."""
        buffer = self.tf_buffer
        if buffer is None:
            return None
        stamp = Time() if stamp_ns is None else Time(nanoseconds=int(stamp_ns),
                                                     clock_type=self.get_clock().clock_type)
        try:
            tf = buffer.lookup_transform(target, source, stamp, timeout=Duration(seconds=timeout))
        except TransformException as e:
            self.get_logger().debug(f'TF {source} -> {target}: {e}')
            return None
        return M.transform_to_matrix(tf.transform)

    def process_item(self, job):
        image_msg, info_msg, cloud_msg, det_msg = job
        t0 = time.perf_counter()
        s = self.settings
        lidar_frame, camera_frame = frame_ids(s, image_msg, cloud_msg)
        T, source = transform_at(self._lookup, camera_frame, lidar_frame, M.header_stamp_ns(cloud_msg),
                                 s.tf_timeout, s.T_cam_lidar_static)
        missing = missing_transform_text(lidar_frame, camera_frame, s.tf_timeout)
        if source == 'latest':
            self.get_logger().warning(f'{missing}: using the latest one', throttle_duration_sec=5.0)
        elif source == 'fallback':
            self.get_logger().warning(f'{missing}: using the static_transform parameter',
                                      throttle_duration_sec=5.0)
        if T is None:
            self.get_logger().warning(f'{missing} and no static_transform parameter: frame skipped',
                                      throttle_duration_sec=5.0)
            return
        clicks_cam, ignored = clicks_in_camera(self.clicks.take(now_wall()), self._lookup, camera_frame,
                                               lidar_frame, T, s.tf_timeout)
        for frame_id in ignored:
            self.get_logger().warning(f'click in frame {frame_id!r}: no TF to {camera_frame!r}; ignored')
        try:
            topics = {name: self.resolve_topic_name(name) for _, name in self._sensor_topics()}
            frame, prompts, outside = prepare_frame(image_msg, info_msg, cloud_msg, det_msg, T, s,
                                                    clicks_cam=clicks_cam, topics=topics)
        except SkipFrame as e:
            self.get_logger().warning(f'frame skipped: {e}', throttle_duration_sec=5.0)
            return
        if prompts.dropped:      # degenerate boxes of the detector (NaN, zero or negative size)
            warn_dropped(logging.getLogger('autolabel_ros.nodes'), f'detections on {topics["detections"]}',
                         prompts.dropped, len(det_msg.detections))
        if outside:
            self.get_logger().warning(f'{outside} click(s) fall outside the camera image; ignored')
        if self.cfg.proposals.lidar:
            from autolabel_ros.proposals import fused_prompts
            prompts, _ = fused_prompts(frame, prompts, self.cfg)
        labels, masks = [], None
        labeler, fleet = self.labeler, self.fleet
        if prompts and labeler is not None:
            result = labeler.label(frame, prompts)
            labels, masks = result.labels, result.masks
            if self.cfg.proposals.lidar:
                from autolabel_ros.proposals import reject_duplicates
                reject_duplicates(labels, self.cfg.proposals.duplicate_iou)
            if fleet is not None:
                labels = fleet.apply(labels)
        # Always publish (also when empty): the DELETEALL marker clears the previous frame's boxes.
        t_pub = time.perf_counter()
        if self._closing:
            return
        if self._stale_worker():     # a cleanup (and maybe a configure) came during this fit
            self.get_logger().info(f'the frame at {frame.stamp_ns} ns was fitted across a cleanup: not '
                                   'published')
            return
        want_debug = self.has_subscribers(self.pub_debug)
        out = frame_outputs(frame, labels, prompts, s, self.factory,
                            image_stamp_ns=M.header_stamp_ns(image_msg), masks=masks, debug_image=want_debug)
        self.publish(self.pub_markers, out['markers'])
        self.publish(self.pub_det3d, out['detections_3d'])
        if 'debug_image' in out:
            self.publish(self.pub_debug, out['debug_image'])
        publish_s = time.perf_counter() - t_pub
        processing = time.perf_counter() - t0
        latency = (self.get_clock().now().nanoseconds - frame.stamp_ns) / 1e9
        sources = None
        if self.cfg.proposals.lidar:
            from autolabel_ros.proposals import source_counts
            sources = source_counts(labels)
        self.stats.add(processing, latency, len(labels), publish_s=publish_s, sources=sources)
        accepted = sum(lab.accepted for lab in labels)
        self.get_logger().debug(f'{len(prompts)} prompts -> {accepted}/{len(labels)} accepted labels in '
                                f'{processing:.2f} s (publish {publish_s * 1000:.0f} ms, '
                                f'latency {latency:.2f} s)')


def main(args=None):
    return run_node(FitterNode, args)


if __name__ == '__main__':
    from autolabel_ros.core.interrupts import run_quietly
    from autolabel_ros.nodes.entry import EXIT_STOPPED
    run_quietly(lambda: main, EXIT_STOPPED, skip_teardown=True)
