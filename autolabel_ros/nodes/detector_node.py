"""detector_node: camera image -> vision_msgs/Detection2DArray of vehicles (same header as the image).

Subscribes ``image`` (sensor_msgs/Image, or CompressedImage with ``compressed_image``), publishes
``detections``; remap both. The backend (``detector.backend``: ssd_mobilenet, torchvision
detectors from local weights, none) is built once at startup by ``autolabel_ros.detect``.
Detection runs on a worker thread behind a one-slot queue, so a slow detector skips frames
(counted, logged) instead of lagging behind.
"""
from __future__ import annotations

import threading
import time

from rclpy.node import Node

from autolabel_ros.io import messages as M
from autolabel_ros.nodes.params import detector_specs, validate_parameters
from autolabel_ros.nodes.runtime import LatencyStats, LatestSlot
from autolabel_ros.nodes.common import (StartupError, StatsLine, declare_parameters, image_msg_type,
                                        output_qos, rclpy_factory, run_node, sensor_qos, steady_timer,
                                        stop_worker, worker_loop)


class DetectorNode(Node):
    def __init__(self, **kwargs):
        super().__init__('autolabel_detector', **kwargs)
        specs = detector_specs()
        values = declare_parameters(self, specs)
        self.cfg, self.settings = validate_parameters(values, specs, self.get_name())
        self.factory = rclpy_factory()
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
        d = self.cfg.detector
        self.get_logger().info(f'detector {d.backend!r} ready in {time.perf_counter() - t0:.1f} s '
                               f'(classes {d.classes}, score >= {d.score_threshold})')

        from vision_msgs.msg import Detection2DArray

        self.pub = self.create_publisher(Detection2DArray, 'detections', output_qos(10))
        self.create_subscription(image_msg_type(self.settings.compressed_image), 'image', self._on_image,
                                 sensor_qos(self.settings.reliability, self.settings.qos_depth))
        self.slot = LatestSlot()
        self.stats = LatencyStats()
        self._stop = threading.Event()
        self.worker = threading.Thread(target=worker_loop, name='autolabel_detector_worker', daemon=True,
                                       args=(self._stop, self.slot, self._process, self.get_logger(),
                                             'image'))
        self.worker.start()
        steady_timer(self, 10.0, StatsLine(self))

    def _on_image(self, msg):
        self.slot.put(msg)

    def _process(self, msg):
        t0 = time.perf_counter()
        if self.settings.compressed_image:
            image = M.compressed_image_to_numpy(msg)
        else:
            image = M.image_to_numpy(msg)
        prompts = self.detector.detect(image)
        stamp_ns = M.header_stamp_ns(msg)
        # same header as the image (stamp and frame), so the fitter's synchronizer pairs them exactly
        self.pub.publish(M.prompts_to_detection2d_array(prompts, stamp_ns, msg.header.frame_id, self.factory))
        latency = (self.get_clock().now().nanoseconds - stamp_ns) / 1e9
        self.stats.add(time.perf_counter() - t0, latency, len(prompts))

    def destroy_node(self):
        stop_worker(self._stop, self.slot, self.worker)
        return super().destroy_node()


def main(args=None):
    return run_node(DetectorNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
