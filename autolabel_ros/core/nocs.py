"""Normalised object coordinates (NOCS) of a car and the square image patch they are predicted on.

NOCS of a point = its position in the car's canonical frame (x forward, y left, z up, origin at the
box centre) divided by the box diagonal ``d = |(l, w, h)|`` and shifted by 0.5, so every car fits
the unit cube and keeps its proportions (SDFLabel's unit-diameter convention). A point, its NOCS
and the box are tied by one similarity transform: ``p = c + d * R_z(yaw) (nocs - 0.5)``, which is
what RANSAC-Procrustes recovers from NOCS <-> LiDAR correspondences.

A patch is the square around an object's 2D box (side = ``pad`` x the longer box side, centred on the
box), resampled to ``size`` x ``size``: the car keeps its aspect ratio, whatever its pixel size.
The simulator's training targets and the network's inputs use this one definition.
"""
from __future__ import annotations

import cv2
import numpy as np

from autolabel_ros.core.geometry import rot_z


def box_diagonal(size) -> float:
    return float(np.linalg.norm(np.asarray(size, np.float64)))


def points_to_nocs(pts: np.ndarray, center, size, yaw: float) -> np.ndarray:
    """N x 3 points (same frame as the box) -> N x 3 NOCS (inside [0, 1] for points of the box)."""
    local = (np.asarray(pts, np.float64) - np.asarray(center, np.float64)) @ rot_z(yaw)
    return local / box_diagonal(size) + 0.5


def nocs_to_points(nocs: np.ndarray, center, size, yaw: float) -> np.ndarray:
    return (np.asarray(nocs, np.float64) - 0.5) * box_diagonal(size) @ rot_z(yaw).T + np.asarray(center)


def patch_window(box, pad: float = 1.2) -> np.ndarray:
    """The square (x0, y0, side) around box (x1, y1, x2, y2); it may reach beyond the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 2.0) * pad
    return np.array([(x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side])


def cut_patch(img: np.ndarray, window, size: int, interp: int = cv2.INTER_AREA) -> np.ndarray:
    """Resample the window (x0, y0, side) of an H x W (x C) array to size x size; outside the image
    is zero. INTER_AREA for images (no aliasing when shrinking), INTER_NEAREST for labels."""
    x0, y0, side = (float(v) for v in window)
    s = size / side
    # image pixel index u (centre at u + 0.5) -> patch index (u + 0.5 - x0) * s - 0.5
    M = np.array([[s, 0.0, (0.5 - x0) * s - 0.5], [0.0, s, (0.5 - y0) * s - 0.5]])
    if interp == cv2.INTER_AREA and s < 1.0:
        # shrink by an integer-ish box filter first: warpAffine itself has no area mode
        k = int(np.floor(1.0 / s))
        if k > 1:
            img = cv2.blur(img, (k, k))
        interp = cv2.INTER_LINEAR
    out = cv2.warpAffine(img, M, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def patch_pixel_coords(window, size: int) -> np.ndarray:
    """size x size x 2 image coordinates (u, v) of the patch pixel centres."""
    x0, y0, side = (float(v) for v in window)
    g = (np.arange(size) + 0.5) * side / size
    u, v = np.meshgrid(x0 + g, y0 + g)
    return np.stack([u - 0.5, v - 0.5], axis=-1)
