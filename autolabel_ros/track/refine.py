"""Track-level refinement: one size per track, heading from motion, points of all frames, gaps filled.

For one track (its per-frame labels in the world frame, :class:`autolabel_ros.track.tracker.Track`):

- **size**: the weighted median of (l, w, h) over the observations that see the car well (weight at
  least ``good_fraction`` of the track's best), the same for every frame;
- **motion**: the centres are smoothed by the constant-velocity RTS smoother
  (:func:`autolabel_ros.track.motion.rts_smooth`, a poorly seen frame's centre trusted less); a
  track whose weighted straight-line speed exceeds ``moving_speed`` and which travels
  ``moving_distance`` is *moving*, otherwise *static* (one position: the weighted median of the
  centres of its best group of agreeing frames, :func:`static_groups`, which also vote its size
  and heading);
- **heading**: moving: each frame's fitted heading is flipped to agree with the direction of travel
  (this settles front/back), then smoothed over ``yaw_window`` frames (weighted circular mean);
  a fitted heading more than ``max_yaw_gap`` off the travel direction is replaced by it. Static: one
  heading, the weighted circular mean of the fitted headings' axes (mod pi), its front/back the
  vote of the frames, each counting its weight times how decided its own choice was (its flip
  margin, capped); with a refitter, the track refit decides when the frames disagree and its two
  headings differ clearly in energy;
- **points** (optional): the LiDAR points of all the track's frames (world frame) decide whether a
  track that seems to move does (:func:`_points_say_moving`) and whether a static track whose frames
  disagree is two cars (:func:`split_track`: a group of frames whose box the scans fill is another
  car, one whose box holds few points is a wrong depth of the same car); with ``shift_to_points``
  the box is also shifted so that the side the sensor saw lies on the accumulated points' extreme
  (off by default: the per-frame fit places boxes better). The SDF fitter is not rerun on the
  accumulated points;
- frames between the first and the last observation without a label get the smoothed (moving) or
  static box, marked ``interpolated``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from autolabel_ros.core.geometry import rot_z
from autolabel_ros.core.types import wrap_angle
from autolabel_ros.track.motion import MotionModel, rts_smooth
from autolabel_ros.track.refit import TrackRefit
from autolabel_ros.track.tracker import Track


@dataclass
class RefineSettings:
    good_fraction: float = 0.5     # observations with at least this share of the best weight vote the size
    moving_speed: float = 1.0      # m/s (weighted straight-line fit over the track)
    moving_distance: float = 1.0   # m between the smoothed ends of the track
    yaw_window: int = 5            # frames either side in the heading smoothing
    max_yaw_gap: float = np.radians(30.0)
    points_margin: float = 0.4     # m around the box: points taken for the accumulation
    both_sides: float = 0.85       # accumulated extent / size above which both ends count as seen
    # the box shifted onto the accumulated points' extremes: off by default, the per-frame fit
    # places the box better (measured on the tracking benchmark: the shift put boxes 0.2-0.5 m
    # short towards the sensor and cost 10 AP points beyond 40 m on the 32-beam third drive)
    shift_to_points: bool = False
    max_shift: float = 1.0         # m: a refit moves the box at most this far
    min_points: int = 30           # accumulated points needed for the refit
    # a static car's frames are grouped around the modes of their centres (far cars' depth errors
    # scatter along the viewing ray): the best group is the car, the rest either agree with it
    # after all (their boxes hold few LiDAR points: a wrong depth) or are another car (split off)
    group_radius: float = 1.5      # m: frames within this of a group's mode belong to it
    mode_bandwidth: float = 0.5    # m: kernel of the centres' density (well-seen frames agree to ~0.3 m)
    split_support: float = 0.3     # another car: its box holds >= this share of the best group's box's points
    # the track refit (track/refit.py, when a refitter is given) of a static car: its front/back
    # decides when the frames' vote is split (|sum of w * side| / sum of w below this: the losing
    # side holds more than (1 - vote_margin) / 2 of the weight); its box (ground-plane centre,
    # length, width) replaces the per-frame median when no frame saw the car fully (its best frame
    # has fewer LiDAR points than this), where the accumulated scans hold more than any one frame
    vote_margin: float = 0.5
    refit_box_below: int = 200
    # ... and it overrules even a decided vote of weak frames (no frame saw the car fully, see
    # refit_box_below) when its own energies of the two headings are decisive: the other heading's
    # energy at least this share above its own ((E_other - E_own) / E_own; inf: never). Chosen on
    # the tracking drives (benchmarks/tracks.py): where the refit's margin was this large its heading
    # was right on every static track of both LiDARs; below it the margin says little
    refit_overrule: float = 0.5
    # ... and it decides a split vote only when its two headings differ at least this much (the same
    # share as refit_overrule; 0: always); below, the vote stands. On the drives' static tracks its
    # heading was right on 3 of 7 below 0.1 (a coin), on 7 of 9 at 0.1-0.25 and on all above
    refit_split: float = 0.1
    # a static car's front/back vote: each frame counts its weight x how decided its own choice was
    # (its flip margin, fit/heading.py, capped here; None: the weight alone). Chosen on the tracking
    # drives: on the 45 static tracks of both LiDARs it never turned a track the weight-only vote had
    # right and righted 3 of the 10 whose frames disagree; 0.1-0.5 the same, 0.05 worse
    vote_flip_cap: Optional[float] = 0.2
    blind_noise: float = 1e3       # m: centre noise of a frame without LiDAR points (left out)
    model: MotionModel = field(default_factory=MotionModel)


@dataclass
class TrackBox:
    """The refined box of a track at one frame (world frame)."""

    frame: int
    center: np.ndarray
    size: np.ndarray
    yaw: float
    interpolated: bool
    detection: Optional[int] = None     # index of the frame's label it refines (None: interpolated)
    moving: bool = False
    speed: float = 0.0
    refit: Optional[TrackRefit] = None   # the track's refit when its box came from it (its one shape)
    from_track: bool = False    # the frame's label had no LiDAR point: its box is the track's (other frames')


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    v, w = np.asarray(values, float), np.asarray(weights, float)
    order = np.argsort(v, kind='stable')
    v, w = v[order], w[order]
    c = np.cumsum(w)
    return float(v[int(np.searchsorted(c, 0.5 * c[-1]))])


def circular_mean(angles: np.ndarray, weights: np.ndarray) -> float:
    a, w = np.asarray(angles, float), np.asarray(weights, float)
    return float(np.arctan2(np.sum(w * np.sin(a)), np.sum(w * np.cos(a))))


def _sub_track(track: Track, frames) -> Track:
    return Track(id=track.id, obs={f: track.obs[f] for f in sorted(frames)})


def static_groups(track: Track, s: RefineSettings) -> list[list[int]]:
    """The track's frames grouped around the modes of their ground-plane centres (weighted kernel
    density with ``mode_bandwidth``; the densest remaining centre and the frames within
    ``group_radius`` of it, in that order): the first is the group whose frames agree best, not the
    one with the most frames (wrong depths scatter)."""
    fs = sorted(track.obs)
    xy = np.array([track.obs[f].center[:2] for f in fs])
    w = np.array([max(track.obs[f].weight, 1e-6) for f in fs])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    density = (np.exp(-0.5 * (d / s.mode_bandwidth) ** 2) * w[None]).sum(1)
    left = np.ones(len(fs), bool)
    groups = []
    while left.any():
        i = np.flatnonzero(left)[np.argmax(density[left])]
        members = left & (d[i] <= s.group_radius)
        groups.append(members)
        left &= ~members
    return [[fs[k] for k in np.flatnonzero(m)] for m in groups]


def _static_box(track: Track, s: RefineSettings) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre, size, heading) of a static car: weighted medians and the heading vote."""
    obs = list(track.obs.values())
    w = np.array([max(d.weight, 1e-6) for d in obs])
    c = np.array([weighted_median([d.center[k] for d in obs], w) for k in range(3)])
    return c, track_size(track, s), _static_heading(track, s)[0]


def box_support(center, size, yaw: float, frames, points: Callable[[int], np.ndarray],
                margin: float = 0.3) -> int:
    """LiDAR points of ``frames`` (world frame) inside the box grown by ``margin``, the road left out
    (above the box bottom + 0.3 m): how much the scans of the whole track say a car stands there."""
    R = rot_z(yaw)
    n = 0
    for f in frames:
        P = np.asarray(points(f), dtype=np.float64)
        if not len(P):
            continue
        local = (P[:, :3] - center) @ R
        inside = (np.all(np.abs(local[:, :2]) <= size[:2] / 2 + margin, axis=1)
                  & (local[:, 2] > -size[2] / 2 + 0.3) & (local[:, 2] < size[2] / 2 + margin))
        n += int(inside.sum())
    return n


def split_track(track: Track, times, points: Optional[Callable[[int], np.ndarray]] = None,
                settings: Optional[RefineSettings] = None) -> list[Track]:
    """A static track whose frames disagree (groups of centres more than ``group_radius`` apart) is
    split when the scans say so: a group whose box holds at least ``split_support`` of the LiDAR
    points of the best group's box (over all the track's frames) is another car and becomes its
    own track; a group whose box holds few points is a wrong depth of the same car and stays (the
    refinement then gives it the car's box). Moving tracks and tracks without points stay whole."""
    s = settings or RefineSettings()
    if points is None or len(track.obs) < 2:
        return [track]
    w = np.array([max(d.weight, 1e-6) for d in track.obs.values()])
    if _line_speed(track, times, w)[0] > s.moving_speed and not _ends_parked(track, points, s):
        return [track]
    groups = static_groups(track, s)
    if len(groups) == 1:
        return [track]
    frames = sorted(track.obs)
    support = []
    for g in groups:
        c, size, yaw = _static_box(_sub_track(track, g), s)
        support.append(box_support(c, size, yaw, frames, points))
    keep, out = list(groups[0]), []
    for g, n in zip(groups[1:], support[1:]):
        if n >= max(s.min_points, s.split_support * support[0]):
            out.append(_sub_track(track, g))
        else:
            keep += g
    return [_sub_track(track, keep)] + out


def _ends_parked(track: Track, points, s: RefineSettings) -> bool:
    """Whether the boxes of the track's first and last frames both hold a car in both frames: two
    parked cars whose labels joined one track look like one car moving from one to the other, but
    a moving car leaves its first box empty by the last frame and had not reached its last box at
    the first."""
    fs = sorted(track.obs)
    a, b = track.obs[fs[0]], track.obs[fs[-1]]
    size = track_size(track, s)
    n = {(box.frame, f): box_support(box.center, size, box.yaw, [f], points) for box in (a, b)
         for f in (a.frame, b.frame)}
    own_a, own_b = n[a.frame, a.frame], n[b.frame, b.frame]
    if min(own_a, own_b) < 5:
        return False
    return n[a.frame, b.frame] >= 0.5 * own_a and n[b.frame, a.frame] >= 0.5 * own_b


def track_size(track: Track, s: RefineSettings) -> np.ndarray:
    obs = list(track.obs.values())
    w = np.array([max(d.weight, 1e-6) for d in obs])
    good = w >= s.good_fraction * w.max()
    sizes = np.array([d.size for d in obs])[good]
    return np.array([weighted_median(sizes[:, k], w[good]) for k in range(3)])


def _static_heading(track: Track, s: RefineSettings) -> tuple[float, float]:
    """(heading, agreement of the frames: |sum of w * side| / sum of w, 1 = unanimous). The front is
    the vote of the frames, each counting its weight w times how decided its own front/back choice
    was (its flip margin, capped at ``vote_flip_cap``; None: w alone): a far car's frames that barely
    chose count less than those that chose clearly."""
    obs = list(track.obs.values())
    yaw = np.array([d.yaw for d in obs])
    w = np.array([max(d.weight, 1e-6) for d in obs])
    axis = 0.5 * circular_mean(2 * yaw, w)           # the car's long axis, mod pi
    side = np.sign(np.cos(yaw - axis))
    v = w
    if s.vote_flip_cap is not None:
        cap = s.vote_flip_cap
        v = w * np.clip(np.nan_to_num([d.flip_margin for d in obs], nan=cap), 1e-6 * cap, cap)
    vote = np.sum(v * side)
    return float(wrap_angle(axis if vote >= 0 else axis + np.pi)), float(abs(np.sum(w * side)) / w.sum())


def _moving_headings(track: Track, frames: list[int], vel: np.ndarray, s: RefineSettings) -> np.ndarray:
    travel = np.arctan2(vel[:, 1], vel[:, 0])
    idx = {f: k for k, f in enumerate(frames)}
    obs_yaw = np.full(len(frames), np.nan)
    obs_w = np.zeros(len(frames))
    for f, d in track.obs.items():
        k = idx[f]
        y = d.yaw if np.cos(d.yaw - travel[k]) >= 0 else d.yaw + np.pi      # front = direction of travel
        if abs(wrap_angle(y - travel[k])) > s.max_yaw_gap:
            y = travel[k]
        obs_yaw[k], obs_w[k] = y, max(d.weight, 1e-6)
    out = travel.copy()
    for k in range(len(frames)):
        lo, hi = max(0, k - s.yaw_window), min(len(frames), k + s.yaw_window + 1)
        ok = ~np.isnan(obs_yaw[lo:hi])
        if ok.any():
            out[k] = circular_mean(obs_yaw[lo:hi][ok], obs_w[lo:hi][ok])
    return wrap_angle(out)


def refine_track(track: Track, times: Sequence[float], settings: Optional[RefineSettings] = None,
                 points: Optional[Callable[[int], np.ndarray]] = None,
                 sensor: Optional[Callable[[int], np.ndarray]] = None, refitter=None) -> list[TrackBox]:
    """The track's boxes from its first to its last observed frame. ``points(frame)``: the world-frame
    LiDAR points of a frame (N x 3), ``sensor(frame)``: the LiDAR's world position then; both are
    needed for the point refit. ``refitter``: a :class:`autolabel_ros.track.refit.TrackRefitter`
    (None: no track refit)."""
    s = settings or RefineSettings()
    frames = list(range(min(track.obs), max(track.obs) + 1))
    tt = [float(times[f]) for f in frames]
    xy = [track.obs[f].center[:2] if f in track.obs else None for f in frames]
    rs = [track.obs[f].r if f in track.obs else None for f in frames]
    size = track_size(track, s)
    obs = list(track.obs.values())
    w = np.array([max(d.weight, 1e-6) for d in obs])
    # a poorly seen frame's centre is trusted less (its noise grows as 1 / sqrt(relative weight))
    wmax = w.max()
    rs = [None if r is None else r / np.sqrt(max(track.obs[f].weight / wmax, 0.02))
          for f, r in zip(frames, rs)]
    # a frame without one LiDAR point of the car placed it from the image alone (depth off by metres
    # at 60 m): when other frames have points, its box is the filter's interpolation between them or
    # extrapolation beyond them, its own centre left out (a huge noise: the smoother needs the first)
    blind = blind_frames(track)
    rs = [s.blind_noise if f in blind else r for f, r in zip(frames, rs)]
    if len(frames) > 1:
        xs, _ = rts_smooth(tt, xy, s.model, rs)
    else:
        xs = np.array([[*xy[0], 0.0, 0.0]])
    speed, vel = _line_speed(track, times, w)
    moving = speed > s.moving_speed and speed * (tt[-1] - tt[0]) > s.moving_distance
    if moving and points is not None:
        moving = _points_say_moving(track, times, vel, size, points, s)
    if moving:
        centers = xs[:, :2].copy()
        yaws = _moving_headings(track, frames, xs[:, 2:], s)
        # heights: a straight line in time through the observed centres (roads are smooth)
        tf = np.array([times[d.frame] for d in obs])
        zf = np.array([d.center[2] for d in obs])
        if len(obs) > 2 and np.ptp(tf) > 0:
            A = np.stack([tf, np.ones_like(tf)], 1) * np.sqrt(w)[:, None]
            coef = np.linalg.lstsq(A, zf * np.sqrt(w), rcond=None)[0]
            z = coef[0] * np.array(tt) + coef[1]
        else:
            z = np.full(len(frames), weighted_median(zf, w))
    else:
        # one pose from the best group of agreeing frames: a far car's frames whose depth is
        # off by metres (few LiDAR points) neither move it nor vote its size and heading
        core = _sub_track(track, static_groups(track, s)[0])
        c, size, yaw = _static_box(core, s)
        refit = None
        if refitter is not None and points is not None and sensor is not None:
            c, size, yaw, refit = _refit_static(track, core, c, size, yaw, points, sensor, refitter, s)
        centers = np.tile(c[:2], (len(frames), 1))
        yaws = np.full(len(frames), yaw)
        z = np.full(len(frames), c[2])
        speed = 0.0
    centers = np.column_stack([centers, z])
    if s.shift_to_points and points is not None and sensor is not None:
        shift = _points_shift(track, frames, centers, yaws, size, points, sensor, s)
        for k in range(len(frames)):
            centers[k, :2] += rot_z(yaws[k])[:2, :2] @ shift
    return [TrackBox(frame=f, center=centers[k], size=size.copy(), yaw=float(yaws[k]),
                     interpolated=f not in track.obs, from_track=f in blind,
                     detection=track.obs[f].index if f in track.obs else None, moving=bool(moving),
                     speed=speed, refit=None if moving else refit) for k, f in enumerate(frames)]


def _refit_static(track: Track, core: Track, c, size, yaw: float, points, sensor, refitter,
                  s: RefineSettings):
    """(centre, size, heading, refit or None) of a static car after the track refit on the points of
    all its frames (seeded at its static box, both headings): the refit's front/back when the frames'
    vote is split, its ground-plane box when no frame saw the car fully (the height stays the frames':
    without the silhouette the refit has nothing above the highest scan line)."""
    frames = sorted(track.obs)
    fits = refitter.refit(frames, np.tile(c, (len(frames), 1)), np.full(len(frames), yaw), size, points,
                          sensor, both_headings=True)
    if not fits:
        return c, size, yaw, None
    margin = _static_heading(core, s)[1]
    best = min(fits, key=lambda k: fits[k].energy)
    weak = max(d.n_points for d in track.obs.values()) < s.refit_box_below
    split = margin < s.vote_margin and refit_decisive(fits, s.refit_split)
    fit = fits[best] if split or (weak and refit_decisive(fits, s.refit_overrule)) else fits.get('forward')
    if fit is None:
        return c, size, yaw, None
    if not weak:
        # a well-seen car keeps its box; only its front/back may turn
        return c, size, float(wrap_angle(yaw + (np.pi if np.cos(fit.yaw) < 0 else 0.0))), None
    c = c.copy()
    c[:2] += rot_z(yaw)[:2, :2] @ fit.center[:2]
    size = np.array([fit.size[0], fit.size[1], size[2]])
    return c, size, float(wrap_angle(yaw + fit.yaw)), fit


def scanned(track: Track) -> bool:
    """Whether some frame's label of the track had a LiDAR point of the car."""
    return any(d.n_points > 0 for d in track.obs.values())


def blind_frames(track: Track) -> set:
    """Frames whose label had no LiDAR point of the car while other frames of the track had some
    (a track with none anywhere keeps its image-only frames: nothing better places them)."""
    if not scanned(track):
        return set()
    return {f for f, d in track.obs.items() if d.n_points == 0}


def refit_decisive(fits: dict, share: float) -> bool:
    """Whether the refit's two headings differ enough in energy for its best to decide: the worse
    one's energy at least ``share`` above the best's (share 0: always; one heading fitted: only then)."""
    if 'forward' not in fits or 'backward' not in fits:
        return share <= 0.0
    lo, hi = sorted((fits['forward'].energy, fits['backward'].energy))
    return bool(hi - lo >= share * max(lo, 1e-9))


def _line_speed(track: Track, times, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Speed of the weighted least-squares straight line through the observed centres: a static car
    whose well-seen frames agree stays static even when a few poor frames (cut by the image border,
    hidden) slide its box."""
    obs = list(track.obs.values())
    if len(obs) < 2:
        return 0.0, np.zeros(2)
    t = np.array([times[d.frame] for d in obs])
    if np.ptp(t) <= 0:
        return 0.0, np.zeros(2)
    xy = np.array([d.center[:2] for d in obs])
    sw = np.sqrt(w)[:, None]
    A = np.stack([t, np.ones_like(t)], 1) * sw
    coef = np.linalg.lstsq(A, xy * sw, rcond=None)[0]
    return float(np.linalg.norm(coef[0])), coef[0]


def _box_points(d, size, points, s: RefineSettings) -> np.ndarray:
    P = np.asarray(points(d.frame), dtype=np.float64)
    if not len(P):
        return np.zeros((0, 3))
    local = (P[:, :3] - d.center) @ rot_z(d.yaw)
    inside = np.all(np.abs(local) <= size / 2 + s.points_margin, axis=1) & (local[:, 2] > -size[2] / 2 + 0.2)
    return P[inside, :3]


def _points_say_moving(track: Track, times, vel: np.ndarray, size, points, s: RefineSettings) -> bool:
    """Check a track that seems to move against its LiDAR points: the car's points of the last
    well-separated frame, moved back by the motion, should land on those of the first frame; for a
    static car (whose boxes slid, e.g. while the image border cut it) they land there unmoved."""
    from scipy.spatial import cKDTree

    fs = sorted(track.obs)
    a, b = track.obs[fs[0]], track.obs[fs[-1]]
    dt = times[b.frame] - times[a.frame]
    pa, pb = _box_points(a, size, points, s), _box_points(b, size, points, s)
    if dt <= 0 or len(pa) < s.min_points or len(pb) < s.min_points:
        return True
    tree = cKDTree(pa[:, :2])
    d_static = float(np.median(tree.query(pb[:, :2])[0]))
    d_moving = float(np.median(tree.query(pb[:, :2] - vel * dt)[0]))
    return d_moving < d_static


def _points_shift(track, frames, centers, yaws, size, points, sensor, s: RefineSettings) -> np.ndarray:
    """(dx, dy) in the object frame that puts the box on the accumulated points (zero without enough)."""
    acc, eyes = [], []
    half = size / 2 + s.points_margin
    for k, f in enumerate(frames):
        if f not in track.obs:
            continue
        P = np.asarray(points(f), dtype=np.float64)
        if not len(P):
            continue
        R = rot_z(yaws[k])
        local = (P[:, :3] - centers[k]) @ R
        inside = np.all(np.abs(local) <= half, axis=1) & (local[:, 2] > -size[2] / 2 + 0.2)  # no road
        acc.append(local[inside, :2])
        eyes.append(((np.asarray(sensor(f), dtype=np.float64) - centers[k]) @ R)[:2])
    if not acc:
        return np.zeros(2)
    pts = np.concatenate(acc)
    if len(pts) < s.min_points:
        return np.zeros(2)
    eye = np.mean(eyes, axis=0)
    shift = np.zeros(2)
    for a in (0, 1):
        lo, hi = np.percentile(pts[:, a], [2, 98])
        ext = size[a]
        if hi - lo >= s.both_sides * ext:
            shift[a] = (lo + hi) / 2
        elif eye[a] < 0:            # the sensor saw the negative side: its face lies at lo
            shift[a] = lo + ext / 2
        else:
            shift[a] = hi - ext / 2
    return np.clip(shift, -s.max_shift, s.max_shift)
