"""Ground plane ``z = a x + b y + c`` (LiDAR frame) by RANSAC over the low points of the scan."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GroundPlane:
    a: float
    b: float
    c: float
    inliers: int = 0

    @property
    def coef(self) -> np.ndarray:
        return np.array([self.a, self.b, self.c])

    def height_at(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return self.a * xy[..., 0] + self.b * xy[..., 1] + self.c

    def height_above(self, pts: np.ndarray) -> np.ndarray:
        """Vertical distance of N x 3 points above the plane (negative below)."""
        return pts[:, 2] - self.height_at(pts[:, :2])


def fit_ground(points: np.ndarray, cfg, rng: np.random.Generator,
               max_range: float = 40.0) -> GroundPlane | None:
    """RANSAC over points within ``max_range`` m (horizontal) in the lowest part of the scan, then a
    least-squares refit on the inliers. Planes steeper than ``cfg.max_slope_deg`` are not candidates.
    Returns None when the scan has too few usable points."""
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    r = np.linalg.norm(pts[:, :2], axis=1)
    pts = pts[(r > 2.0) & (r < max_range)]
    if len(pts) < 20:
        return None
    # ground is near the bottom: keep points below the 40th height percentile + 1 m
    pts = pts[pts[:, 2] < np.percentile(pts[:, 2], 40) + 1.0]
    if len(pts) > 20000:
        pts = pts[rng.choice(len(pts), 20000, replace=False)]
    n_it = int(cfg.ransac_iterations)
    tri = pts[rng.integers(0, len(pts), size=(n_it, 3))]                 # n, 3, 3
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nn = np.linalg.norm(nrm, axis=1)
    ok = nn > 1e-6
    nrm[ok] /= nn[ok, None]
    cos_max = np.cos(np.deg2rad(cfg.max_slope_deg))
    ok &= np.abs(nrm[:, 2]) >= cos_max
    if not np.any(ok):
        return None
    nrm, p0 = nrm[ok], tri[ok, 0]
    dist = np.abs((pts[None] - p0[:, None]) @ nrm[..., None])[..., 0]     # n, N (point-plane)
    score = (dist < cfg.inlier_threshold).sum(1)
    best = int(np.argmax(score))
    inl = pts[dist[best] < cfg.inlier_threshold]
    if len(inl) < 10:
        return None
    A = np.concatenate([inl[:, :2], np.ones((len(inl), 1))], 1)
    (a, b, c), *_ = np.linalg.lstsq(A, inl[:, 2], rcond=None)
    return GroundPlane(float(a), float(b), float(c), int(len(inl)))


def local_offsets(points: np.ndarray, plane: GroundPlane | None, centres: np.ndarray, radius: float,
                  band: float, min_points: int = 10) -> np.ndarray:
    """(N,) height of the road under each of ``centres`` (N x 2, LiDAR frame) above the frame's plane:
    the median height above the plane of the scan points within ``band`` of it (the plane's inliers)
    within ``radius`` m horizontally of the centre; 0 with fewer than ``min_points`` of them, without
    a plane, or with radius 0. One plane over 40 m of road misses its camber and slope changes by
    ~0.1 m at the far cars (KITTI), and the ground term puts the car's wheels on what it is given."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    out = np.zeros(len(centres))
    if plane is None or radius <= 0 or not len(centres):
        return out
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    h = plane.height_above(pts)
    road = np.abs(h) < band
    pts, h = pts[road], h[road]
    if not len(pts):
        return out
    for k, c in enumerate(centres):
        near = np.sum((pts[:, :2] - c) ** 2, axis=1) < radius ** 2
        if near.sum() >= min_points:
            out[k] = float(np.median(h[near]))
    return out
