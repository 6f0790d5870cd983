"""``autolabel-bag --tracks``: the drive's labels tracked across frames, at assembly time.

The per-frame labels stay what the workers saved (resuming is unchanged); after all frames are done,
one more pass over the input reads each frame's LiDAR sweep, keeps the points near its labels (for the
track refinement) and, when the input carries no ego motion, registers the sweeps (ICP). Ego motion,
in order: ``--ego tf`` (the bag's dynamic /tf), ``--ego oxts`` (KITTI raw ``oxts/data``), ``--ego icp``;
``--ego auto`` takes the first the input has. Then :func:`autolabel_ros.track.sequence.track_sequence`.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from autolabel_ros.io.bags import BagError

log = logging.getLogger(__name__)

EGO_MODES = ('auto', 'tf', 'oxts', 'icp')
CROP_MARGIN = 1.0        # m around each label: the points the refinement may look at


def _crop(points: np.ndarray, labels) -> np.ndarray:
    from autolabel_ros.core.geometry import points_in_box

    pts = np.asarray(points, dtype=np.float32)[:, :3]
    keep = np.zeros(len(pts), bool)
    for lab in labels:
        if np.all(np.isfinite(lab.box7)):
            keep |= points_in_box(pts, lab.center, lab.size, lab.yaw, margin=CROP_MARGIN)
    return pts[keep]


def _given_ego(mode: str, source, refs, records):
    """Ego motion from /tf or OXTS (None when ``auto`` finds neither); BagError when asked for one
    the input does not have."""
    from autolabel_ros.track.ego import poses_from_oxts, poses_from_tf

    if mode in ('auto', 'tf'):
        tree = getattr(source, 'tf', None)
        em = None
        if tree is not None and tree.history:
            em = poses_from_tf(tree, [r['stamp_ns'] for r in records], records[0]['lidar_frame'])
        if em is not None:
            return em
        if mode == 'tf':
            raise BagError(f'--ego tf: {source.path} has no dynamic /tf (e.g. odom -> base_link); use '
                           f'--ego auto or icp')
    if mode in ('auto', 'oxts'):
        packets = source.oxts_packets(refs) if hasattr(source, 'oxts_packets') else None
        if packets is not None:
            return poses_from_oxts(packets, source.imu_to_velo(refs[0]))
        if mode == 'oxts':
            raise BagError(f'--ego oxts: {source.path} has no KITTI OXTS packets (oxts/data/<frame>.txt) for '
                           f'the selected frames; use --ego auto or icp')
    return None


def make_refitter(cfg):
    """The track refit (:mod:`autolabel_ros.track.refit`) with the run's shape space and fit settings."""
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.track.refit import TrackRefitter

    al = Autolabeler(cfg)
    return TrackRefitter(al.sdf, cfg.fit, al.device)


def track_drive(mode: str, source, refs, records, labels: dict, progress: bool = True, refitter=None):
    """(tracked labels by frame index, info dict, TrackResult, ego poses, points for the figure);
    ``refitter``: the track refit of static cars (:func:`make_refitter`; None: none)."""
    from tqdm import tqdm

    from autolabel_ros.track.ego import poses_from_icp
    from autolabel_ros.track.sequence import track_sequence

    if mode not in EGO_MODES:
        raise BagError(f"--ego {mode!r}: must be one of {', '.join(EGO_MODES)}")
    by_index = {r['index']: r for r in records}
    refs = [r for r in refs if r.index in by_index]
    ego = _given_ego(mode, source, refs, [by_index[r.index] for r in refs])
    crops: dict[int, np.ndarray] = {}
    thin: list[np.ndarray] = []
    bar = tqdm(total=len(refs), unit='frame', desc='tracks', disable=not progress, dynamic_ncols=True)

    def sweeps():
        for ref, frame, _ in source.iter_frames(refs):
            crops[ref.index] = _crop(frame.points, labels.get(ref.index, []))
            thin.append((ref.index, np.asarray(frame.points[::20, :3], dtype=np.float32)))
            bar.update(1)
            yield frame.points

    try:
        if ego is None:
            ego = poses_from_icp(sweeps())
        else:
            for _ in sweeps():
                pass
    finally:
        bar.close()
    read = [r for r in refs if r.index in crops]
    if len(read) < len(refs):
        log.warning('tracks: %d of %d frames could not be read again; they are left out of the tracks',
                    len(refs) - len(read), len(refs))
    if ego.source != 'icp':           # given poses: keep the frames read
        pos = {r.index: k for k, r in enumerate(refs)}
        poses = [ego.poses[pos[r.index]] for r in read]
    else:                              # ICP chained only the frames read
        poses = ego.poses
    recs = [by_index[r.index] for r in read]
    cams = [(np.array(r['K']), np.array(r['T_cam_lidar']), r['width'], r['height']) for r in recs]
    res = track_sequence([labels.get(r.index, []) for r in read], [r['stamp_ns'] for r in recs], poses,
                         [crops[r.index] for r in read], cameras=cams, refitter=refitter)
    out = {r.index: labs for r, labs in zip(read, res.labels)}
    info = {'ego_source': ego.source, 'ego_notes': ego.notes, **res.summary(),
            'refit_tracks': refitter.calls if refitter is not None else 0,
            'path_m': float(np.sum(np.linalg.norm(np.diff([T[:3, 3] for T in poses], axis=0), axis=1)))
            if len(poses) > 1 else 0.0}
    pose_of = {r.index: T for r, T in zip(read, poses)}
    return out, info, res, pose_of, dict(thin)


def tracks_figure(path, tracked: dict, pose_of: dict, thin: dict, title: str = '') -> None:
    from autolabel_ros.core.geometry import transform_points
    from autolabel_ros.io.report import write_tracks_figure
    from autolabel_ros.track.sequence import yaw_of

    tracks: dict[int, list] = {}
    for idx in sorted(tracked):
        T = pose_of[idx]
        for lab in tracked[idx]:
            if not lab.accepted:          # the figure shows the tracks that made it into the labels
                continue
            c = transform_points(T, lab.center[None])[0]
            tracks.setdefault(int(lab.id), []).append((c, lab.size, lab.yaw + yaw_of(T),
                                                       bool(lab.metrics.get('interpolated'))))
    ego = np.array([pose_of[i][:2, 3] for i in sorted(pose_of)])
    pts = np.concatenate([transform_points(pose_of[i], p)[:, :2] for i, p in sorted(thin.items())
                          if i in pose_of]) if thin else None
    write_tracks_figure(path, ego, tracks, pts, title)


def tracking_lines(records, tracked: dict) -> list[str]:
    """KITTI tracking label lines of the whole drive (frame = the frame's index in the input)."""
    from autolabel_ros.io.kitti_policy import kitti_predictions
    from autolabel_ros.io.kitti_tracking import tracking_lines as lines_of
    from autolabel_ros.offline.job import _calib_of

    out = []
    for rec in records:
        labs = [lab for lab in kitti_predictions(tracked.get(rec['index'], []))
                if np.all(np.isfinite(lab.box7))]
        out += lines_of(rec['index'], labs, _calib_of(rec), rec['width'], rec['height'])
    return out


def check_ego_source(mode: str, source, refs) -> None:
    """BagError when ``--ego tf`` / ``--ego oxts`` names what the input does not have."""
    if mode == 'tf':
        tree = getattr(source, 'tf', None)
        if tree is None or not tree.history:
            raise BagError(f'--ego tf: {source.path} has no dynamic /tf (e.g. odom -> base_link); use '
                           f'--ego auto or icp')
    if mode == 'oxts':
        if not hasattr(source, 'oxts_packets') or source.oxts_packets(refs) is None:
            raise BagError(f'--ego oxts: {source.path} has no KITTI OXTS packets (oxts/data/<frame>.txt) '
                           f'for the selected frames; use --ego auto or icp')


def check_ego(mode: Optional[str]) -> None:
    if mode not in EGO_MODES:
        raise BagError(f"--ego {mode!r}: must be one of {', '.join(EGO_MODES)}")
