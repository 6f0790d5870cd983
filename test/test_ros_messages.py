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
