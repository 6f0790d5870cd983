"""Truncated cars: the scan of a car the image border cuts.

The camera sees only the part of a car inside the image; the LiDAR scans 360 degrees and sees the rest
too. The frustum points (fit/lift.py) are the in-image part only, so a near parked car at the left or
right edge, or a car so near that its lower body leaves the image at the bottom, is fitted to a
fraction of its scan: its length, centre and heading then rest on the prior and the silhouette alone.

For an object whose 2D box touches a border side (left, right, bottom), :func:`beyond_border` grows its
in-image cluster into the non-ground scan points beyond that side (projecting past it, or behind the
camera plane on that side for the left and right): the radius-connected components of the cluster and
those points that hold a cluster point (the same Euclidean clustering as fit/init.py, so a point joins
only through a chain of returns on the car), looked for within two car lengths of the cluster, no higher
above the ground than the cluster reaches plus a margin, and not kept by a nearer object. When what was
joined makes the object larger than a car (a wall, a hedge or a parked row joined through kerb returns)
nothing is added: the in-image part is never worse evidence than a wrong whole.

The added points take part in the LiDAR terms and the initial hypotheses; the silhouette terms never see
the render outside the image (the validity map is 0 there, fit/batch.py), so they do not push the car
back into the image. What was learned on the camera's view keeps to the in-image points: the profile
heading cue (fit/heading.py), and the lift's depth order, claims and placement checks (fit/lift.py).
"""
from __future__ import annotations

import cv2
import numpy as np

from autolabel_ros.fit.init import clusters

# a box edge within this many pixels of the image border is cut by it
BORDER_PX = 2.0
# the growth looks this many mean car lengths (bird's eye) around the in-image cluster
REACH_LENGTHS = 2.0
# and at most this much higher above the ground than the cluster's highest point (m)
HEIGHT_MARGIN = 0.4
# the growth clusters one point per voxel of (clustering radius / this)
VOXEL_PER_RADIUS = 3.0
# what a car's bird's-eye extent may reach, in mean car sizes (length, width): beyond, nothing is added
MAX_EXTENT = (1.5, 1.6)


def border_sides(box, width: int, height: int) -> tuple[str, ...]:
    """The image border sides a 2D box (x1, y1, x2, y2) touches, of left, right and bottom."""
    sides = []
    if box[0] <= BORDER_PX:
        sides.append('left')
    if box[2] >= width - BORDER_PX:
        sides.append('right')
    if box[3] >= height - BORDER_PX:
        sides.append('bottom')
    return tuple(sides)


def beyond_masks(uv: np.ndarray, pc: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
    """Per border side, which scan points lie beyond it: projecting past it in front of the camera
    (camera depth > 0.5 m, as the lift's own points), or, for the left and right, behind the camera
    plane on that side of the optical axis. ``uv`` N x 2 projections, ``pc`` N x 3 camera-frame points."""
    z = pc[:, 2]
    front = (z > 0.5) & np.all(np.isfinite(uv), axis=1)
    u = np.where(front, uv[:, 0], 0.0)
    v = np.where(front, uv[:, 1], 0.0)
    return {'left': (front & (u < 0)) | (~front & (pc[:, 0] < 0)),
            'right': (front & (u >= width)) | (~front & (pc[:, 0] >= 0)),
            'bottom': front & (v >= height)}


def beyond_border(seed: np.ndarray, candidates: np.ndarray, xyz: np.ndarray, height_above: np.ndarray,
                  radius: float, mean_size: np.ndarray) -> np.ndarray:
    """Indices (into the scan ``xyz``) among ``candidates`` (indices of the non-ground, unclaimed points
    beyond the object's border sides) that belong to the car of the in-image cluster ``seed`` (indices);
    ``height_above`` N heights above the ground (or None), ``radius`` the clustering radius at 20 m."""
    none = np.zeros(0, np.int64)
    if len(seed) == 0 or len(candidates) == 0:
        return none
    s = xyz[seed]
    # a window of two car lengths around the cluster: what the growth joins there is seen whole
    # enough to tell a car from a wall or a parked row
    reach = REACH_LENGTHS * float(mean_size[0])
    lo, hi = s[:, :2].min(0) - reach, s[:, :2].max(0) + reach
    c = xyz[candidates]
    near = np.all((c[:, :2] >= lo) & (c[:, :2] <= hi), axis=1)
    if height_above is not None:
        near &= height_above[candidates] <= float(height_above[seed].max()) + HEIGHT_MARGIN
    cand = candidates[near]
    if len(cand) == 0:
        return none
    pts = np.concatenate([s, xyz[cand]])
    rng = float(np.median(np.linalg.norm(s, axis=1)))
    lab = voxel_clusters(pts, radius * max(1.0, rng / 20.0))
    added = cand[np.isin(lab[len(s):], np.unique(lab[:len(s)]))]
    if len(added) and not car_sized(np.concatenate([s, xyz[added]]), mean_size):
        return none
    return added


def voxel_clusters(pts: np.ndarray, radius: float) -> np.ndarray:
    """Labels of the radius-connected components of N x 3 points, computed on one point per voxel of
    a third of the radius: a near car has thousands of returns, whose radius graph costs more than
    the whole fit of the car, and a chain of returns within the radius runs through the voxels too."""
    keys = np.floor(pts / (radius / VOXEL_PER_RADIUS)).astype(np.int64)
    _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return clusters(pts[first], radius)[inv.ravel()]


def car_sized(pts: np.ndarray, mean_size: np.ndarray) -> bool:
    """Whether the bird's-eye extent of the points (the min-area rectangle) fits a car."""
    if len(pts) < 3:
        return True
    (_, _), (a, b), _ = cv2.minAreaRect(pts[:, :2].astype(np.float32))
    long, short = max(a, b), min(a, b)
    return long <= MAX_EXTENT[0] * float(mean_size[0]) and short <= MAX_EXTENT[1] * float(mean_size[1])
