"""Similarity (scale, yaw, translation) between NOCS and LiDAR points, robust to outliers (RANSAC).

Cars stand upright, so the rotation is about z only: ``b = s R_z(yaw) a + c`` with ``a = nocs - 0.5``
(the car's normalised frame, :mod:`autolabel_ros.core.nocs`) and ``b`` the LiDAR points. The
closed-form fit (Umeyama restricted to yaw) takes the yaw from the horizontal cross-covariance,
the scale from all three axes and the translation from the centroids. RANSAC draws minimal triples,
counts the points within ``inlier_m`` of their transformed NOCS, keeps the best and refits on its
inliers. The scale is the box diagonal in metres; a draw outside ``scale_range`` is rejected.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autolabel_ros.core.geometry import rot_z


@dataclass
class Similarity:
    scale: float
    yaw: float
    t: np.ndarray               # 3: the box centre (NOCS 0.5) in the points' frame
    inliers: np.ndarray         # N bool

    def apply(self, a: np.ndarray) -> np.ndarray:
        return self.scale * a @ rot_z(self.yaw).T + self.t


def fit_similarity_yaw(a: np.ndarray, b: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares (scale, yaw, t) with b ~ s R_z(yaw) a + t for N >= 2 pairs."""
    ma, mb = a.mean(0), b.mean(0)
    ac, bc = a - ma, b - mb
    yaw = float(np.arctan2(np.sum(ac[:, 0] * bc[:, 1] - ac[:, 1] * bc[:, 0]),
                           np.sum(ac[:, 0] * bc[:, 0] + ac[:, 1] * bc[:, 1])))
    ra = ac @ rot_z(yaw).T
    s = float(np.sum(ra * bc) / max(np.sum(ac * ac), 1e-12))
    return s, yaw, mb - s * ma @ rot_z(yaw).T


def ransac_similarity(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, iters: int = 200,
                      inlier_m: float = 0.3, scale_range=(2.5, 7.5), min_inliers: int = 5
                      ) -> Similarity | None:
    """Robust similarity for N pairs (a: NOCS - 0.5, b: metres); None when no draw gathers
    ``min_inliers`` inliers with a plausible scale."""
    n = len(a)
    if n < max(3, min_inliers):
        return None
    best, best_n = None, 0
    for _ in range(iters):
        idx = rng.choice(n, 3, replace=False)
        s, yaw, t = fit_similarity_yaw(a[idx], b[idx])
        if not scale_range[0] <= s <= scale_range[1]:
            continue
        err = np.linalg.norm(s * a @ rot_z(yaw).T + t - b, axis=1)
        inl = err < inlier_m
        k = int(inl.sum())
        if k > best_n:
            best, best_n = inl, k
    if best is None or best_n < min_inliers:
        return None
    s, yaw, t = fit_similarity_yaw(a[best], b[best])
    if not scale_range[0] <= s <= scale_range[1]:
        return None
    inl = np.linalg.norm(s * a @ rot_z(yaw).T + t - b, axis=1) < inlier_m
    return Similarity(scale=s, yaw=yaw, t=t, inliers=inl)
