"""detector_node: camera image -> vision_msgs/Detection2DArray of vehicles (same header as the image).

A lifecycle node (nodes/managed.py): configure builds the detector, activate subscribes.
Subscribes ``image`` (sensor_msgs/Image, or CompressedImage with ``compressed_image``), publishes
``detections``; remap both. The backend (``detector.backend``: ssd_mobilenet, torchvision
detectors from local weights, none) is built by ``autolabel_ros.detect``. Detection runs on a
worker thread behind the frame queue (one slot unless ``pending_frames`` says more), so a slow
detector skips frames (counted, logged) instead of lagging behind.
"""
from __future__ import annotations

import time

from autolabel_ros.io import messages as M
from autolabel_ros.nodes.common import (StartupError, StatsLine, image_msg_type, output_qos, ros_type_name,
                                        run_node, sensor_qos, steady_timer)
from autolabel_ros.nodes.managed import ManagedNode
from autolabel_ros.nodes.params import detector_specs


class DetectorNode(ManagedNode):
    worker_what = 'image'

    def __init__(self, **kwargs):
        super().__init__('autolabel_detector', detector_specs(), **kwargs)
        self.detector = None
        self.pub = None
        self.sub = None

    def load_models(self):
        t0 = time.perf_counter()
        try:
            from autolabel_ros.core.device import resolve_device
            from autolabel_ros.detect import make_detector
            from autolabel_ros.proposals import fused_detector_config
            # fused prompts (proposals.lidar): the fitter also wants the weak detections, to confirm
            # its LiDAR proposals with; it tells them from the prompts by detector.score_threshold
            dcfg = fused_detector_config(self.cfg) if self.cfg.proposals.lidar else self.cfg.detector
            self.detector = make_detector(dcfg, resolve_device(self.cfg.device))
        except Exception as e:   # DetectorUnavailable / DeviceError carry the how-to-fix text
            raise StartupError(f'{self.get_name()}: cannot build detector {self.cfg.detector.backend!r}: '
                               f'{type(e).__name__}: {e}') from e
        self._load_s = time.perf_counter() - t0

    def report_ready(self, warm_up_s):
        d = self.cfg.detector
        warm = f', warm-up image {warm_up_s:.1f} s' if warm_up_s is not None else ''
        self.get_logger().info(f'detector {d.backend!r} ready in {self._load_s + (warm_up_s or 0.0):.1f} s '
                               f'(classes {d.classes}, score >= {d.score_threshold}{warm})')

    def warm_up(self):
        """One inference on the synthetic frame's image and one serialized output (nodes/warmup.py)."""
        from rclpy.serialization import serialize_message

        from autolabel_ros.nodes.warmup import warmup_frame

        try:
            frame, _ = warmup_frame()
            prompts = self.detector.detect(frame.image) if self.detector is not None else []
            serialize_message(M.prompts_to_detection2d_array(prompts, 0, 'camera', self.factory))
        except Exception as e:
            self.get_logger().warning(f'warm-up image failed ({type(e).__name__}: {e})')

    def release_models(self):
        self.detector = None

    def create_outputs(self):
        from vision_msgs.msg import Detection2DArray

        self.pub = self.create_lifecycle_publisher(Detection2DArray, 'detections', output_qos(10))

    def destroy_outputs(self):
        if self.pub is not None:
            self.destroy_lifecycle_publisher(self.pub)
            self.pub = None

    def create_inputs(self):
        self.input_timers = [steady_timer(self, 10.0, StatsLine(self))]
        topic = self.resolve_topic_name('image')
        self.subscribe_when_published([topic], self._subscribe,
                                      {topic: ros_type_name(image_msg_type(self.settings.compressed_image))})

    def _subscribe(self, reliability_by_topic: dict):
        [(topic, reliability)] = reliability_by_topic.items()
        self.sub = self.create_subscription(image_msg_type(self.settings.compressed_image), 'image',
                                            self._on_image, sensor_qos(reliability, self.settings.qos_depth))
        self.get_logger().info(f'detecting on {topic} ({reliability})')

    def destroy_inputs(self):
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None

    def _on_image(self, msg):
        self.slot.put(msg)

    def process_item(self, msg):
        t0 = time.perf_counter()
        try:
            if self.settings.compressed_image:
                image = M.compressed_image_to_numpy(msg)
            else:
                image = M.image_to_numpy(msg)
        except M.MessageError as e:     # as the fitter's skipped frames: the topic and the reason
            self.get_logger().warning(f'image skipped: image on {self.resolve_topic_name("image")}: {e}',
                                      throttle_duration_sec=5.0)
            return
        detector = self.detector
        if detector is None:
            return
        prompts = detector.detect(image)
        stamp_ns = M.header_stamp_ns(msg)
        # same header as the image (stamp and frame), so the fitter's synchronizer pairs them exactly
        t_pub = time.perf_counter()
        self.publish(self.pub, M.prompts_to_detection2d_array(prompts, stamp_ns, msg.header.frame_id,
                                                              self.factory))
        latency = (self.get_clock().now().nanoseconds - stamp_ns) / 1e9
        self.stats.add(time.perf_counter() - t0, latency, len(prompts), publish_s=time.perf_counter() - t_pub)


def main(args=None):
    return run_node(DetectorNode, args)


if __name__ == '__main__':
    from autolabel_ros.core.interrupts import run_quietly
    from autolabel_ros.nodes.entry import EXIT_STOPPED
    run_quietly(lambda: main, EXIT_STOPPED, skip_teardown=True)
