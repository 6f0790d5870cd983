"""RViz "Publish Point" clicks -> point prompts, ROS-free: a thread-safe buffer of clicks waiting
for the next frame and their projection into the image."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from autolabel_ros.core.geometry import project, transform_points
from autolabel_ros.core.types import Prompt
from autolabel_ros.io.frames import tf_frame_id
from autolabel_ros.nodes.tf_lookup import Lookup, transform_at


@dataclass
class Click:
    xyz: np.ndarray        # in frame_id
    frame_id: str
    received: float        # wall clock seconds
    stamp_ns: int = 0      # header stamp of the click (0 = none given)


class ClickBuffer:
    """Clicked 3D points waiting for the next frame (thread-safe)."""

    def __init__(self, max_age: float = 30.0):
        self.max_age = float(max_age)
        self._lock = threading.Lock()
        self._clicks: list[Click] = []

    def add(self, xyz, frame_id: str, now: float, stamp_ns: int = 0) -> bool:
        """Keep a click; False (not kept) for a point with a NaN or infinite coordinate."""
        p = np.asarray(xyz, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(p)):
            return False
        with self._lock:
            self._clicks.append(Click(p, str(frame_id), float(now), int(stamp_ns)))
        return True

    def take(self, now: float) -> list[Click]:
        """All fresh clicks (removed from the buffer); stale ones are dropped."""
        with self._lock:
            clicks, self._clicks = self._clicks, []
        return [c for c in clicks if self.max_age <= 0 or now - c.received <= self.max_age]

    def __len__(self):
        with self._lock:
            return len(self._clicks)


def clicks_in_camera(clicks: Sequence[Click], lookup: Lookup, camera_frame: str, lidar_frame: str,
                     T_cam_lidar: np.ndarray, timeout: float) -> tuple[np.ndarray, list[str]]:
    """Clicked points -> camera optical frame (N x 3), each transformed at its own stamp with the
    cloud's fallbacks (latest TF; for a click in the LiDAR frame, the frame's extrinsic). A click
    without a frame id is taken in the LiDAR frame. Returns (points, frame ids of the clicks that
    could not be transformed)."""
    pts, ignored = [], []
    for c in clicks:
        frame_id = tf_frame_id(c.frame_id) or lidar_frame
        fallback = T_cam_lidar if frame_id == lidar_frame else None
        T, _ = transform_at(lookup, camera_frame, frame_id, c.stamp_ns, timeout, fallback)
        if T is None:
            ignored.append(c.frame_id)
            continue
        pts.append(transform_points(T, c.xyz[None])[0])
    return np.array(pts, dtype=np.float64).reshape(-1, 3), ignored


CLICK_ID_BASE = 100000   # click prompt ids start here so they never collide with detector ids


def clicks_to_prompts(points_cam: np.ndarray, K: np.ndarray, width: int, height: int,
                      first_id: int = CLICK_ID_BASE, cls: str = 'Car') -> tuple[list[Prompt], int]:
    """Clicked points already in the camera optical frame -> one point prompt each.

    Returns (prompts, number of clicks that fell behind the camera or outside the image).
    """
    pts = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0:
        return [], 0
    uv, z = project(np.asarray(K, dtype=np.float64), pts)
    ok = (z > 1e-3) & np.all(np.isfinite(uv), axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] < width) \
        & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    prompts = [Prompt(id=first_id + i, points=uv[i:i + 1], point_labels=np.ones(1, np.int64), cls=cls,
                      sources=('click',))
               for i in np.flatnonzero(ok)]
    return prompts, int((~ok).sum())

