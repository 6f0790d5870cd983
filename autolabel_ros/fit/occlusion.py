"""Whose evidence is whose: the depth order of a frame's prompts and the split of LiDAR points
between overlapping objects, so that a partly hidden car never takes the points of the car in front.

Depth order: from the 2D boxes, not from the LiDAR points (a hidden car's mask often covers the car
in front, so its frustum points are that car's and their median depth says nothing). The order key
is the camera depth of the ground under the box's bottom edge (the ray through the bottom-centre
pixel meets the ground plane): of two overlapping cars on one road, the one whose box reaches lower
in the image stands nearer, whether the box is amodal or only the visible part. Without a ground
plane, or when that ray does not meet the ground in front of the camera, the depth implied by the
box height and the mean car height.

Evidence split (:func:`own_points`), objects taken nearest first: a frustum point of an object is
not its own when a nearer object kept it in its cluster, or when it projects into a nearer object's
mask no deeper than that object's far side (its nearest kept point + the mean car width +
``DEPTH_MARGIN``): the camera sees the nearer car there. Points that project there from farther
away (the LiDAR looks over the car in front) stay the object's own.

Verification (:func:`on_nearer_object`): a fitted box whose bird's-eye footprint overlaps the fitted
box of a nearer object it is partly hidden by lies on that object.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon

from autolabel_ros.core.geometry import bev_corners

# beyond a nearer object's far side (m): points this much deeper in its mask pixels are not its
DEPTH_MARGIN = 0.5
# a partly hidden object with fewer own points than this, or whose points' depth is off the box
# height's by more than this ratio, also gets hypotheses placed from its 2D box
AMBIGUOUS_POINTS = 10
AMBIGUOUS_DEPTH_RATIO = 1.3
# a hidden car's box is on the nearer car's when their footprints overlap by this share of the smaller
ON_NEARER_OVERLAP = 0.2


@dataclass(frozen=True)
class Claim:
    """What a nearer object took: its kept points (indices into the scan), its mask, and the depth
    up to which points in its mask pixels are its (None: no points, the pixels alone claim nothing)."""

    idx: np.ndarray
    mask: np.ndarray
    far_depth: float | None


def ground_contact_depth(K: np.ndarray, T_cam_lidar: np.ndarray, ground, box) -> float | None:
    """Camera depth of the ground point under the bottom-centre pixel of ``box`` (x1, y1, x2, y2),
    None without a plane or when the ray does not meet it in front of the camera."""
    if ground is None:
        return None
    R, t = T_cam_lidar[:3, :3], T_cam_lidar[:3, 3]
    o = -R.T @ t
    pix = np.array([(box[0] + box[2]) / 2, box[3], 1.0])
    d = R.T @ (np.linalg.inv(K) @ pix)          # camera depth 1 along this direction
    # o + s d on z = a x + b y + c
    n = np.array([-ground.a, -ground.b, 1.0])
    den = float(n @ d)
    if abs(den) < 1e-9:
        return None
    s = (ground.c - float(n @ o)) / den
    return float(s) if s > 0.5 else None


def depth_order(keys) -> np.ndarray:
    """Ranks (0 = nearest) of objects by their order depth (stable on ties)."""
    keys = np.asarray(keys, float)
    rank = np.empty(len(keys), int)
    rank[np.argsort(keys, kind='stable')] = np.arange(len(keys))
    return rank


def own_points(idx: np.ndarray, depth: np.ndarray, uv_int: np.ndarray, claims: list[Claim]) -> np.ndarray:
    """Boolean mask over frustum point indices ``idx`` (into the scan, whose camera depths are ``depth``
    and integer pixels ``uv_int``): True where no nearer object's claim covers the point (see the
    module docstring)."""
    keep = np.ones(len(idx), bool)
    if len(idx) == 0:
        return keep
    for c in claims:
        keep &= ~np.isin(idx, c.idx)
        if c.far_depth is not None:
            in_mask = c.mask[uv_int[idx, 1], uv_int[idx, 0]]
            keep &= ~(in_mask & (depth[idx] <= c.far_depth))
    return keep


def claim_of(idx: np.ndarray, depth: np.ndarray, mask: np.ndarray, mean_width: float) -> Claim:
    """The claim of an object that kept the points ``idx`` (its cluster) with mask ``mask``."""
    far = float(depth[idx].min() + mean_width + DEPTH_MARGIN) if len(idx) else None
    if far is not None:
        far = max(far, float(depth[idx].max()) + DEPTH_MARGIN)
    return Claim(idx=np.asarray(idx), mask=mask, far_depth=far)


def ambiguous(n_nearer: int, n_own: int, depth: float, box_depth: float | None) -> bool:
    """Whether a partly hidden object's own points may still not be its (``n_nearer`` of its frustum
    points went to nearer objects, ``n_own`` points kept at median camera depth ``depth``; the box
    height implies ``box_depth``, None when the box is cut): few points, or a depth the box disagrees
    with. Its box placement then joins the hypotheses."""
    if n_nearer == 0:
        return False
    if n_own < AMBIGUOUS_POINTS:
        return True
    return box_depth is not None and abs(np.log(depth / box_depth)) > np.log(AMBIGUOUS_DEPTH_RATIO)


def few_and_off(n_nearer: int, n_own: int, depth: float, place_depth: float) -> bool:
    """A partly hidden object's kept points are too few to trust (< ``AMBIGUOUS_POINTS``) and their
    median depth is off the box's placement by more than ``AMBIGUOUS_DEPTH_RATIO``: stray returns
    (the edge of the car in front, a pole), not the object."""
    return n_nearer > 0 and n_own < AMBIGUOUS_POINTS and \
        abs(np.log(depth / place_depth)) > np.log(AMBIGUOUS_DEPTH_RATIO)


def footprint_overlap(a, b) -> float:
    """Intersection area of two bird's-eye boxes (centre, size, yaw) over the smaller one's area."""
    pa, pb = Polygon(bev_corners(*a)), Polygon(bev_corners(*b))
    small = min(pa.area, pb.area)
    return float(pa.intersection(pb).area / small) if small > 0 else 0.0


def on_nearer_object(boxes: list, masks: list[np.ndarray], order_depth, min_overlap: float = ON_NEARER_OVERLAP
                     ) -> list[int | None]:
    """Per object (boxes: (centre, size, yaw) or None when not fitted), the position of a nearer
    object (by ``order_depth``) whose 2D mask touches its mask and whose fitted footprint overlaps its
    own by ``min_overlap`` of the smaller one; None when there is none."""
    rank = depth_order(order_depth)
    out: list[int | None] = [None] * len(boxes)
    for k, bk in enumerate(boxes):
        if bk is None:
            continue
        for j, bj in enumerate(boxes):
            if j == k or bj is None or rank[j] >= rank[k] or not _touch(masks[j], masks[k]):
                continue
            if footprint_overlap(bk, bj) >= min_overlap:
                out[k] = j
                break
    return out


def _touch(a: np.ndarray, b: np.ndarray, pad: int = 2) -> bool:
    """The masks overlap or their bounding boxes come within ``pad`` pixels of each other."""
    if not a.any() or not b.any():
        return False
    ya, xa = np.nonzero(a.any(1))[0], np.nonzero(a.any(0))[0]
    yb, xb = np.nonzero(b.any(1))[0], np.nonzero(b.any(0))[0]
    return not (xa[-1] + pad < xb[0] or xb[-1] + pad < xa[0] or ya[-1] + pad < yb[0] or yb[-1] + pad < ya[0])


def reject_on_nearer(labels: list, objects: list) -> None:
    """Verification across the frame's labels (``labels[o.index]`` is object o's): a label whose box
    lies on the fitted box of a nearer object it is partly hidden by is rejected with reason
    ``on_nearer_object`` (it took that object's evidence); ``metrics['on_nearer']`` = that prompt's
    position."""
    boxes = [(labels[o.index].center, labels[o.index].size, labels[o.index].yaw)
             if np.all(np.isfinite(labels[o.index].center)) else None for o in objects]
    hits = on_nearer_object(boxes, [o.mask for o in objects], [o.order_depth for o in objects])
    for o, j in zip(objects, hits):
        if j is None:
            continue
        lab = labels[o.index]
        lab.reasons.append('on_nearer_object')
        lab.accepted = False
        lab.metrics['on_nearer'] = int(objects[j].index)
