"""SDFLabel-style verification of a fitted label: mask agreement and LiDAR surface agreement."""
from __future__ import annotations

import numpy as np
import torch

from autolabel_ros.core.geometry import points_in_box, rot_z
from autolabel_ros.fit.rays import to_object_frame
from autolabel_ros.fit.render import Renderer, render_silhouettes


def mask_ious(sdf, pose: torch.Tensor, codes: torch.Tensor, scales, ray_o, ray_d, target: np.ndarray,
              valid: np.ndarray, n_samples: int = 32, zeta: float = 60.0,
              renderer: Renderer = render_silhouettes) -> np.ndarray:
    """IoU (per object) between the hard rendered silhouette (mask > 0.5) and the instance mask
    (> 0.5) over the valid (unoccluded, inside-image) pixels of each crop."""
    with torch.no_grad():
        m = renderer(sdf, pose, codes, ray_o, ray_d, n_samples, zeta, scales).cpu().numpy()
    r = m > 0.5
    y = target > 0.5
    v = valid > 0.5
    inter = (r & y & v).sum(1)
    union = ((r | y) & v).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def surface_ratio(sdf, pose: np.ndarray, code: np.ndarray, scales, points: np.ndarray, band: float,
                  near: float) -> tuple[float, int]:
    """Share of nearby points (non-ground scan points with SDF < ``near``, inside included) that lie
    within ``band`` of the surface; and how many nearby points there were."""
    if len(points) == 0:
        return 0.0, 0
    d = np.linalg.norm(points[:, :2] - pose[None, :2], axis=1)
    cand = points[d < 4.0]
    if len(cand) == 0:
        return 0.0, 0
    dev = sdf.extent.device
    with torch.no_grad():
        p = torch.as_tensor(cand, dtype=torch.float32, device=dev)[None]
        po = torch.as_tensor(np.asarray(pose, np.float32)[None], device=dev)
        q = to_object_frame(p, po)[0]
        c = torch.as_tensor(np.asarray(code, np.float32)[None], device=dev)
        s = None if scales is None else torch.as_tensor(np.asarray(scales, np.float32)[None], device=dev)
        phi = sdf.query(q[None], torch.zeros(1, dtype=torch.long, device=dev), c, s)[0].cpu().numpy()
    nearby = phi < near
    n = int(nearby.sum())
    if n == 0:
        return 0.0, 0
    return float((np.abs(phi[nearby]) <= band).sum() / n), n


# ----------------------------------------------------------------------------- the accept decision
# P(label right) = sigmoid(intercept + coef . features): a logistic regression over the verification
# features below, fitted by benchmarks/calibrate_accept.py (coefficients in fit/accept_model.py).
# "Right" = 3D IoU >= 0.5 with the car and the heading not flipped. Each coefficient is held to the
# sign given here while fitting, so the probability is monotone in every feature. A second model over the
# same features, P(tight) (IoU >= 0.7, not flipped), only feeds the label's score (label_score).
ACCEPT_FEATURES = ('mask_iou', 'surface_ratio', 'log_points', 'range_50m', 'heading', 'occluded_share',
                   'energy', 'length_cover', 'width_cover', 'hyp_gap', 'hyp_spread', 'shape_term',
                   'scale_term', 'see_through')
ACCEPT_SIGNS = (1, 1, 1, -1, 1, -1, -1, 1, 1, 1, -1, -1, -1, -1)
# the fit's own energy terms (fit/energies.py) that tell clutter from a car: the shape code's distance
# from the prior ('shape'), the size's from the prior's sizes ('scale'); each over the value where it
# saturates (about the 90th percentile of the simulator's labels on no car). The ground term tells
# them apart as well in the simulator, but real ground is not a plane: KITTI's cars read 3x higher
# on it than the simulator's, and the model with it rejected right KITTI labels.
TERM_CAPS = {'shape': 1.0, 'scale': 0.01}
# hypothesis agreement: an alternative placement counts when its centre is this far from the label's;
# its energy gap saturates at HYP_GAP_CAP; alternatives within HYP_NEAR_ENERGY of the label's energy
# spread the placement (saturating at HYP_SPREAD_CAP metres)
HYP_FAR_M, HYP_GAP_CAP, HYP_NEAR_ENERGY, HYP_SPREAD_CAP = 0.5, 0.3, 0.05, 3.0
# the heading logit (fit/heading.py heading_logit) saturates here: beyond, the front/back choice is
# decided (chosen on the held-out ApolloCar3D scenes' log-loss: caps 1..4 within 0.007, 1 best)
HEADING_LOGIT_CAP = 1.0


def point_cover(points: np.ndarray, box7: np.ndarray) -> tuple[float, float]:
    """How much of the box's length and width the object's scan points span (5-95 % quantiles along
    each axis of the box, over its size, capped at 1). A box whose length the scan spans is placed by
    the data; one seen on a single face or a fraction of it is sized by the prior, and its 3D IoU
    with the car is looser (the P(tight) model's strongest feature after mask IoU and point count)."""
    if len(points) < 2 or not np.all(np.isfinite(box7)):
        return 0.0, 0.0
    c, s, yaw = np.asarray(box7[:3], float), np.asarray(box7[3:6], float), float(box7[6])
    d = np.asarray(points, float)[:, :2] - c[:2]
    u = d @ np.array([np.cos(yaw), np.sin(yaw)])          # along the length
    v = d @ np.array([-np.sin(yaw), np.cos(yaw)])         # across
    span = np.percentile(np.stack([u, v], 1), 95, axis=0) - np.percentile(np.stack([u, v], 1), 5, axis=0)
    return tuple(float(min(x / max(y, 1e-3), 1.0)) for x, y in zip(span, s[:2]))


# a car's scan points lie in its box; a car-sized box fitted to part of a larger or other structure (a
# wall, a hedge, a fence, a cyclist next to a parked row) leaves some of the object's points beside it.
# Share of the object's points inside the box grown by INSIDE_MARGIN metres; a label below
# MIN_INSIDE_SHARE with at least MIN_OUTSIDE_POINTS points outside is rejected ('points_outside_box';
# the count keeps one stray return of a 4-point car from deciding). The simulator sets' clutter is
# compact and never reads below 1, so the logistic model cannot learn this: a rule instead, held to what
# the right labels allow (simulator GT-box labels, procedural + ApolloCar3D: 3 of 556 right ones below
# 0.9, each with 1 point out of 4-9; KITTI's right ones >= 0.95, its real clutter (fused prompts and
# LiDAR proposals) down to 0.5).
INSIDE_MARGIN, MIN_INSIDE_SHARE, MIN_OUTSIDE_POINTS = 0.3, 0.8, 3


def inside_share(points: np.ndarray, box7: np.ndarray, margin: float = INSIDE_MARGIN) -> float:
    """Share of ``points`` (N, 3) inside the box (x, y, z, l, w, h, yaw; z its centre) grown by ``margin``
    on every side; 1 without points (nothing to contradict the box)."""
    pts = np.asarray(points, float).reshape(-1, 3)
    if len(pts) == 0 or not np.all(np.isfinite(box7)):
        return 1.0
    box7 = np.asarray(box7, float)
    return float(points_in_box(pts, box7[:3], box7[3:6], float(box7[6]), margin).mean())


def points_outside_box(points: np.ndarray, box7: np.ndarray) -> bool:
    """The 'points_outside_box' rejection: too many of the object's points lie beside its box."""
    share = inside_share(points, box7)
    return share < MIN_INSIDE_SHARE and (1.0 - share) * len(points) >= MIN_OUTSIDE_POINTS - 1e-6


# LiDAR rays that pass through the body of the fitted car and hit something behind it: a car's doors and
# bumpers stop every ray, a cyclist, a hedge, a fence or the background beside a nearer car do not. Only
# the lower body counts: real LiDAR passes through car windows (the simulator's glass stops it), and
# under the sills the road shows between the wheels. The body is the box's height band [SEE_BAND_LO,
# SEE_BAND_HI] of its height above its bottom (sills ~0.25 h, window line ~0.6 h), shrunk by SEE_MARGIN
# metres on every side in length and width: a right label (3D IoU >= 0.5) can sit that far off its car, and
# rays through the slack of a box larger than the car are no evidence against it. The rays counted are
# those aimed at the body's side (entering the shrunk footprint within the band; one entering over it came
# down through the windows and may end on the car's far door), stopped or not (the car's near face, an
# occluder); one passes when its return lies more than SEE_BEYOND metres past where it leaves the body.
# The share is over at least SEE_MIN_RAYS rays, so that a few rays of a far box do not read 0 or 1.
SEE_BAND_LO, SEE_BAND_HI, SEE_MARGIN, SEE_BEYOND, SEE_MIN_RAYS = 0.25, 0.6, 0.5, 0.3, 5
# the accept feature saturates at this share: the cap the held-out ApolloCar3D scenes' log-loss preferred
# among 0.05 / 0.1 / 0.2 / 0.3 / 0.5 / 1 (0.1517 / 0.1507 / 0.1520 / 0.1535 / 0.1552 / 0.1564; 0.1568 without)
SEE_THROUGH_CAP = 0.1


def see_through(scan: np.ndarray, box7: np.ndarray) -> float:
    """Share of the scan's rays (sensor at the origin; ``scan`` (N, 3) non-ground points) aimed through
    the lower body of the box (x, y, z, l, w, h, yaw; z its centre) that pass it (SEE_* above)."""
    pts = np.asarray(scan, float).reshape(-1, 3)
    box7 = np.asarray(box7, float)
    if len(pts) == 0 or not np.all(np.isfinite(box7)):
        return 0.0
    c, (length, width, h), yaw = box7[:3], box7[3:6], float(box7[6])
    # cull first: a ray can reach the footprint only if its bird's-eye line, from the sensor onwards,
    # passes within the footprint's circle (the whole scan per label cost ~28 ms; the slab test decides)
    r2 = 0.25 * (length ** 2 + width ** 2) + 1e-6
    if c[0] ** 2 + c[1] ** 2 > r2:
        x, y = pts[:, 0], pts[:, 1]
        cross = x * c[1] - y * c[0]
        pts = pts[(x * c[0] + y * c[1] > 0) & (cross * cross <= r2 * (x * x + y * y))]
    q = (pts - c) @ rot_z(yaw)                         # returns in the box frame
    o = -c @ rot_z(yaw)                                # the sensor in the box frame
    lo = np.array([SEE_MARGIN - length / 2, SEE_MARGIN - width / 2, (SEE_BAND_LO - 0.5) * h])
    hi = np.array([length / 2 - SEE_MARGIN, width / 2 - SEE_MARGIN, (SEE_BAND_HI - 0.5) * h])
    if np.any(hi[:2] <= lo[:2]):
        return 0.0
    d = q - o
    with np.errstate(divide='ignore', invalid='ignore'):       # slab test; a ray parallel to a slab gives
        t0, t1 = (lo - o) / d, (hi - o) / d                     # +-inf there (nan only on its boundary)
    side = np.nanmax(np.minimum(t0, t1)[:, :2], 1)             # where it enters the box's footprint
    leave = np.nanmin(np.maximum(t0, t1), 1)                   # and leaves the body
    z = o[2] + side * d[:, 2]
    # aimed at the body's side (a ray entering over it came through the windows)
    aimed = (side < leave) & (leave > 0) & (z >= lo[2]) & (z <= hi[2])
    through = aimed & ((1.0 - leave) * np.linalg.norm(d, axis=1) > SEE_BEYOND)
    return float(through.sum() / max(int(aimed.sum()), SEE_MIN_RAYS))


def hypothesis_agreement(pose, hyps) -> tuple[float, float]:
    """How decided the label's placement is among the fit's surviving hypotheses ``hyps`` ((pose,
    energy) pairs, the label's own included, matched by its pose): the energy gap to the best
    placement elsewhere (centre > HYP_FAR_M away; HYP_GAP_CAP when none) over HYP_GAP_CAP, and the
    farthest centre among the placements about as good (within HYP_NEAR_ENERGY) over HYP_SPREAD_CAP.
    A front/back flip moves the centre little and counts for neither (the heading logit covers it)."""
    pose = np.asarray(pose, float)
    d = [float(np.linalg.norm(np.asarray(p, float)[:2] - pose[:2])) for p, _ in hyps]
    e0 = min((e for (_, e), di in zip(hyps, d) if di < 1e-6), default=min((e for _, e in hyps), default=0.0))
    far = [e - e0 for (_, e), di in zip(hyps, d) if di > HYP_FAR_M]
    gap = min(min(far, default=HYP_GAP_CAP), HYP_GAP_CAP) / HYP_GAP_CAP
    spread = max([di for (_, e), di in zip(hyps, d) if e - e0 < HYP_NEAR_ENERGY] + [0.0])
    return float(gap), float(min(spread, HYP_SPREAD_CAP) / HYP_SPREAD_CAP)


def accept_features(mask_iou: float, surface_ratio: float, n_points: int, range_m: float,
                    heading_logit: float, occluded_share: float, energy: float, length_cover: float = 1.0,
                    width_cover: float = 1.0, hyp_gap: float = 1.0, hyp_spread: float = 0.0,
                    terms: dict | None = None, see_through: float = 0.0) -> np.ndarray:
    """The model's feature vector (order of ``ACCEPT_FEATURES``); the covers from :func:`point_cover`,
    the hypothesis agreement from :func:`hypothesis_agreement`, ``terms`` the fit's energy terms
    (ObjectFit.terms; a missing one counts 0), ``see_through`` from :func:`see_through` (over
    SEE_THROUGH_CAP, where it saturates)."""
    cap = HEADING_LOGIT_CAP
    heading = cap if not np.isfinite(heading_logit) else float(np.clip(heading_logit, 0.0, cap))
    t = [min(float((terms or {}).get(k, 0.0)) / c, 1.0) for k, c in TERM_CAPS.items()]
    return np.array([mask_iou, surface_ratio, np.log1p(max(n_points, 0)), range_m / 50.0, heading / cap,
                     occluded_share, energy, length_cover, width_cover, hyp_gap, hyp_spread, *t,
                     min(float(see_through) / SEE_THROUGH_CAP, 1.0)], float)


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))


def right_probability(features: np.ndarray, coef=None, intercept=None) -> float:
    """Calibrated probability that a label with these features is right (default: the shipped model)."""
    if coef is None:
        from autolabel_ros.fit.accept_model import COEF, INTERCEPT
        coef, intercept = COEF, INTERCEPT
    return _sigmoid(float(intercept + np.dot(coef, features)))


def tight_probability(features: np.ndarray, coef=None, intercept=None) -> float:
    """Calibrated probability that the label is tight: 3D IoU >= 0.7 and not flipped (a second model over
    the same features and signs; default: the shipped one, fit/accept_model.py TIGHT_*)."""
    if coef is None:
        from autolabel_ros.fit.accept_model import TIGHT_COEF, TIGHT_INTERCEPT
        coef, intercept = TIGHT_COEF, TIGHT_INTERCEPT
    return _sigmoid(float(intercept + np.dot(coef, features)))


def label_score(p_right: float, p_tight: float) -> float:
    """The score a label ranks by (Label3D.score, the KITTI score column): the expected share of the two
    KITTI IoU thresholds (0.5 and 0.7) the label passes. P(right) alone ranks a loose box (IoU 0.6,
    P ~ 1) above a tight one at the 0.7 threshold; the mean orders both AP curves."""
    return 0.5 * (float(p_right) + float(p_tight))


def occluded_share(nearer: np.ndarray, box2d) -> float:
    """Share of the pixels of the label's 2D box hidden by nearer objects (the occlusion map)."""
    x0, y0 = (int(np.floor(v)) for v in box2d[:2])
    x1, y1 = (int(np.ceil(v)) for v in box2d[2:])
    region = nearer[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    return float(region.mean()) if region.size else 0.0
