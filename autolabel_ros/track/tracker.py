"""Associate per-frame labels into tracks in the world frame.

Per frame, every live track's constant-velocity filter (:mod:`autolabel_ros.track.motion`) predicts
its centre to the frame's time; the cost of a (track, label) pair is the Mahalanobis distance of the
label's ground-plane centre under the prediction's innovation covariance (a label's noise grows
with its range and as its confidence falls, so a doubtful label neither moves a track far nor
pulls its velocity), pairs beyond the gate (or
farther than ``max_distance`` metres) are forbidden, and scipy's ``linear_sum_assignment`` picks the
cheapest one-to-one matching. Unmatched labels start tracks; a track not seen for more than
``max_age`` frames ends. Track ids count from 1 in order of birth, so the same input gives the same ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from autolabel_ros.track.motion import CVKalman, MotionModel

FORBIDDEN = 1e6


@dataclass
class Detection:
    """One per-frame label in the world frame."""

    frame: int                 # position of the frame in the sequence
    index: int                 # position of the label in that frame's label list
    center: np.ndarray         # world (3,)
    size: np.ndarray           # (l, w, h)
    yaw: float                 # world heading
    score: float = 1.0
    accepted: bool = True
    r: float = 0.3             # centre noise (m, 1 sigma): grows with range
    weight: float = 1.0        # how well the frame sees the car (size and heading votes)
    n_points: int = 0          # LiDAR points in the label's box (grown by 0.2 m)
    # how decided the frame's own front/back choice was: the fit's selection-score margin of the
    # best hypothesis heading the other way (fit/heading.py flip_margin; inf: none survived)
    flip_margin: float = float('inf')


@dataclass
class TrackerSettings:
    gate: float = 3.5          # Mahalanobis distance (2 dof: 3.5 keeps > 99.7 % of true pairs)
    max_distance: float = 4.0  # metres, whatever the covariance says
    max_age: int = 5           # frames a track lives on unseen (hidden behind another car, a miss)
    # a label the fit itself doubts (low confidence, rejected) moves its track less: its centre's
    # noise grows as 1 / sqrt(quality), quality = confidence (x rejected_quality when rejected)
    rejected_quality: float = 0.3
    min_quality: float = 0.05
    model: MotionModel = field(default_factory=MotionModel)


@dataclass
class Track:
    id: int
    obs: dict = field(default_factory=dict)      # frame -> Detection
    kf: CVKalman = None
    t: float = 0.0             # time of the filter's state
    last: int = 0              # last frame with an observation

    @property
    def frames(self) -> list[int]:
        return sorted(self.obs)


def detection_noise(range_m: float) -> float:
    """Per-frame centre error grows with range (fewer points, coarser masks)."""
    return 0.2 + 0.01 * float(range_m)


def label_noise(d: Detection, s: TrackerSettings) -> float:
    """The centre noise (m) a label enters the filter with: its range noise over its quality."""
    q = max(float(d.score), 0.0) * (1.0 if d.accepted else s.rejected_quality)
    return float(d.r / np.sqrt(max(q, s.min_quality)))


def associate(tracks: Sequence[Track], dets: Sequence[Detection], s: TrackerSettings):
    """(matches [(track k, det j)], unmatched det indices)."""
    if not tracks or not dets:
        return [], list(range(len(dets)))
    cost = np.full((len(tracks), len(dets)), FORBIDDEN)
    for k, tr in enumerate(tracks):
        pred = tr.kf.x[:2]
        for j, d in enumerate(dets):
            if np.linalg.norm(d.center[:2] - pred) > s.max_distance:
                continue
            m = tr.kf.mahalanobis(d.center[:2], label_noise(d, s))
            if m <= s.gate:
                cost[k, j] = m
    rows, cols = linear_sum_assignment(cost)
    matches = [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < FORBIDDEN]
    used = {c for _, c in matches}
    return matches, [j for j in range(len(dets)) if j not in used]


def track_detections(frames: Sequence[Sequence[Detection]], times: Sequence[float],
                     settings: TrackerSettings | None = None) -> list[Track]:
    """All tracks (ended and live) of a sequence, in order of birth."""
    s = settings or TrackerSettings()
    live: list[Track] = []
    out: list[Track] = []
    next_id = 1
    for f, dets in enumerate(frames):
        t = float(times[f])
        for tr in live:
            tr.kf.predict(t - tr.t)
            tr.t = t
        matches, new = associate(live, list(dets), s)
        for k, j in matches:
            tr, d = live[k], dets[j]
            tr.kf.update(d.center[:2], label_noise(d, s))
            tr.obs[f] = d
            tr.last = f
        for j in new:
            d = dets[j]
            tr = Track(id=next_id, obs={f: d}, kf=CVKalman(d.center[:2], s.model, label_noise(d, s)), t=t,
                       last=f)
            next_id += 1
            live.append(tr)
            out.append(tr)
        live = [tr for tr in live if f - tr.last <= s.max_age]
    return out
