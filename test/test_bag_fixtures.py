"""Tiny synthetic drives for the bag-tool tests, written with the project's own message builders.

A flat ground, one box-shaped car seen by a 320 x 120 camera and a LiDAR, moving 0.5 m per frame;
topics as the simulator writes them plus a Detection2DArray of the car's projected box. Optional
defects (an undecodable message, an image with an unknown encoding, an extra cloud, a cloud without
an image) exercise the error paths. Frames are 0.1 s apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from autolabel_ros.core.geometry import box_corners, projected_box2d
from autolabel_ros.core.types import Prompt
from autolabel_ros.io import messages as M
from autolabel_ros.io.label_bag import BagWriter
from autolabel_ros.io.ros_types import get_typestore

K = np.array([[200.0, 0, 160], [0, 200.0, 60], [0, 0, 1]])
W, H = 320, 120
T0 = 1_700_000_000_000_000_000
PERIOD = 100_000_000
# LiDAR (x fwd, y left, z up) -> camera optical (x right, y down, z fwd), camera 0.3 m above the LiDAR
R_CAM_LIDAR = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
T_CAM_LIDAR = np.eye(4)
T_CAM_LIDAR[:3, :3] = R_CAM_LIDAR
T_CAM_LIDAR[:3, 3] = R_CAM_LIDAR @ np.array([0.0, 0.0, -0.3])
# TF tree: base_link -> lidar (1.8 m up) and base_link -> camera (2.1 m up, rotated): a 2-edge chain
T_BASE_LIDAR = np.eye(4)
T_BASE_LIDAR[2, 3] = 1.8
T_BASE_CAM = T_BASE_LIDAR @ np.linalg.inv(T_CAM_LIDAR)


def car_box(i: int):
    return np.array([10.0 + 0.5 * i, 1.0, -0.95]), np.array([4.2, 1.8, 1.5]), 0.3


def scene(i: int, rng=None):
    """(image, points Nx4, prompt) of frame i; deterministic."""
    rng = rng or np.random.default_rng(i)
    gx, gy = np.meshgrid(np.linspace(3, 40, 60), np.linspace(-10, 10, 40))
    ground = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, -1.7), np.full(gx.size, 0.2)])
    c, s, yaw = car_box(i)
    u = rng.uniform(-0.5, 0.5, (600, 3))
    face = rng.integers(0, 3, 600)
    u[np.arange(600), face] = np.sign(u[np.arange(600), face]) * 0.5     # points on the box faces
    Rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    car = (u * s) @ Rz.T + c
    car = car[car[:, 0] < c[0] + 0.3]     # roughly the faces seen from the sensor
    points = np.vstack([ground, np.column_stack([car, np.full(len(car), 0.8)])]).astype(np.float32)
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = np.linspace(90, 160, H, dtype=np.uint8)[:, None, None]
    box = projected_box2d(K, T_CAM_LIDAR, c, s, yaw, W, H)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    img[y1:y2, x1:x2] = (200, 30, 30)
    return img, points, Prompt(id=7, box=np.asarray(box, float), cls='Car', score=0.9)


def write_tiny_bag(path, n: int = 4, storage: str = 'mcap', corrupt_message_at=None, bad_encoding_at=None,
                   extra_cloud_topic: bool = False, extra_cloud_without_image: bool = False,
                   with_tf: bool = True, with_prompts: bool = True) -> Path:
    ts = get_typestore()
    fac = M.rosbags_factory(ts)
    path = Path(path)
    with BagWriter(path, storage=storage) as w:
        if with_tf:
            for parent, child, T in (('base_link', 'lidar', T_BASE_LIDAR), ('base_link', 'camera',
                                                                            T_BASE_CAM)):
                w.write('/tf_static', M.make_tf_static(T, parent, child, T0, fac), T0)
        for i in range(n):
            t = T0 + i * PERIOD
            img, pts, prompt = scene(i)
            w.write('/camera/camera_info', M.make_camera_info(K, W, H, t, 'camera', fac), t)
            if corrupt_message_at == i:
                w.write_raw('/camera/image_raw', 'sensor_msgs/msg/Image', t + 1, b'\x00\x01garbage')
            else:
                msg = M.make_image(img, t, 'camera', fac)
                if bad_encoding_at == i:
                    msg.encoding = 'yuv422_weird'
                w.write('/camera/image_raw', msg, t + 1)
            # the cloud stamp is 3 ms off the image stamp: within the default tolerance
            w.write('/lidar/points', M.make_pointcloud2(pts, t + 3_000_000, 'lidar', fac), t + 2)
            if extra_cloud_topic:
                w.write('/lidar/other', M.make_pointcloud2(pts, t, 'lidar', fac), t + 2)
            if with_prompts:
                w.write('/prompts', M.prompts_to_detection2d_array([prompt], t, 'camera', fac), t + 3)
        if extra_cloud_without_image:
            t = T0 + n * PERIOD + PERIOD // 2
            w.write('/lidar/points', M.make_pointcloud2(scene(0)[1], t, 'lidar', fac), t)
    return path


def fast_config(path) -> Path:
    """Pipeline config for tests: box masks (no SAM), a short fit."""
    Path(path).write_text('segmenter: {model: box}\ndetector: {backend: none}\n'
                          'fit: {iterations: 12, prune_after: 6, mask_from: 6, final_crop_size: 32}\n')
    return Path(path)


def test_fixture_scene_projects_inside_image(tmp_path):
    img, pts, prompt = scene(0)
    x1, y1, x2, y2 = prompt.box
    assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H and (x2 - x1) > 20
    assert np.isfinite(box_corners(*car_box(0))).all() and len(pts) > 2000
