"""Lift: masks + LiDAR -> typed per-object evidence for the fit (the "Lift" of Segment, Lift and Fit).

:func:`lift` runs once per frame and returns a :class:`FrameEvidence` that nothing changes later:

1. ground plane by RANSAC (:mod:`autolabel_ros.fit.ground`) and the projection of the scan;
2. the depth order of the prompts from their 2D boxes (the ground under the box's bottom edge,
   :mod:`autolabel_ros.fit.occlusion`), not from their points: a hidden car's mask often covers the
   car in front;
3. per object, nearest first: frustum points of the mask (``fit.mask_erode_px``) minus the ground minus
   the points a nearer object claims (its cluster, and its mask pixels up to its far side), the object's
   3D cluster (:func:`autolabel_ros.fit.init.select_cluster`), a seeded subset of at most
   ``fit.max_points`` (a car cut by the left, right or bottom image border also keeps its scan beyond
   that border, ``fit.truncated_scan``, :mod:`autolabel_ros.fit.truncation`; the camera depths that
   order, claim and place stay those of its points in the image), the LiDAR occluders in front of it,
   and the initial hypotheses
   (:mod:`autolabel_ros.fit.init`); a partly hidden object whose own points are few or disagree with its
   box also gets hypotheses placed from the box alone (the full energy chooses), and its last few points
   are dropped when they lie far off that placement;
4. the road height under each object: the plane's inliers within ``fit.ground_local_radius`` of
   it (:func:`autolabel_ros.fit.ground.local_offsets`), which the ground term stands the car on;
5. each object's occlusion map is the union of the masks of the nearer objects and its LiDAR
   occluders, within its box grown a little when the box is amodal (a ground-truth or person's
   box: hidden pixels outside it are still known not to be the car).

Objects whose mask is missing or empty are lifted from their prompt box (reason ``empty_mask``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from autolabel_ros.core.geometry import project, transform_points
from autolabel_ros.core.types import SensorFrame
from autolabel_ros.fit.clicks import click_depth, depth_window, trim_to_clicked
from autolabel_ros.fit.ground import GroundPlane, fit_ground, local_offsets
from autolabel_ros.fit.init import ObjectInit, init_object, mask_points, select_cluster
from autolabel_ros.fit.occlusion import (Claim, ambiguous, claim_of, depth_order, few_and_off,
                                         ground_contact_depth, own_points)
from autolabel_ros.fit.rays import camera_rays
from autolabel_ros.fit.truncation import beyond_border, beyond_masks, border_sides


@dataclass(frozen=True)
class ObjectEvidence:
    """What the frame says about one prompted object."""

    index: int                      # position of the prompt in the frame's prompt list
    mask: np.ndarray                # H x W bool instance mask (the prompt box when SAM gave none)
    box2d: np.ndarray               # the label's 2D box: clipped prompt box (clicks: the mask's box)
    n_frustum: int                  # own non-ground points in the mask frustum, before clustering
    points: np.ndarray              # M x 3 clustered points kept for the fit (LiDAR frame)
    occluders: np.ndarray | None    # H x W bool, pixels of LiDAR returns in front of the object
    init: ObjectInit                # initial hypotheses (centres, headings) and the depth
    nearer: np.ndarray              # H x W bool occlusion map: nearer objects' masks | occluders
    reasons: tuple = ()             # rejection reasons found while lifting
    n_nearer: int = 0               # frustum points left to nearer objects (fit/occlusion.py)
    ground_offset: float = 0.0      # road height under the object above the frame's plane (m)
    order_depth: float = 0.0        # the depth the frame's objects are ordered by (fit/occlusion.py)
    amodal: bool = False            # box2d covers the whole car, hidden parts included (is_amodal)
    # M bool: which of ``points`` project into the image (None: all); the others are a truncated car's
    # scan beyond the image border (fit/truncation.py)
    in_image: np.ndarray | None = None

    @property
    def mask_bounds(self) -> np.ndarray:
        """The mask's tight box (x1, y1, x2, y2), around which the fit crops the image."""
        return mask_box(self.mask)


@dataclass(frozen=True)
class FrameEvidence:
    ground: GroundPlane | None
    objects: list[ObjectEvidence] = field(default_factory=list)
    scan_nonground: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))   # for verification


# An initialiser maps (points, n_frustum, depth, ground, mean_size, n_hyp, **ray hints) to an ObjectInit.
Initialiser = Callable[..., ObjectInit]


def is_amodal(prompt) -> bool:
    """Whether a prompt's box covers the whole car, hidden parts included: a box drawn by a person or
    taken from ground truth does; a detector's or a LiDAR proposal's box covers what was seen, and
    clicks have no box."""
    return prompt.box is not None and not {'detector', 'lidar', 'click'} & set(prompt.sources)


def mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def split_ground(xyz: np.ndarray, cfg, rng: np.random.Generator):
    """The frame's ground plane (None when none is found) and which scan points lie above it (by more
    than ``ground.removal_height``; all of them without a plane). ``cfg``: the whole AutolabelConfig."""
    ground = fit_ground(xyz, cfg.ground, rng)
    nonground = np.ones(len(xyz), bool) if ground is None else \
        ground.height_above(xyz) > cfg.ground.removal_height
    return ground, nonground


def lift(frame: SensorFrame, prompts, boxes, masks, cfg, mean_size: np.ndarray,
         initialiser: Initialiser = init_object) -> FrameEvidence:
    """Evidence of the prompts whose clipped box is not None (``boxes[i]``), with masks ``masks[i]``
    (None or empty: the box is used). ``cfg`` is the whole AutolabelConfig (ground, fit, verify, seed)."""
    W, H = frame.width, frame.height
    rng = np.random.default_rng(cfg.seed)
    xyz = frame.xyz.astype(np.float64)
    ground, nonground = split_ground(xyz, cfg, rng)
    pc = transform_points(frame.T_cam_lidar, xyz)
    uv, z = project(frame.K, pc)
    valid = (z > 0.5) & np.all(np.isfinite(uv), axis=1)
    uv_int = np.zeros((len(xyz), 2), np.int64)
    uv_int[valid] = np.floor(uv[valid]).astype(np.int64)
    valid &= (uv_int[:, 0] >= 0) & (uv_int[:, 0] < W) & (uv_int[:, 1] >= 0) & (uv_int[:, 1] < H)
    usable = valid & nonground

    # per prompt: mask, box and the box cues; then the objects nearest first, each taking only the
    # points no nearer object claims (fit/occlusion.py)
    pre = []
    for i, box in enumerate(boxes):
        if box is None:
            continue
        reasons = []
        m = masks[i]
        if m is None or not m.any():
            reasons.append('empty_mask')
            m = np.zeros((H, W), bool)
            x1, y1, x2, y2 = box.astype(int)
            m[y1:y2, x1:x2] = True
        b = box
        d_click = None
        if prompts[i].box is None and not reasons:
            # click prompts: the clicks' bounding box says nothing about the car's extent, the mask does,
            # once cut to the object under the clicks (fit/clicks.py)
            if prompts[i].points is not None and cfg.fit.click_depth:
                clicks = np.asarray(prompts[i].points, float)
                d_click = click_depth(clicks, uv, pc[:, 2], usable)
                if d_click is not None:
                    m = trim_to_clicked(m, clicks, uv, pc[:, 2], usable, d_click)
            b = mask_box(m)
        # depth implied by the box height for a mean-height car (for cluster choice and no-point init);
        # a box cut by the image border or an occluder says little, so it is only used when the
        # box is away from the image border
        box_depth = float(np.clip(frame.K[1, 1] * mean_size[2] / max(b[3] - b[1], 1.0), 2.0, 150.0))
        contact = ground_contact_depth(frame.K, frame.T_cam_lidar, ground, b)
        contact = contact if contact is not None and contact < 150.0 else None
        # where the box alone puts the car's near side: the ground under an amodal box's bottom edge
        # (its nearest bottom corner; the box height overstates a car seen from above), else the height
        place = contact if contact is not None and is_amodal(prompts[i]) and not reasons \
            and b[3] < H - 2 else box_depth
        order = box_depth if contact is None else contact
        if d_click is not None:           # the scan under the clicks says how far the clicked car is
            place = order = d_click
        pre.append(dict(index=i, mask=m, box=np.asarray(b, float), reasons=reasons, box_depth=box_depth,
                        order=order, place=place, click_depth=d_click))
    # the scan beyond the image border, for the cars it cuts (fit/truncation.py); only in frames where a
    # box touches the border (the masks and heights cover the whole scan)
    beyond = None
    if cfg.fit.truncated_scan and any(border_sides(p['box'], W, H) for p in pre):
        beyond = {s: m & nonground for s, m in beyond_masks(uv, pc, W, H).items()}
        beyond['height'] = None if ground is None else ground.height_above(xyz)
    rank = depth_order([p['order'] for p in pre])
    claims: list[Claim] = []
    lifted: list = [None] * len(pre)
    for k in np.argsort(rank):
        p = pre[k]
        lifted[k], claim = _lift_object(frame, prompts[p['index']], p, xyz, pc, uv, uv_int, usable, ground,
                                        claims, cfg, mean_size, initialiser, beyond)
        claims.append(claim)

    nearer = occlusion_maps([o['mask'] for o in lifted], [p['order'] for p in pre],
                            [o['occluders'] for o in lifted], (H, W),
                            [p['box'] if is_amodal(prompts[p['index']]) and not p['reasons'] else None
                             for p in pre])
    # the road under each object (the ground term stands the car on it): the plane's inliers around
    # the centre of its initial hypotheses
    offsets = local_offsets(xyz, ground, [o['init'].xyz[:, :2].mean(0) for o in lifted],
                            cfg.fit.ground_local_radius, cfg.ground.inlier_threshold)
    for o, off in zip(lifted, offsets):
        o['init'].xyz[:, 2] += off
    objects = [ObjectEvidence(nearer=n, ground_offset=float(off), **o)
               for o, n, off in zip(lifted, nearer, offsets)]
    return FrameEvidence(ground=ground, objects=objects, scan_nonground=xyz[nonground])


def _lift_object(frame, prompt, p, xyz, pc, uv, uv_int, usable, ground, claims, cfg, mean_size, initialiser,
                 beyond=None):
    """Evidence of one object (a dict of ObjectEvidence fields but ``nearer``) and its claim. ``beyond``:
    per border side the non-ground scan points beyond it, and their heights above the ground (None: the
    in-image points only)."""
    fc = cfg.fit
    H, W = frame.height, frame.width
    m, b, reasons, box_depth = p['mask'], p['box'], list(p['reasons']), p['box_depth']
    erode = fc.mask_erode_px if prompt.box is not None else fc.click_mask_erode_px
    idx = mask_points(uv_int, usable, m, erode)
    if len(idx) < 3 and erode > 0:
        idx = mask_points(uv_int, usable, m, 0)
    n_seen = len(idx)
    idx = idx[own_points(idx, pc[:, 2], uv_int, claims)]
    n_frustum = len(idx)
    centre_px = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]])
    o, dc = camera_rays(frame.K, frame.T_cam_lidar, centre_px)
    at_border = b[0] <= 2 or b[1] <= 2 or b[2] >= W - 2 or b[3] >= H - 2
    if p.get('click_depth') is not None:
        # clicks: only points at the clicked car's depth, the cluster chosen by that depth
        idx = idx[depth_window(pc[idx, 2], p['click_depth'])]
        at_border, box_depth = False, p['click_depth']
    keep = select_cluster(xyz[idx], pc[idx, 2], fc.cluster_radius, None if at_border else box_depth)
    idx = idx[keep]
    claim = claim_of(idx, pc[:, 2], m, float(mean_size[1]))
    near_depth = float(pc[idx, 2].min()) if len(idx) else None
    cluster = idx
    sides = border_sides(b, W, H) if beyond is not None and p.get('click_depth') is None else ()
    if sides and len(idx):
        # a car cut by the image border: its scan beyond the border too (fit/truncation.py); the depths
        # (claim, occluders, order checks) stay the in-image points'
        cand = np.flatnonzero(np.any([beyond[s] for s in sides], axis=0))
        for c in claims:
            cand = cand[~np.isin(cand, c.idx)]
        added = beyond_border(idx, cand, xyz, beyond['height'], fc.cluster_radius, mean_size)
        if len(added):
            claim = Claim(idx=np.concatenate([claim.idx, added]), mask=claim.mask, far_depth=claim.far_depth)
            idx = np.concatenate([idx, added])
    in_image = usable[idx]
    pts = xyz[idx]
    if len(pts) > fc.max_points:
        # seeded per prompt id: an object's subset does not depend on the other prompts
        sub = np.random.default_rng([cfg.seed, int(prompt.id) & 0xFFFFFFFF])
        sel = np.sort(sub.choice(len(pts), fc.max_points, replace=False))
        pts, idx, in_image = pts[sel], idx[sel], in_image[sel]
    place = p['place']
    # the camera depths below are those of the points in the image (all of them when the subset also
    # holds points beyond the border, which could leave it few)
    seen = idx if in_image.all() else cluster
    if len(seen) and few_and_off(n_seen - n_frustum, len(seen), float(np.median(pc[seen, 2])), place):
        # a hidden car's last few points, far off where its box puts it: not its own either
        idx, pts, seen, in_image = idx[:0], pts[:0], seen[:0], in_image[:0]
    if n_frustum == 0 or len(pts) == 0:
        reasons.append('no_lidar_points')
    elif len(pts) < cfg.verify.min_points:
        reasons.append('too_few_points')
    depth = float(np.median(pc[seen, 2])) if len(seen) else box_depth
    hint = {'ambiguous': True} if len(seen) and ambiguous(n_seen - n_frustum, len(seen), depth,
                                                           None if at_border else place) else {}
    # the initialiser walks along the ray through the box centre: camera depth -> distance on the ray
    fwd = frame.T_cam_lidar[2, :3]                  # the optical axis in the LiDAR frame
    ray_len = place / max(float(dc[0] @ fwd), 0.1)
    init = initialiser(pts, n_frustum, depth, ground, mean_size, max(1, fc.yaw_hypotheses),
                       box_center_ray=dc[0], cam_origin=o, box_depth=ray_len, **hint)
    occluders = None
    if fc.lidar_occluders and near_depth is not None:
        occluders = lidar_occluders(uv, pc[:, 2], usable, m, near_depth, (H, W), fc)
    ev = dict(index=p['index'], mask=m, box2d=np.asarray(b, float), n_frustum=n_frustum, points=pts,
              occluders=occluders, init=init, reasons=tuple(reasons), n_nearer=n_seen - n_frustum,
              order_depth=float(p['order']), amodal=is_amodal(prompt),
              in_image=None if in_image.all() else in_image)
    return ev, claim


def occlusion_maps(masks, depths, occluders, shape, amodal_boxes=None) -> list[np.ndarray]:
    """Per object, the pixels it cannot be seen on: masks of the objects nearer in order depth (stable
    order on ties) and its own LiDAR occluders. ``amodal_boxes[k]`` (x1, y1, x2, y2; None: not known):
    a box around the whole car, hidden parts included (a ground-truth or annotator box), outside which
    a hidden pixel is still known not to be the car, so the map stays 0 there (the silhouette term
    then sees a render that spills past the box behind a nearer car)."""
    n = len(masks)
    rank = depth_order(depths)
    out = []
    for k in range(n):
        nearer = np.zeros(shape, bool)
        for j in range(n):
            if j != k and rank[j] < rank[k]:
                nearer |= masks[j]
        if occluders[k] is not None:
            nearer |= occluders[k]
        if amodal_boxes is not None and amodal_boxes[k] is not None:
            nearer &= box_region(amodal_boxes[k], shape)
        out.append(nearer)
    return out


def box_region(box, shape, pad_frac: float = 0.03, pad_px: float = 2.0) -> np.ndarray:
    """H x W bool of a 2D box grown by ``pad_frac`` of its size + ``pad_px`` (rounding, annotation slack)."""
    H, W = shape
    x1, y1, x2, y2 = (float(v) for v in box)
    px, py = pad_frac * (x2 - x1) + pad_px, pad_frac * (y2 - y1) + pad_px
    out = np.zeros(shape, bool)
    out[max(0, int(np.floor(y1 - py))):min(H, int(np.ceil(y2 + py))),
        max(0, int(np.floor(x1 - px))):min(W, int(np.ceil(x2 + px)))] = True
    return out


def lidar_occluders(uv, depth, ok, mask, near_depth, shape, fc) -> np.ndarray:
    """Full-image bool map of the pixels covered by LiDAR returns in front of an object (nearer than
    its nearest clustered point by ``occluder_margin``) around its mask: a pole, cyclist or bush
    there hides part of the car, so the silhouette term must not ask the render to explain it."""
    H, W = shape
    ys, xs = np.nonzero(mask)
    r = int(fc.occluder_radius_px)
    pad = 0.1 * max(xs.max() - xs.min(), ys.max() - ys.min()) + r
    box = (xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad)
    sel = ok & (depth < near_depth - fc.occluder_margin) & (uv[:, 0] >= box[0]) & (uv[:, 0] <= box[2]) \
        & (uv[:, 1] >= box[1]) & (uv[:, 1] <= box[3])
    occ = np.zeros((H, W), np.uint8)
    if sel.any():
        u = np.clip(uv[sel, 0].astype(int), 0, W - 1)
        v = np.clip(uv[sel, 1].astype(int), 0, H - 1)
        occ[v, u] = 1
        occ = cv2.dilate(occ, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return occ.astype(bool)
