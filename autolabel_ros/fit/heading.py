"""Front/back choice: cues that tell a car's front from its rear, and the choice between the
surviving hypotheses of an object (the best fit and its 180-degree flip, whose silhouettes and scans
are nearly the same).

Every cue gives each hypothesis a value t (negative = supports it; a flip pair gets opposite or
differing values, a cue without evidence gives 0). The choice (:func:`choose`) ranks the hypotheses
by ``energy + w_select_iou * (1 - fine mask IoU) + sum of w_cue * t_cue`` over the enabled cues
(``fit.heading_cues``); the weights (``fit.w_<cue>``) were chosen on the procedural and the
ApolloCar3D simulator sets (benchmarks/heading_cues.py) and checked on the KITTI frames.

The cues:

- ``lamps``: rear lamps are red (a legal requirement almost everywhere). The lamp spots of the end
  that faces the camera (near its outer corners, a little above the box centre) are projected into
  the image; the redness ``R - max(G, B)`` of the mask pixels there (90th percentile) above the
  paint's (``PAINT_PERCENTILE['red']`` over the mask, floored at 0: a red car is red everywhere), past a
  dead zone, says the visible end is the rear. One-sided: no red lamp is no evidence.
- ``headlamps``: head lamps are white or clear glass, brighter than the paint in every channel: the
  "whiteness" ``min(R, G, B)`` at the same spots above the paint's, past a dead zone, says the
  visible end is the front. One-sided: white or silver paint (a high paint whiteness) gives none.
- ``mean_shape``: the car's own front/back asymmetry (long low hood and raked windscreen, short
  boot) as the LiDAR sees it, read through the prior's mean shape: the robust residual of the fit
  points under the mean shape (at the hypothesis' pose and per-axis scales). The fit's own energy
  does not separate a flip pair well because its shape code bends the shape towards the mirrored
  car; the mean shape cannot.
- ``shape_code``: the same asymmetry seen through the fitted code: a flipped hypothesis explains
  the car with a mirrored shape, which lies far out in the prior (the energy's own shape term,
  ``mean (code / stdev)^2``, weighs it only lightly, as a regulariser).
- ``profile``: the side profile of the scan in the hypothesis' box, read by a small logistic model
  (:func:`profile_logit`, coefficients in ``fit/heading_model.py``, fitted on the simulator sets
  by benchmarks/calibrate_heading.py): the fit points binned along the length (the end nearer the
  camera at +1) and up the height, and the 90th-percentile height per length bin. A hood is lower
  and longer than a boot or tailgate and the roof sits behind the centre, so the profile says
  whether the near end is the front; the model's logit, shrunk by the point count, is the cue.
- ``neighbours``: cars in the same lane or parked row share their heading. For an object whose
  flip pair is undecided (selection margin below ``NEIGHBOUR_UNDECIDED``), each confidently
  decided neighbour whose axis is parallel and runs through it (lateral offset < ``LANE_HALF``
  within ``NEIGHBOUR_RANGE``) votes for the hypothesis that points its way. It only ever decides
  near-ties, never overrides a decided object.
- ``lane``: a far car with a handful of scan points leans on its lane. Each better-seen car (more
  fit points) whose axis is parallel and runs within half a lane width of the object
  (``LANE_HALF_WIDTH`` within ``LANE_RANGE``) votes for its own heading, counted by its point count;
  the object's cue is scaled down by its own point count (:func:`lane_votes`). Unlike
  ``neighbours`` it acts on every object, decided or not, weighted so that it only turns the few-point
  ones. Parked rows with mixed headings (the simulator parks at random headings) are what it costs.
  "Runs within half a lane" is measured across the bisector of the two cars' axes, not the voter's
  own: two cars on one circular lane lie on a chord, which is parallel to that bisector, so a bend
  does not push a lane-mate out, and each car's heading error counts half. A car that nearer objects
  mostly hide has less evidence of its own than its point count says (a sliver of mask, points on the
  roof over the occluder): its cue grows by ``1 + LANE_HIDDEN_BOOST x`` :func:`hidden_gate`.

- ``mean_box``: the car's front/back asymmetry as the 2D box sees it. The prior's mean shape (which,
  unlike the fitted code, cannot bend towards the mirrored car) is stretched to the hypothesis' box
  and projected; its image box, clipped to the image, is compared with the label's 2D box
  (:func:`mean_box_cues`: 1 - IoU). Where the cabin sits along the car and how the hood falls away
  move the projected box's edges by a few pixels, so a flip pair's two boxes match the prompt
  differently. It needs no LiDAR point and no colour, but a box around the whole car: only prompts
  whose box is amodal (``fit.lift.is_amodal``: drawn by a person or ground truth; not a detector's,
  a LiDAR proposal's or clicks' mask box) get it.

- ``hidden_shape``: the ``shape_code`` cue for a mostly hidden car. Behind a nearer car the fit has a
  sliver of silhouette (often a mask that spills onto the nearer car) and a handful of points, and the
  energies of a flip pair differ by what that noise favours; the prior still knows that a car explained
  backwards needs a mirrored, far-out shape code. So the shape term (``mean (code / stdev)^2``) counts
  again, ramped in by the share of the 2D box that nearer objects hide (:func:`hidden_gate`: 0 up to
  ``HIDDEN_FROM``, full from ``HIDDEN_FULL``; the end-look cue fades out over about the same range).

Each cue's value sits in ``ObjectFit.terms['cue_<name>']`` of every surviving hypothesis.

The choice's confidence, ``terms['heading_logit']`` (:func:`heading_logit`, an input of the accept
model): the logit that the chosen hypothesis is right rather than the best one heading the other
way, ``LOGIT_COEF . (terms of that one - terms of the chosen)`` over the energy, 1 - fine mask IoU
and the cues, a logistic regression fitted on the simulator sets' flip pairs (benchmarks/
calibrate_heading.py). The choice itself keeps its flip-count-chosen weights; this only says how
sure it is, on a scale that does not move when a weight does.
"""
from __future__ import annotations

import numpy as np
import torch

from autolabel_ros.core.geometry import box_iou, project, rot_z, transform_points
from autolabel_ros.fit.rays import to_object_frame

HEADING_CUES = ('lamps', 'headlamps', 'mean_shape', 'shape_code', 'profile', 'neighbours', 'lane', 'css',
                'end_look', 'mean_box', 'hidden_shape')
# colour cues: contrast (0-255 scale) above the paint below the dead zone is no evidence (camera
# colour fringes and chrome reach ~20 in real images); the cue saturates at dead zone + SPAN
RED_DEAD_ZONE = 25.0
WHITE_DEAD_ZONE = 30.0
COLOUR_SPAN = 40.0
MIN_END_VISIBILITY = 0.2     # |cos| between the end face's normal and the view: below, a side view
NEIGHBOUR_UNDECIDED = 0.01   # selection-score margin of the flip pair below which an object is undecided
NEIGHBOUR_DECIDED = 0.03     # ... above which a neighbour may vote
# a tie-break cue (pick's ``tiebreak``: css with method hybrid) acts below this flip margin (the
# neighbours' notion of undecided; benchmarks/heading_cues.py --tiebreak-sweep)
TIEBREAK_UNDECIDED = 0.01
NEIGHBOUR_RANGE = 25.0       # m, centre distance of a voting neighbour
LANE_HALF = 1.5              # m, lateral offset from the neighbour's axis (same lane or row)
PARALLEL_DEG = 20.0
# the lane cue: a better-seen car (more fit points) within LANE_RANGE whose axis runs within half a
# lane (3.5 m) of the object votes for its own heading, counted n / (n + LANE_POINTS) by its own
# point count n; the object's cue is scaled by LANE_POINTS / (m + LANE_POINTS) of its point count m
# (a far car with a handful of points leans on its lane, a well-seen one hardly)
LANE_RANGE = 40.0            # m
LANE_HALF_WIDTH = 1.75       # m
LANE_POINTS = 60.0
# ... and a mostly hidden object's cue grows by 1 + LANE_HIDDEN_BOOST x hidden_gate (1.5-3 the same
# flips on the two simulator sets, benchmarks/heading_cues.py)
LANE_HIDDEN_BOOST = 2.0
# the hidden_shape cue: the occluded share of the 2D box over which it ramps in (chosen with its weight
# on the two simulator sets, benchmarks/heading_cues.py; 0.2-0.6 and 0.3-0.9 give the same counts)
HIDDEN_FROM = 0.3
HIDDEN_FULL = 0.7
# the paint's colour: this percentile of redness / whiteness over the mask (glass and tyres are
# darker, lamps a small part). A shaded red body reaches redder than its upper quartile: 85 rather
# than 75 halved the red-lamp cue's wrong calls on the ApolloCar3D set and kept 90 % of its right
# ones; for whiteness 85 lost more right calls than wrong ones (sky reflections in the glass).
PAINT_PERCENTILE = {'red': 85, 'white': 75}


def redness(image: np.ndarray) -> np.ndarray:
    im = image.astype(np.float32)
    return im[..., 0] - np.maximum(im[..., 1], im[..., 2])


def whiteness(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32).min(-1)


def camera_centre(frame) -> np.ndarray:
    """The camera's position in the LiDAR frame."""
    return transform_points(np.linalg.inv(frame.T_cam_lidar), np.zeros((1, 3)))[0]


def end_facing(pose, cam: np.ndarray) -> float:
    """cos between the car's forward axis and the horizontal direction to the camera: > 0 the front
    faces the camera, < 0 the rear, ~0 a side view."""
    x, y, _, yaw = (float(v) for v in pose)
    view = np.array([cam[0] - x, cam[1] - y])
    view /= max(np.linalg.norm(view), 1e-6)
    return float(np.cos(yaw) * view[0] + np.sin(yaw) * view[1])


def lamp_spots(pose, size, frame, mask: np.ndarray, facing: float) -> list[tuple]:
    """Pixel windows (v0, v1, u0, u1) with >= 2 mask pixels around the two lamp spots of the end that
    faces the camera (outer corners, 0.1 h above the box centre; radius 0.18 m)."""
    x, y, z, yaw = (float(v) for v in pose)
    l, w, h = (float(v) for v in size)
    end = np.sign(facing) * (l / 2 - 0.05)
    local = np.array([[end, w / 2 - 0.25, 0.1 * h], [end, -(w / 2 - 0.25), 0.1 * h]])
    spots = local @ rot_z(yaw).T + np.array([x, y, z])
    uv, zc = project(frame.K, transform_points(frame.T_cam_lidar, spots))
    H, W = mask.shape
    out = []
    for (u, v), d in zip(uv, zc):
        if d <= 0.5 or not np.isfinite(u + v):
            continue
        r = int(max(1, round(0.18 * frame.K[0, 0] / d)))
        u0, u1 = int(max(0, u - r)), int(min(W, u + r + 1))
        v0, v1 = int(max(0, v - r)), int(min(H, v + r + 1))
        if u1 > u0 and v1 > v0 and mask[v0:v1, u0:u1].sum() >= 2:
            out.append((v0, v1, u0, u1))
    return out


def spot_contrast(channel: np.ndarray, mask: np.ndarray, spots, base: float, dead_zone: float) -> float:
    """0..1: how far the spots' brightest part (90th percentile over their mask pixels) of a colour
    channel stands above the paint's ``base`` (floored at 0), past the dead zone."""
    if not spots:
        return 0.0
    vals = [np.percentile(channel[v0:v1, u0:u1][mask[v0:v1, u0:u1]], 90) for v0, v1, u0, u1 in spots]
    return float(np.clip((np.mean(vals) - max(base, 0.0) - dead_zone) / COLOUR_SPAN, 0.0, 1.0))


def colour_cues(pose, size, frame, mask: np.ndarray, cam: np.ndarray, red: np.ndarray, red_base: float,
                white: np.ndarray, white_base: float) -> tuple[float, float]:
    """(lamps, headlamps) cue values of one hypothesis (module docstring)."""
    facing = end_facing(pose, cam)
    vis = abs(facing)
    if vis < MIN_END_VISIBILITY:
        return 0.0, 0.0
    front = 1.0 if facing > 0 else -1.0          # the hypothesis says: the visible end is the front
    spots = lamp_spots(pose, size, frame, mask, facing)
    rear_evidence = spot_contrast(red, mask, spots, red_base, RED_DEAD_ZONE)
    front_evidence = spot_contrast(white, mask, spots, white_base, WHITE_DEAD_ZONE)
    return front * rear_evidence * vis, -front * front_evidence * vis


def hidden_gate(occluded: float) -> float:
    """0..1: how much the cues for hidden objects count (hidden_shape, the lane cue's boost, the CSS
    cue's vote with method hybrid) for an object with the ``occluded`` share of its 2D box hidden by
    nearer objects."""
    return float(np.clip((occluded - HIDDEN_FROM) / (HIDDEN_FULL - HIDDEN_FROM), 0.0, 1.0))


def mean_shape_residuals(shape, poses: np.ndarray, scales: np.ndarray | None, points: np.ndarray,
                         tau: float) -> np.ndarray:
    """(A,) robust residual ``mean tau tanh(|phi| / tau)`` of the M x 3 points under the prior's mean
    shape at each of the A poses (x, y, z, yaw) with per-axis scales (A x 3, or None)."""
    A = len(poses)
    if len(points) == 0 or A == 0:
        return np.zeros(A)
    dev = shape.device
    f32 = dict(dtype=torch.float32, device=dev)
    with torch.no_grad():
        pose_t = torch.as_tensor(np.asarray(poses, np.float32), **f32)
        p = torch.as_tensor(np.asarray(points, np.float32), **f32)[None].expand(A, -1, -1)
        q = to_object_frame(p, pose_t)
        codes = torch.zeros(A, shape.d, **f32)
        s = None if scales is None else torch.as_tensor(np.asarray(scales, np.float32), **f32)
        phi = shape.query(q, torch.arange(A, device=dev), codes, s)
        return (tau * torch.tanh(phi.abs() / tau)).mean(1).cpu().numpy().astype(float)


PROFILE_BINS = (8, 4)          # length x height bins of the profile histogram
PROFILE_HALF_POINTS = 30.0     # fit points at which the profile cue counts half (few points: noisy bins)
PROFILE_LOGIT_CAP = 4.0


def profile_features(points: np.ndarray, pose, size, cam: np.ndarray) -> tuple[np.ndarray, float]:
    """(features, facing) of the M x 3 fit points in the box of one hypothesis (pose x, y, z, yaw;
    size l, w, h): the share of points per (length, height) bin with the near end at +1, the 90th
    percentile of the height per length bin (0 where it has < 2 points), |facing|. A flip pair sees
    the same near end, so both get about the same features."""
    nu, nh = PROFILE_BINS
    facing = end_facing(pose, cam)
    if len(points) == 0:
        return np.zeros(nu * nh + nu + 1), facing
    x, y, z, yaw = (float(v) for v in pose)
    l, _, h = (float(v) for v in size)
    near = 1.0 if facing >= 0 else -1.0
    u = ((points[:, 0] - x) * np.cos(yaw) + (points[:, 1] - y) * np.sin(yaw)) / (l / 2) * near
    v = (points[:, 2] - (z - h / 2)) / h
    iu = np.clip(((u + 1) / 2 * nu).astype(int), 0, nu - 1)
    iv = np.clip((v * nh).astype(int), 0, nh - 1)
    hist = np.bincount(iu * nh + iv, minlength=nu * nh) / len(points)
    top = np.array([np.percentile(v[iu == b], 90) if np.sum(iu == b) >= 2 else 0.0 for b in range(nu)])
    return np.concatenate([hist, np.clip(top, 0.0, 1.2), [abs(facing)]]), facing


def profile_logit(features: np.ndarray, coef=None, intercept=None) -> float:
    """Logit of "the near end is the front" (default: the shipped model, fit/heading_model.py)."""
    if coef is None:
        from autolabel_ros.fit.heading_model import PROFILE_COEF, PROFILE_INTERCEPT
        coef, intercept = PROFILE_COEF, PROFILE_INTERCEPT
    return float(np.clip(intercept + np.dot(coef, features), -PROFILE_LOGIT_CAP, PROFILE_LOGIT_CAP))


def profile_cue(points: np.ndarray, pose, size, cam: np.ndarray, coef=None, intercept=None) -> float:
    """Cue value of one hypothesis: minus the logit that its front is where it says, shrunk by the
    point count."""
    feats, facing = profile_features(points, pose, size, cam)
    shrink = len(points) / (len(points) + PROFILE_HALF_POINTS)
    return -(1.0 if facing >= 0 else -1.0) * shrink * profile_logit(feats, coef, intercept)


def mean_box_cues(unit_vertices: np.ndarray, poses, sizes, K: np.ndarray, T_cam_lidar: np.ndarray, image_hw,
                  box2d) -> list[float]:
    """Cue value per hypothesis (poses A x 4, sizes A x 3 as l, w, h): 1 - IoU of ``box2d`` with the
    image box (clipped to the image) of the prior's mean shape, whose canonical vertices
    ``unit_vertices`` (V x 3) span a unit box, stretched to the hypothesis' size at its pose. All 0 when
    any hypothesis' shape reaches behind the camera or falls outside the image (no comparable evidence)."""
    H, W = image_hw
    out = []
    for pose, size in zip(poses, sizes):
        x, y, z, yaw = (float(v) for v in pose)
        pts = (unit_vertices * np.asarray(size, float)) @ rot_z(yaw).T + np.array([x, y, z])
        uv, zc = project(K, transform_points(T_cam_lidar, pts))
        if np.any(zc <= 0.5) or not np.all(np.isfinite(uv)):
            return [0.0] * len(poses)
        lo, hi = np.clip(uv.min(0), 0, [W, H]), np.clip(uv.max(0), 0, [W, H])
        if np.any(hi - lo < 1):
            return [0.0] * len(poses)
        out.append(1.0 - box_iou([lo[0], lo[1], hi[0], hi[1]], [float(v) for v in box2d]))
    return out


def amodal_box_scores(unit_vertices: np.ndarray, obj: np.ndarray, poses: np.ndarray, sizes: np.ndarray,
                      gates: np.ndarray, boxes, K: np.ndarray, T_cam_lidar: np.ndarray,
                      image_hw) -> np.ndarray:
    """(B,) the pruning's amodal-box score of B hypotheses of objects ``obj`` (B,) at poses (B, 4) with
    sizes (B, 3): ``gates[k] x`` :func:`mean_box_cues` against the object's 2D box ``boxes[k]`` (0 where
    the gate is 0). Behind a nearer car the fit has a sliver of silhouette and a handful of points, which
    rank a hidden car's headings by noise at the pruning, and the survivors can be two sideways poses
    with the true heading pruned; the amodal box still says how long the car looks from here, i.e. along
    which axis it lies (and roughly where)."""
    out = np.zeros(len(obj))
    for k in np.flatnonzero(np.asarray(gates) > 0):
        rows = np.flatnonzero(obj == k)
        if len(rows):
            vals = mean_box_cues(unit_vertices, poses[rows], sizes[rows], K, T_cam_lidar, image_hw, boxes[k])
            out[rows] = gates[k] * np.asarray(vals)
    return out


# the terms of the heading confidence (fit/heading_model.py LOGIT_COEF, same order)
LOGIT_TERMS = ('energy', 'select_iou', 'lamps', 'headlamps', 'mean_shape', 'shape_code', 'profile', 'lane',
               'end_look', 'mean_box', 'hidden_shape')


def logit_terms(a) -> np.ndarray:
    """A hypothesis' values of ``LOGIT_TERMS`` (a cue not computed counts 0)."""
    return np.array([a.energy, 1 - a.terms.get('mask_iou_hi', 1.0)]
                    + [a.terms.get(f'cue_{c}', 0.0) for c in LOGIT_TERMS[2:]], float)


def heading_logit(alts, best: int, coef=None) -> float:
    """Logit that ``alts[best]`` is right rather than the best-scored hypothesis heading the other way
    (> 90 deg off; inf when none survived)."""
    if coef is None:
        from autolabel_ros.fit.heading_model import LOGIT_COEF as coef
    yb = alts[best].pose[3]
    other = [a for a in alts if np.cos(a.pose[3] - yb) < 0]
    if not other:
        return float('inf')
    mine = logit_terms(alts[best])
    return min(float(np.dot(coef, logit_terms(a) - mine)) for a in other)


def selection_scores(alts, cues, weights: dict, w_select_iou: float) -> np.ndarray:
    """Per hypothesis: energy + w_select_iou x (1 - fine IoU) + sum of the enabled cues' w x t."""
    own = [c for c in cues if c not in ('neighbours', 'lane')]
    return np.array([a.energy + w_select_iou * (1 - a.terms.get('mask_iou_hi', 1.0))
                     + sum(weights.get(c, 0.0) * a.terms.get(f'cue_{c}', 0.0) for c in own) for a in alts])


def flip_margin(alts, scores: np.ndarray) -> float:
    """Score of the best hypothesis heading the other way (> 90 deg off) minus the best score
    (inf when no such hypothesis survived): how decided the front/back choice is."""
    best = int(np.argmin(scores))
    yb = alts[best].pose[3]
    other = [s for a, s in zip(alts, scores) if np.cos(a.pose[3] - yb) < 0]
    return float(min(other) - scores[best]) if other else float('inf')


def neighbour_votes(poses: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """(N, 2) unit heading votes (sum of the parallel, same-lane decided neighbours' headings) for
    each of N objects with chosen poses (N x 4) and flip margins (N,); zero where none votes."""
    N = len(poses)
    votes = np.zeros((N, 2))
    cos_par = np.cos(np.radians(PARALLEL_DEG))
    for i in range(N):
        for j in range(N):
            if i == j or not margins[j] > NEIGHBOUR_DECIDED:
                continue
            dj = np.array([np.cos(poses[j, 3]), np.sin(poses[j, 3])])
            if abs(np.cos(poses[i, 3] - poses[j, 3])) < cos_par:
                continue
            off = poses[i, :2] - poses[j, :2]
            if np.linalg.norm(off) > NEIGHBOUR_RANGE or abs(off[0] * dj[1] - off[1] * dj[0]) > LANE_HALF:
                continue
            votes[i] += dj
    return votes


def lane_axis(yaw_i: float, yaw_j: float) -> np.ndarray:
    """Unit bisector of two parallel-ish cars' axes (headings taken modulo 180 deg): the direction of
    the chord between two points of one circular lane, at whichever end each car faces."""
    di = np.array([np.cos(yaw_i), np.sin(yaw_i)])
    dj = np.array([np.cos(yaw_j), np.sin(yaw_j)])
    ax = dj + (di if di @ dj >= 0 else -di)
    return ax / max(float(np.linalg.norm(ax)), 1e-9)


def lane_votes(poses: np.ndarray, n_points: np.ndarray, occluded: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) heading votes of the lane cue (module docstring) for N objects with chosen poses (N x 4),
    fit point counts (N,) and occluded shares of their 2D boxes (N,; None: all 0): the sum of the
    better-seen, parallel lane-mates' unit headings, each weighted by its point count, capped at unit
    length, scaled by the object's own point count and grown for a mostly hidden object."""
    N = len(poses)
    votes = np.zeros((N, 2))
    cos_par = np.cos(np.radians(PARALLEL_DEG))
    conf = n_points / (n_points + LANE_POINTS)
    for i in range(N):
        for j in range(N):
            if i == j or n_points[j] <= n_points[i] or abs(np.cos(poses[i, 3] - poses[j, 3])) < cos_par:
                continue
            off = poses[i, :2] - poses[j, :2]
            ax = lane_axis(poses[i, 3], poses[j, 3])
            if np.linalg.norm(off) > LANE_RANGE or abs(off[0] * ax[1] - off[1] * ax[0]) > LANE_HALF_WIDTH:
                continue
            votes[i] += conf[j] * np.array([np.cos(poses[j, 3]), np.sin(poses[j, 3])])
        votes[i] *= LANE_POINTS / (n_points[i] + LANE_POINTS) / max(1.0, float(np.linalg.norm(votes[i])))
        if occluded is not None:
            votes[i] *= 1.0 + LANE_HIDDEN_BOOST * hidden_gate(float(occluded[i]))
    return votes


def pick(fits: list, cues, weights: dict, w_select_iou: float, tiebreak: tuple = ()
         ) -> tuple[list, np.ndarray]:
    """(index of the chosen hypothesis, flip margin) per object: the ranking of :func:`choose`; sets
    the frame-level cues (``cue_lane``, ``cue_neighbours``) in every hypothesis' terms. Cues named in
    ``tiebreak`` only decide objects whose flip pair the other cues leave undecided (margin below
    ``TIEBREAK_UNDECIDED``), after the neighbours: a cue that is right on the simulator but not
    trusted on real images (``css`` with ``method: hybrid``) can break a tie, never overturn a choice."""
    first = [c for c in cues if c not in tiebreak]
    chosen, margins = [], []
    for f in fits:
        alts = f.alternatives or [f]
        s = selection_scores(alts, first, weights, w_select_iou)
        chosen.append(int(np.argmin(s)))
        margins.append(flip_margin(alts, s))
    margins = np.array(margins)
    lane = 'lane' in first and weights.get('lane', 0.0) > 0 and len(fits) > 1
    # per object: the selection scores of its hypotheses with the frame-level votes it took
    extra = [np.zeros(len(f.alternatives or [f])) for f in fits]

    def scores(k, alts):
        s = selection_scores(alts, first, weights, w_select_iou) + extra[k]
        return s + weights['lane'] * np.array([a.terms.get('cue_lane', 0.0) for a in alts]) if lane else s
    if lane:
        poses = np.stack([(f.alternatives or [f])[c].pose for f, c in zip(fits, chosen)])
        n_points = np.array([(f.alternatives or [f])[0].terms.get('n_points', 0.0) for f in fits], float)
        occluded = np.array([(f.alternatives or [f])[0].terms.get('occluded', 0.0) for f in fits], float)
        votes = lane_votes(poses, n_points, occluded)
        for k, f in enumerate(fits):
            alts = f.alternatives or [f]
            for a in alts:
                a.terms['cue_lane'] = -float(votes[k] @ [np.cos(a.pose[3]), np.sin(a.pose[3])])
            s = scores(k, alts)
            chosen[k] = int(np.argmin(s))
            margins[k] = flip_margin(alts, s)
    if 'neighbours' in first and weights.get('neighbours', 0.0) > 0 and len(fits) > 1:
        poses = np.stack([(f.alternatives or [f])[c].pose for f, c in zip(fits, chosen)])
        votes = neighbour_votes(poses, margins)
        for k, f in enumerate(fits):
            alts = f.alternatives or [f]
            for a in alts:
                a.terms['cue_neighbours'] = -float(votes[k] @ [np.cos(a.pose[3]), np.sin(a.pose[3])])
            if margins[k] < NEIGHBOUR_UNDECIDED and np.any(votes[k]):
                extra[k] = extra[k] + weights['neighbours'] * np.array([a.terms['cue_neighbours']
                                                                        for a in alts])
                s = scores(k, alts)
                chosen[k] = int(np.argmin(s))
                margins[k] = flip_margin(alts, s)
    for c in (c for c in tiebreak if c in cues and weights.get(c, 0.0) > 0):
        for k, f in enumerate(fits):
            alts = f.alternatives or [f]
            t = np.array([a.terms.get(f'cue_{c}', 0.0) for a in alts])
            if margins[k] < TIEBREAK_UNDECIDED and np.any(t):
                extra[k] = extra[k] + weights[c] * t
                s = scores(k, alts)
                chosen[k] = int(np.argmin(s))
                margins[k] = flip_margin(alts, s)
    return chosen, margins


def choose(fits: list, cues, weights: dict, w_select_iou: float, tiebreak: tuple = ()) -> list:
    """Re-rank every object's surviving hypotheses (``fits[k].alternatives``) and return the chosen
    ObjectFit per object, each holding all its survivors in ``alternatives``, its flip margin in
    ``terms['flip_margin']`` and its confidence in ``terms['heading_logit']`` (``tiebreak``:
    :func:`pick`)."""
    chosen, margins = pick(fits, cues, weights, w_select_iou, tiebreak)
    out = []
    for f, c, m in zip(fits, chosen, margins):
        alts = f.alternatives or [f]
        best = alts[c]
        best.alternatives = alts
        lg = heading_logit(alts, c)
        for a in alts:
            a.terms['flip_margin'] = float(m)
            a.terms['heading_logit'] = lg
        out.append(best)
    return out
