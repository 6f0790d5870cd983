"""Box conventions and the exact LiDAR <-> KITTI camera-rect conversions."""
import numpy as np
import pytest

from autolabel_ros.core.geometry import (box_corners, kitti_alpha, kitti_box_to_lidar,
                                         lidar_box_to_kitti, points_in_box)
from autolabel_ros.core.types import Label3D, Prompt, wrap_angle


def _kitti_like_T(rng, tilt=0.02):
    """A KITTI-like LiDAR -> camera-rect transform with a small random tilt."""
    base = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)
    a, b, c = rng.normal(0, tilt, 3)
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    Rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = Rx @ Ry @ Rz @ base
    T[:3, 3] = [0.0, -0.08, -0.27]
    return T


def test_round_trip_lidar_kitti_lidar_is_exact():
    rng = np.random.default_rng(0)
    for _ in range(200):
        T = _kitti_like_T(rng)
        center = rng.uniform([-40, -20, -2], [60, 20, 1])
        size = rng.uniform([3, 1.5, 1.3], [5.5, 2.1, 2.0])
        yaw = rng.uniform(-np.pi, np.pi)
        hwl, bottom, ry = lidar_box_to_kitti(center, size, yaw, T)
        c2, s2, y2 = kitti_box_to_lidar(hwl, bottom, ry, T)
        assert np.allclose(c2, center, atol=1e-6)
        assert np.allclose(s2, size, atol=1e-9)
        assert abs(wrap_angle(y2 - yaw)) < 1e-6


def test_kitti_axes_identity_calibration():
    # Aligned sensors: LiDAR +x (forward) is camera +z, LiDAR +y (left) is camera -x.
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    hwl, bottom, ry = lidar_box_to_kitti([10.0, 2.0, -0.8], [4.0, 1.8, 1.5], 0.0, T)
    assert np.allclose(hwl, [1.5, 1.8, 4.0])
    assert np.allclose(bottom, [-2.0, 0.8 + 0.75, 10.0])
    # Heading along LiDAR +x = camera +z, which KITTI calls rotation_y = -pi/2.
    assert np.isclose(ry, -np.pi / 2)
    # Heading to the LiDAR's left (+y) = camera -x: rotation_y = pi (wrapped to -pi).
    _, _, ry_left = lidar_box_to_kitti([10, 2, -0.8], [4, 1.8, 1.5], np.pi / 2, T)
    assert np.isclose(abs(ry_left), np.pi)
    # alpha of a car straight ahead equals its rotation_y.
    assert np.isclose(kitti_alpha(ry, [0.0, 1.5, 10.0]), ry)


def test_corners_and_points_in_box():
    c = box_corners([1, 2, 3], [4, 2, 1], np.pi / 2)
    # Rotated by 90 deg: length now along y.
    assert np.isclose(c[:, 1].max() - c[:, 1].min(), 4)
    assert np.isclose(c[:, 0].max() - c[:, 0].min(), 2)
    assert np.isclose(c[:, 2].min(), 2.5) and np.isclose(c[:, 2].max(), 3.5)
    pts = np.array([[1, 2, 3], [1, 3.9, 3], [2.1, 2, 3], [1, 2, 3.6]])
    assert points_in_box(pts, [1, 2, 3], [4, 2, 1], np.pi / 2).tolist() == [True, True, False, False]


def test_dataclass_validation_messages():
    with pytest.raises(ValueError, match='invalid box'):
        Prompt(id=3, box=[10, 10, 5, 20])
    with pytest.raises(ValueError, match='needs a box or points'):
        Prompt(id=4)
    p = Prompt(id=5, points=[[10, 20], [30, 25]])
    assert p.bounding_box().tolist() == [10, 20, 31, 26]
    lab = Label3D(center=[1, 2, 3], size=[4, 2, 1.5], yaw=3 * np.pi / 2)
    assert np.isclose(lab.yaw, -np.pi / 2)
