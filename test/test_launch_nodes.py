"""launch_testing integration test: both nodes, one synthetic synchronized frame, real outputs.

Runs where ROS 2 is installed and the package is built and sourced:
    colcon test --packages-select autolabel_ros --pytest-args -k test_launch_nodes
    # or: launch_test test/test_launch_nodes.py
Skipped (reason printed with ``pytest -rs``) where rclpy / launch_testing are absent.

The fitter gets a simulator frame (image, camera_info, cloud) plus the ground-truth 2D boxes as a
Detection2DArray, and the LiDAR -> camera extrinsic on /tf_static. The detector node runs with
backend 'none' on the same image and must answer with an empty Detection2DArray carrying the
image's header.
"""
import time
import unittest
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed: launch test skipped')
pytest.importorskip('launch_testing', reason='launch_testing (ROS 2) is not installed')
pytest.importorskip('launch_ros', reason='launch_ros (ROS 2) is not installed')

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402

from autolabel_ros.io import messages as M  # noqa: E402
from autolabel_ros.nodes.common import rclpy_factory  # noqa: E402

PARAMS = Path(__file__).resolve().parents[1] / 'config' / 'autolabel.yaml'
SIM_SEED = 100000
TIMEOUT_S = 240.0     # SAM + prior load and a CPU fit of a few cars


@pytest.mark.launch_test
def generate_test_description():
    common = {'device': 'cpu', 'use_sim_time': False}
    fitter = launch_ros.actions.Node(
        package='autolabel_ros', executable='fitter_node', name='autolabel_fitter', output='screen',
        parameters=[str(PARAMS), common | {'fit.iterations': 30, 'publish_rejected': True,
                                           'sync_warn_after': 30.0}],
        remappings=[('image', '/test/image'), ('camera_info', '/test/camera_info'),
                    ('points', '/test/points'), ('detections', '/test/detections_2d')])
    detector = launch_ros.actions.Node(
        package='autolabel_ros', executable='detector_node', name='autolabel_detector', output='screen',
        parameters=[str(PARAMS), common | {'detector.backend': 'none'}],
        remappings=[('image', '/test/image'), ('detections', '/test/detector_out')])
    return (launch.LaunchDescription([fitter, detector, launch_testing.actions.ReadyToTest()]),
            {'fitter': fitter, 'detector': detector})


class TestOneSyntheticFrame(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('autolabel_launch_test')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_markers_and_detections_3d(self, proc_output):
        from geometry_msgs.msg import TransformStamped  # noqa: F401  (type support loaded early)
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from tf2_ros import StaticTransformBroadcaster
        from vision_msgs.msg import Detection2DArray, Detection3DArray
        from visualization_msgs.msg import Marker, MarkerArray

        from autolabel_ros.core.types import Prompt
        from autolabel_ros.sim import simulate_frame

        sf = simulate_frame(SIM_SEED)
        fr = sf.frame
        gt = [g for g in sf.gt if g.box2d is not None]
        self.assertGreater(len(gt), 0)
        f = rclpy_factory()
        stamp = fr.stamp_ns or 1_600_000_000_000_000_000
        image = M.make_image(fr.image, stamp, 'camera', f)
        info = M.make_camera_info(fr.K, fr.width, fr.height, stamp, 'camera', f)
        cloud = M.make_pointcloud2(fr.points, stamp, 'lidar', f, ring=sf.ring)
        boxes = M.prompts_to_detection2d_array(
            [Prompt(id=g.id, box=g.box2d, cls='Car', score=1.0) for g in gt], stamp, 'camera', f)
        tf = StaticTransformBroadcaster(self.node)
        tf.sendTransform(M.make_tf_static(fr.T_cam_lidar, 'camera', 'lidar', stamp, f).transforms)

        got = {}
        n = self.node
        for msg_type, topic, key in ((MarkerArray, '/autolabel_fitter/markers', 'markers'),
                                     (Detection3DArray, '/autolabel_fitter/detections_3d', 'det3d'),
                                     (Detection2DArray, '/test/detector_out', 'det2d')):
            n.create_subscription(msg_type, topic, lambda m, k=key: got.setdefault(k, m), 10)
        pubs = [(n.create_publisher(Image, '/test/image', 10), image),
                (n.create_publisher(CameraInfo, '/test/camera_info', 10), info),
                (n.create_publisher(PointCloud2, '/test/points', 10), cloud),
                (n.create_publisher(Detection2DArray, '/test/detections_2d', 10), boxes)]
        end = time.monotonic() + TIMEOUT_S
        next_pub = 0.0
        while time.monotonic() < end and not {'markers', 'det3d', 'det2d'} <= set(got):
            if time.monotonic() >= next_pub:     # re-publish until discovery has happened
                for pub, msg in pubs:
                    pub.publish(msg)
                next_pub = time.monotonic() + 2.0
            rclpy.spin_once(n, timeout_sec=0.1)
        self.assertTrue({'markers', 'det3d', 'det2d'} <= set(got), f'outputs received: {sorted(got)}')

        # detector (backend none): empty array with the image's header
        d2 = got['det2d']
        self.assertEqual(d2.header.frame_id, 'camera')
        self.assertEqual(M.header_stamp_ns(d2), stamp)
        self.assertEqual(len(d2.detections), 0)

        # Detection3DArray: one per prompt (rejected included by publish_rejected), LiDAR frame
        d3 = got['det3d']
        self.assertEqual(d3.header.frame_id, 'lidar')
        self.assertEqual(M.header_stamp_ns(d3), stamp)
        by_id = {int(d.id): d for d in d3.detections}
        self.assertEqual(sorted(by_id), sorted(g.id for g in gt))
        for g in gt:
            d = by_id[g.id]
            c = d.bbox.center.position
            self.assertEqual(d.results[0].hypothesis.class_id, 'Car')
            self.assertLess(np.hypot(c.x - g.center[0], c.y - g.center[1]), 3.0, f'car {g.id}')
            self.assertTrue(2.5 < d.bbox.size.x < 6.5 and 1.2 < d.bbox.size.y < 2.5, f'car {g.id} size')

        # MarkerArray: DELETEALL first, then box / edges (24 + 2 points) / text (/ mesh) per label
        mk = got['markers'].markers
        self.assertEqual(mk[0].action, Marker.DELETEALL)
        kinds = {}
        for m in mk[1:]:
            self.assertEqual(m.header.frame_id, 'lidar')
            kinds.setdefault(m.ns.split('/')[-1], []).append(m)
        self.assertEqual(len(kinds['box']), len(gt))
        self.assertTrue(all(m.type == Marker.LINE_LIST and len(m.points) == 26 for m in kinds['edges']))
        self.assertTrue(all(m.type == Marker.TEXT_VIEW_FACING and 'Car' in m.text for m in kinds['text']))
        self.assertTrue(all(m.type == Marker.TRIANGLE_LIST and len(m.points) % 3 == 0
                            for m in kinds.get('mesh', [])))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        # 0: clean shutdown on SIGINT (KeyboardInterrupt / ExternalShutdownException handled)
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
