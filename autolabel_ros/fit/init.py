"""Per-object LiDAR evidence and initial hypotheses.

Frustum points = scan points projecting into the instance mask (eroded by ``fit.mask_erode_px``), minus
the ground (within ``ground.removal_height`` of the plane), minus what lies behind or in front of the car:
the points are split into 3D Euclidean clusters (KD-tree radius graph, radius growing with range as the
scan gets sparser; LiDAR beams pass through windows, so a car can fall apart into fragments) and the
cluster with the best score = point count x agreement of its depth with the depth implied by the 2D box
height (a car is ~1.5 m tall) is kept; a cluster more than a factor ~1.6 off that depth is dropped
(background behind a far car).

Initial position per heading hypothesis: the median of the kept points, pushed back along the
horizontal viewing ray (the visible points are on the near surface) by the support of a mean-size
box in that heading minus a part of the visible depth spread; height from the ground plane
(standing car) when a plane is known. Headings: the minimum-area rectangle of the bird's-eye
points gives yaw0 (mod 90 deg); hypotheses are yaw0 + k * 360/H (H >= 4 contains the front/back
flip of every axis-aligned candidate). Without points, or as extra hypotheses when the points
may not be the object's (a partly hidden car, see fit/lift.py), the box placement: the near side at
the depth the 2D box implies along the ray through its centre, the centre behind it by the mean
box's support in each of evenly spaced headings around the viewing direction.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


@dataclass
class ObjectInit:
    points: np.ndarray          # M x 3 LiDAR points kept for the fit (may be empty)
    xyz: np.ndarray             # H x 3 initial centres, one per heading hypothesis
    yaw: np.ndarray             # H headings
    depth: float                # median camera depth of the points (the box's depth without points)
    n_frustum: int              # points in the mask frustum before ground/cluster removal
    # H energies added at the pruning only (None: 0): a hypothesis of a less trusted source goes on only
    # where it beats the others by that much (hybrid's Procrustes pose, css.procrustes_handicap)
    prune_bias: np.ndarray | None = None


def mask_points(uv_int: np.ndarray, valid: np.ndarray, mask: np.ndarray, erode_px: int) -> np.ndarray:
    """Indices of projected points (valid, integer pixel coords) inside the mask (optionally eroded)."""
    m = mask.astype(np.uint8)
    if erode_px > 0 and m.sum() > 4 * (2 * erode_px + 1) ** 2:
        m = cv2.erode(m, np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8))
    idx = np.flatnonzero(valid)
    inside = m[uv_int[idx, 1], uv_int[idx, 0]] > 0
    return idx[inside]


def clusters(pts: np.ndarray, radius: float) -> np.ndarray:
    """Labels of the radius-connected components of N x 3 points."""
    n = len(pts)
    if n <= 1:
        return np.zeros(n, np.int64)
    pairs = cKDTree(pts).query_pairs(radius, output_type='ndarray')
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def select_cluster(pts: np.ndarray, depth: np.ndarray, radius: float, box_depth: float | None,
                   depth_sigma: float = 0.3, max_ratio: float = 1.6) -> np.ndarray:
    """Boolean mask of the object's cluster among N x 3 frustum points with camera depths ``depth``
    (see the module docstring). ``radius`` is the clustering radius at 20 m range."""
    n = len(pts)
    if n == 0:
        return np.zeros(0, bool)
    rng = float(np.median(np.linalg.norm(pts, axis=1)))
    lab = clusters(pts, radius * max(1.0, rng / 20.0))
    best, best_score = None, 0.0
    for c in np.unique(lab):
        sel = lab == c
        score = float(sel.sum())
        if box_depth is not None:
            r = abs(np.log(np.median(depth[sel]) / box_depth))
            if r > np.log(max_ratio):
                continue
            score *= float(np.exp(-0.5 * (r / depth_sigma) ** 2))
        if score > best_score:
            best, best_score = sel, score
    return best if best is not None else np.zeros(n, bool)


def heading_hypotheses(bev: np.ndarray, n_hyp: int, view_azimuth: float, min_points: int = 5) -> np.ndarray:
    if len(bev) >= min_points:
        (_, _), (_, _), ang = cv2.minAreaRect(bev.astype(np.float32))
        yaw0 = np.deg2rad(ang)
    else:
        yaw0 = view_azimuth
    return yaw0 + np.arange(n_hyp) * (2 * np.pi / n_hyp)


def init_object(pts: np.ndarray, n_frustum: int, depth: float, ground, mean_size: np.ndarray, n_hyp: int,
                box_center_ray: np.ndarray | None = None, cam_origin: np.ndarray | None = None,
                box_depth: float | None = None, ambiguous: bool = False) -> ObjectInit:
    """Hypotheses for one object from its kept points (M x 3). Without points, the centre is put on the
    ray through the 2D box centre (``box_center_ray``, unit, LiDAR frame) at ``box_depth`` metres.
    ``ambiguous`` (the points may not be the object's, see fit/lift.py): the box placement's headings
    are added to the points' ones, and the full energy chooses."""
    l, w, h = mean_size
    if len(pts) == 0:
        xyz, yaws = box_placement(cam_origin, box_center_ray, box_depth, mean_size, n_hyp, ground)
        return ObjectInit(pts, xyz, yaws, depth, n_frustum)
    med = np.median(pts, axis=0)
    v = med[:2] / max(np.linalg.norm(med[:2]), 1e-6)          # horizontal viewing direction (LiDAR origin)
    az = float(np.arctan2(v[1], v[0]))
    yaws = heading_hypotheses(pts[:, :2], n_hyp, az)
    # visible depth spread: how far the visible surface extends away from the sensor
    along = pts[:, :2] @ v
    spread = float(np.percentile(along, 90) - np.percentile(along, 10))
    xyz = np.zeros((n_hyp, 3))
    for i, yw in enumerate(yaws):
        rel = az - yw
        support = l / 2 * abs(np.cos(rel)) + w / 2 * abs(np.sin(rel))
        push = max(support - 0.5 * spread, 0.3 * support)
        xyz[i, :2] = med[:2] + v * push
    if ground is not None:
        xyz[:, 2] = ground.height_at(xyz[:, :2]) + h / 2
    else:
        xyz[:, 2] = med[2]
    if ambiguous and box_center_ray is not None and box_depth is not None:
        bx, by = box_placement(cam_origin, box_center_ray, box_depth, mean_size, n_hyp, ground, med[2])
        xyz, yaws = np.concatenate([xyz, bx]), np.concatenate([yaws, by])
    return ObjectInit(pts, xyz, yaws, depth, n_frustum)


def box_placement(cam_origin: np.ndarray, ray: np.ndarray, box_depth: float, mean_size: np.ndarray,
                  n_hyp: int, ground, z: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n_hyp x 3 centres, n_hyp headings) from the 2D box alone: the near face at ``box_depth`` along
    the ray through the box centre (unit, LiDAR frame, from the camera centre ``cam_origin``), the
    centre behind it by a mean-size box's support in each heading (evenly spaced around the viewing
    direction); standing on the ground when a plane is known, else at height ``z`` (default: the ray's)."""
    l, w, h = mean_size
    near = cam_origin + ray * box_depth
    az = float(np.arctan2(near[1], near[0]))
    yaws = az + np.arange(n_hyp) * (2 * np.pi / n_hyp)
    v = ray[:2] / max(np.linalg.norm(ray[:2]), 1e-6)
    xyz = np.repeat(near[None], n_hyp, 0)
    rel = az - yaws
    xyz[:, :2] += v[None] * (l / 2 * np.abs(np.cos(rel)) + w / 2 * np.abs(np.sin(rel)))[:, None]
    if ground is not None:
        xyz[:, 2] = ground.height_at(xyz[:, :2]) + h / 2
    elif z is not None:
        xyz[:, 2] = z
    return xyz, yaws
