"""A drive's per-frame labels -> tracked, refined labels (the one entry point of the package).

``track_sequence(labels, stamps, poses, points=None)`` takes what ``Autolabeler.label`` gave for each
frame (LiDAR frame), the frame stamps and the ego poses (:mod:`autolabel_ros.track.ego`), moves the
labels into the world frame, associates them (:mod:`autolabel_ros.track.tracker`), refines every track
(:mod:`autolabel_ros.track.refine`) and returns per frame the refined labels back in that frame's
LiDAR frame, ``id`` = track id, plus the interpolated boxes of frames where a tracked car had no
label (``metrics['interpolated'] = 1``). Every input label with a finite box gives exactly one output
label. One shape per track: the mesh of the track's best-seen frame, scaled to the track's size and
placed at every frame's box. A tracked box keeps its frame's box bottom (the frame's ground
plane): the world frame decides the ground-plane position, size and heading, not the height.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from autolabel_ros.core.geometry import invert_transform, points_in_box, rot_z, transform_points
from autolabel_ros.core.types import Label3D, Mesh, wrap_angle
from autolabel_ros.track.refine import RefineSettings, TrackBox, refine_track, scanned, split_track
from autolabel_ros.track.tracker import Detection, Track, TrackerSettings, detection_noise, track_detections

REJECTED_WEIGHT = 0.3       # a rejected label still votes, less
FULL_POINTS = 200           # LiDAR points on a car at which a frame counts as seeing it fully
TRUNCATED_WEIGHT = 0.1      # a car cut by the image border: its box slides towards the visible part
BORDER_PX = 3.0
UNSEEN_SCORE = 0.5          # score factor of the labels of a track no LiDAR point ever confirmed


@dataclass
class TrackSettings:
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)
    refit_points: bool = True      # accumulate points and refit the box (needs ``points``)


@dataclass
class TrackResult:
    labels: list[list[Label3D]]     # per frame, LiDAR frame, id = track id
    tracks: list[Track]
    boxes: dict[int, list[TrackBox]]   # track id -> world boxes

    def summary(self) -> dict:
        n_int = sum(int(b.interpolated) for bs in self.boxes.values() for b in bs)
        moving = sum(int(bs[0].moving) for bs in self.boxes.values() if bs)
        lengths = [len(t.obs) for t in self.tracks]
        return {'tracks': len(self.tracks), 'moving_tracks': moving, 'interpolated_boxes': n_int,
                'median_track_length': float(np.median(lengths)) if lengths else 0.0}


def yaw_of(T: np.ndarray) -> float:
    return float(np.arctan2(T[1, 0], T[0, 0]))


def label_weight(lab: Label3D, n_points: Optional[int] = None, truncated: bool = False) -> float:
    """How well a frame sees the car: confidence x LiDAR support (x REJECTED_WEIGHT when rejected,
    x TRUNCATED_WEIGHT when the image border cuts it)."""
    n = lab.metrics.get('n_points', 0) if n_points is None else n_points
    w = max(float(lab.score), 0.05) * min(1.0, (float(n) + 1.0) / FULL_POINTS)
    w *= TRUNCATED_WEIGHT if truncated else 1.0
    return w * (1.0 if lab.accepted else REJECTED_WEIGHT)


def is_truncated(lab: Label3D, camera) -> bool:
    """Whether the label's projected box touches the image border; ``camera`` = (K, T_cam_lidar,
    width, height) or None (then never)."""
    if camera is None:
        return False
    from autolabel_ros.core.geometry import projected_box2d

    K, T, W, H = camera
    b = projected_box2d(np.asarray(K), np.asarray(T), lab.center, lab.size, lab.yaw)
    if b is None:
        return True
    return bool(b[0] < BORDER_PX or b[1] < BORDER_PX or b[2] > W - 1 - BORDER_PX or b[3] > H - 1 - BORDER_PX)


def _finite(lab: Label3D) -> bool:
    return bool(np.all(np.isfinite(lab.box7)))


def track_sequence(labels: Sequence[Sequence[Label3D]], stamps_ns: Sequence[int], poses: Sequence[np.ndarray],
                   points: Optional[Sequence[Optional[np.ndarray]]] = None,
                   settings: Optional[TrackSettings] = None, cameras: Optional[Sequence] = None,
                   refitter=None) -> TrackResult:
    """``points[f]``: frame f's LiDAR points (LiDAR frame) for the weights and the point refit;
    ``cameras[f]``: (K, T_cam_lidar, width, height) to recognise cars cut by the image border;
    ``refitter``: a :class:`autolabel_ros.track.refit.TrackRefitter` for the track refit of static
    cars (needs ``points``; None: none)."""
    s = settings or TrackSettings()
    n = len(labels)
    if not (len(stamps_ns) == len(poses) == n):
        raise ValueError(f'{n} frames of labels, {len(stamps_ns)} stamps and {len(poses)} poses')
    times = [(int(t) - int(stamps_ns[0])) * 1e-9 for t in stamps_ns]
    poses = [np.asarray(T, dtype=np.float64) for T in poses]
    dets: list[list[Detection]] = []
    for f in range(n):
        T = poses[f]
        fd = []
        for i, lab in enumerate(labels[f]):
            if not _finite(lab):
                continue
            npts = None
            if points is not None and points[f] is not None:
                npts = int(points_in_box(points[f], lab.center, lab.size, lab.yaw, margin=0.2).sum())
            c = transform_points(T, lab.center[None])[0]
            fd.append(Detection(frame=f, index=i, center=c, size=lab.size.copy(),
                                yaw=float(wrap_angle(lab.yaw + yaw_of(T))), score=float(lab.score),
                                accepted=bool(lab.accepted),
                                r=detection_noise(np.linalg.norm(lab.center[:2])),
                                weight=label_weight(lab, npts, is_truncated(lab, cameras and cameras[f])),
                                n_points=int(npts if npts is not None else lab.metrics.get('n_points', 0)),
                                flip_margin=float(lab.metrics.get('flip_margin', np.inf))))
        dets.append(fd)
    tracks = track_detections(dets, times, s.tracker)

    world_pts = None
    if s.refit_points and points is not None:
        cache: dict[int, np.ndarray] = {}

        def world_pts(f):
            if f not in cache:
                P = points[f]
                cache[f] = np.zeros((0, 3)) if P is None else transform_points(poses[f], np.asarray(P)[:, :3])
            return cache[f]

        # static tracks whose frames disagree: another car split off, wrong depths kept
        tracks = [part for tr in tracks for part in split_track(tr, times, world_pts, s.refine)]
        tracks.sort(key=lambda tr: (min(tr.obs), tr.id))
        for k, tr in enumerate(tracks):        # ids again count from 1 in order of birth
            tr.id = k + 1

    boxes = {tr.id: refine_track(tr, times, s.refine, points=world_pts,
                                 sensor=(lambda f: poses[f][:3, 3]) if world_pts else None,
                                 refitter=refitter if world_pts else None) for tr in tracks}
    out: list[list[Label3D]] = [[] for _ in range(n)]
    for tr in tracks:
        for f, lab in _track_labels(tr, boxes[tr.id], labels, poses):
            out[f].append(lab)
    return TrackResult(labels=out, tracks=tracks, boxes=boxes)


def _track_labels(tr: Track, boxes: list[TrackBox], labels, poses):
    """(frame, Label3D) of one track's refined boxes, in each frame's LiDAR frame."""
    obs = [labels[f][d.index] for f, d in tr.obs.items()]
    n_acc = sum(int(lab.accepted) for lab in obs)
    accepted = n_acc >= max(1, 0.5 * len(obs))
    score = float(np.median([lab.score for lab in obs]))
    # no frame of the track had a LiDAR point of the car: every box is placed from the image alone
    # (the depth of a car 60 m away off by metres, the same way in every frame, which no motion
    # model corrects): it ranks below the labels a scan confirmed somewhere on the track
    unseen = not scanned(tr)
    scale = UNSEEN_SCORE if unseen else 1.0
    best_f = max(tr.obs, key=lambda f: (tr.obs[f].weight, -f))
    best = labels[best_f][tr.obs[best_f].index]
    best_box = next(b for b in boxes if b.frame == best_f)
    refit = boxes[0].refit if boxes else None
    faces = best.mesh.faces if best.mesh is not None else None
    latent = best.latent
    if refit is not None and refit.unit_shape is not None:
        # the track refit's mesh is the track's one shape
        shape, faces, latent = refit.unit_shape, refit.faces, refit.code
    else:
        shape = _shape_in_object_frame(best, best_box, poses[best_f])
    for b in boxes:
        T_lw = invert_transform(poses[b.frame])
        c = transform_points(T_lw, b.center[None])[0]
        yaw = float(wrap_angle(b.yaw + yaw_of(T_lw)))
        metrics = {'track_id': tr.id, 'interpolated': int(b.interpolated), 'moving': int(b.moving),
                   'from_track': int(b.from_track), 'no_lidar_track': int(unseen),
                   'track_refit': int(refit is not None),
                   'track_speed': round(float(b.speed), 3), 'track_length': len(tr.obs)}
        mesh = None
        if shape is not None:
            v = (shape * b.size) @ rot_z(yaw).T + c
            mesh = Mesh(vertices=v, faces=faces)
        if b.interpolated:
            lab = Label3D(center=c, size=b.size, yaw=yaw, cls=best.cls, score=0.5 * score * scale, id=tr.id,
                          latent=latent, mesh=mesh, accepted=accepted,
                          reasons=[] if accepted else ['track_rejected'],
                          metrics={**metrics, 'n_points': 0}, sources=tuple(best.sources) + ('track',))
        else:
            own = labels[b.frame][b.detection]
            # the height stays the frame's own: its box bottom sits on that frame's ground plane, which
            # no drift of the ego's height (ICP) moves
            c[2] = own.center[2] - own.size[2] / 2 + b.size[2] / 2
            if shape is not None:
                mesh = Mesh(vertices=(shape * b.size) @ rot_z(yaw).T + c, faces=faces)
            lab = replace(own, center=c, size=b.size.copy(), yaw=yaw, id=tr.id,
                          score=scale * max(float(own.score), score), latent=latent, mesh=mesh,
                          accepted=bool(own.accepted or accepted),
                          reasons=[] if (own.accepted or accepted) else list(own.reasons),
                          metrics={**own.metrics, **metrics, 'prompt_id': int(own.id),
                                   'frame_yaw': float(own.yaw)})
        yield b.frame, lab


def _shape_in_object_frame(best: Label3D, box: TrackBox, T_wl: np.ndarray) -> Optional[np.ndarray]:
    """The best frame's mesh in its object frame, divided by its box size (unit box), turned by pi
    when the track's heading reversed that frame's front."""
    if best.mesh is None or not len(best.mesh.vertices):
        return None
    local = (np.asarray(best.mesh.vertices, dtype=np.float64) - best.center) @ rot_z(best.yaw)
    yaw_w = best.yaw + yaw_of(T_wl)
    if np.cos(box.yaw - yaw_w) < 0:
        local = local @ rot_z(np.pi)[:3, :3].T
    return local / np.maximum(best.size, 1e-6)
