"""A synthetic frame the nodes run once at configure, ROS-free.

The first frame through the pipeline pays for lazy imports (open3d, scikit-image, PIL), torch's
first-call allocations and the first serialization of each message type: ~3.5 s of CPU more than
the next frame on this project's test machine. A node that pays it on its first real frame is still
busy when the second arrives, and the one-slot queue drops it. Paid at configure, it is part of the
model loading instead.
"""
from __future__ import annotations

import numpy as np

from autolabel_ros.core.geometry import projected_box2d
from autolabel_ros.core.types import Prompt, SensorFrame

# LiDAR (x forward, y left, z up) -> camera optical frame (x right, y down, z forward)
_T_CAM_LIDAR = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.1], [1.0, 0.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]])


def _box_surface(center, size, step: float) -> np.ndarray:
    """Points on the faces of an axis-aligned box, ``step`` apart."""
    c, half = np.asarray(center, float), np.asarray(size, float) / 2
    out = []
    for axis in range(3):
        a, b = [k for k in range(3) if k != axis]
        u = np.arange(-half[a], half[a] + 1e-9, step)
        v = np.arange(-half[b], half[b] + 1e-9, step)
        uu, vv = np.meshgrid(u, v)
        for sign in (-1.0, 1.0):
            p = np.zeros((uu.size, 3))
            p[:, a], p[:, b], p[:, axis] = uu.ravel(), vv.ravel(), sign * half[axis]
            out.append(p + c)
    return np.vstack(out)


def warmup_frame(width: int = 1242, height: int = 375) -> tuple[SensorFrame, list[Prompt]]:
    """Flat ground 1.7 m below the LiDAR and one car-sized box 20 m ahead (its surface as LiDAR
    points, a darker patch in a grey image), with the box's projection as the one prompt."""
    K = np.array([[720.0, 0.0, width / 2], [0.0, 720.0, height / 2], [0.0, 0.0, 1.0]])
    ground_z = -1.7
    gx, gy = np.meshgrid(np.arange(3.0, 40.0, 0.3), np.arange(-10.0, 10.0, 0.3))
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, ground_z)], axis=1)
    center, size = np.array([20.0, 0.5, ground_z + 0.75]), np.array([4.2, 1.8, 1.5])
    car = _box_surface(center, size, 0.1)
    pts = np.vstack([ground, car])
    points = np.hstack([pts, np.full((len(pts), 1), 0.3)]).astype(np.float32)
    box = projected_box2d(K, _T_CAM_LIDAR, center, size, 0.0, width, height)
    image = np.full((height, width, 3), 128, np.uint8)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    image[y1:y2, x1:x2] = (60, 60, 70)
    frame = SensorFrame(image=image, K=K, points=points, T_cam_lidar=_T_CAM_LIDAR, stamp_ns=0,
                        frame_id='warm-up')
    return frame, [Prompt(id=0, box=np.asarray(box, float), cls='Car', score=0.9, sources=('warm-up',))]
