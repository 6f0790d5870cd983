"""The rclpy flavour of the output builders with the real ROS 2 message classes (in-process, no
workspace build): the marker fast path gives the same messages as the constructors, and they
serialize. Skipped with the reason where no ROS 2 is sourced."""
from __future__ import annotations

import numpy as np
import pytest
from ros_harness import SKIP_REASON

from autolabel_ros.core.types import Label3D, Mesh

pytestmark = [pytest.mark.ros, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or '')]

STAMP = 1_600_000_000_250_000_000


def _sphere_label(ident=4, center=(12.0, -3.0, 0.2)):
    import open3d as o3d

    s = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=60)
    verts = np.asarray(s.vertices) + np.asarray(center)
    return Label3D(center=np.asarray(center), size=np.array([2.0, 2.0, 2.0]), yaw=0.3, id=ident, score=0.8,
                   mesh=Mesh(verts, np.asarray(s.triangles)))


def test_marker_points_fast_path_equals_the_constructors_and_serializes():
    from geometry_msgs.msg import Point
    from rclpy.serialization import deserialize_message, serialize_message
    from visualization_msgs.msg import Marker, MarkerArray

    from autolabel_ros.io import messages as M
    from autolabel_ros.nodes.common import rclpy_factory

    factory = rclpy_factory()
    xyz = np.random.default_rng(0).normal(size=(300, 3)) * 20
    fast = M._points(xyz, factory)
    slow = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz]
    assert fast == slow and all(type(p) is Point for p in fast)
    assert repr(fast[0]) == repr(slow[0])
    fast[0].x = 1.5                     # the setters still work on a fast-built point
    assert fast[0].x == 1.5

    lab = _sphere_label()
    arr = M.labels_to_marker_array([lab], STAMP, 'lidar', factory, mesh_max_triangles=800)
    back = deserialize_message(serialize_message(arr), MarkerArray)
    assert [(m.ns, m.id, m.type, m.points) for m in back.markers] == \
        [(m.ns, m.id, m.type, m.points) for m in arr.markers]          # colours are float32 on the wire
    mesh = [m for m in back.markers if m.type == Marker.TRIANGLE_LIST]
    assert len(mesh) == 1 and 0 < len(mesh[0].points) <= 3 * 800 and len(mesh[0].points) % 3 == 0
    pts = np.array([[p.x, p.y, p.z] for p in mesh[0].points])
    r = np.linalg.norm(pts - lab.center, axis=1)
    assert r.min() > 0.85 and r.max() < 1.05             # still the sphere, decimated
    edges = [m for m in back.markers if m.type == Marker.LINE_LIST][0]
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in edges.points], M.label_edge_points(lab))


def test_node_frame_from_tf2_equals_the_bag_tools_bit_for_bit(tmp_path):
    """The fitter node's input path (rclpy messages, the extrinsic from a real tf2 buffer, then
    nodes/inputs.prepare_frame) and autolabel-bag's (rosbags messages, io/bags.TfTree) build the same
    SensorFrame from one bag, bit for bit. The TF edge is stored LiDAR -> camera, as in the simulator's
    bag: tf2 inverts it as a quaternion, the bag tool as a matrix; the raw extrinsics differ by float
    noise (4e-16 there), which the shared builder snaps away so both faces fit the same numbers."""
    import tf2_ros
    from rclpy.serialization import deserialize_message
    from rclpy.time import Time
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    from autolabel_ros.io import messages as M
    from autolabel_ros.io.bags import BagSource
    from autolabel_ros.io.label_bag import BagWriter
    from autolabel_ros.nodes import inputs, params

    rng = np.random.default_rng(3)
    F = M.rosbags_factory()
    K = np.array([[300.0, 0.0, 160.5], [0.0, 300.0, 100.25], [0.0, 0.0, 1.0]])
    # the simulator's LiDAR -> camera extrinsic (a KITTI-like mount)
    T_cam_lidar = np.array([[0.0015529855934302, -0.9999815751768029, 0.00586835093249699, -0.0116],
                            [0.00665648402510194, -0.00585789073914511, -0.9999606873955156, -0.0928],
                            [0.9999766394552276, 0.00159198712575764, 0.00664726416063488, -0.2538],
                            [0.0, 0.0, 0.0, 1.0]])
    points = np.hstack([rng.uniform([2, -10, -2], [40, 10, 1], (3000, 3)), rng.uniform(0, 1, (3000, 1))])
    image = rng.integers(0, 255, (200, 320, 3), np.uint8)
    with BagWriter(tmp_path / 'b') as wr:
        wr.write('/tf_static', M.make_tf_static(np.linalg.inv(T_cam_lidar), 'lidar', 'camera', STAMP, F),
                 STAMP)
        wr.write('/camera/camera_info', M.make_camera_info(K, 320, 200, STAMP, 'camera', F), STAMP)
        wr.write('/camera/image_raw', M.make_image(image, STAMP, 'camera', F), STAMP)
        wr.write('/lidar/points', M.make_pointcloud2(points.astype(np.float32), STAMP, 'lidar', F), STAMP)
    with BagSource(tmp_path / 'b') as src:
        [(_, bag_frame, _)] = list(src.iter_frames(src.index()))
        T_bag = src.extrinsic('camera', 'lidar')
    types = {'/tf_static': TFMessage, '/camera/camera_info': CameraInfo, '/camera/image_raw': Image,
             '/lidar/points': PointCloud2}
    with Reader(tmp_path / 'b') as r:
        msgs = {c.topic: deserialize_message(raw, types[c.topic]) for c, _, raw in r.messages()}
    buffer = tf2_ros.Buffer()
    for tr in msgs['/tf_static'].transforms:
        buffer.set_transform_static(tr, 'test')
    T_tf2 = M.transform_to_matrix(buffer.lookup_transform('camera', 'lidar', Time()).transform)
    assert not np.array_equal(T_tf2, T_bag) and np.abs(T_tf2 - T_bag).max() < 1e-14
    specs = params.fitter_specs()
    _, st = params.validate_parameters({s.name: s.default for s in specs}, specs)
    node_frame, _, _ = inputs.prepare_frame(msgs['/camera/image_raw'], msgs['/camera/camera_info'],
                                            msgs['/lidar/points'], None, T_tf2, st)
    for name in ('image', 'K', 'points', 'T_cam_lidar'):
        a, b = getattr(node_frame, name), getattr(bag_frame, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
