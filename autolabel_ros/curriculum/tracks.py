"""Track consistency of a log's pseudo-labels (the curriculum's ``track_headings``).

The frames of one log are consecutive, so one car's labels must agree over them: a parked car keeps its
heading, a moving one points where it travels. The frames' labels (all of them, accepted or not, so a
car's track is as long as it was seen) go through :func:`autolabel_ros.track.sequence.track_sequence`
(ego motion by scan-to-scan ICP), and every label gets its track's heading (moving: the direction of
travel; parked: the frames' weighted front/back vote). A label whose own heading points the other way
(more than 90 degrees off) is *track-flipped*: its NOCS targets would teach the front/back confusion
the curriculum is to remove. ``fix`` turns such a label (heading and mesh by pi), ``drop`` leaves it
out, ``add`` fixes and also lets in the accepted labels whose own front/back was too undecided to be
verified, at their track's heading; a car seen in fewer than ``min_track`` frames has no say.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from autolabel_ros.core.types import Label3D, Mesh, wrap_angle

MODES = ('off', 'fix', 'drop', 'add')


@dataclass
class TrackHeading:
    """A label's track heading (its frame's LiDAR frame) and how much the track says."""

    yaw: float            # the track's heading at this frame
    frames: int           # observations in the track
    moving: bool
    track: int = 0        # the track's id (which car)


def log_track_headings(frames, results, min_track: int = 3) -> dict:
    """(frame position, label index) -> :class:`TrackHeading` for the labels of one log whose track has
    at least ``min_track`` observations. ``frames``: the log's sensor frames in order; ``results``:
    their label lists (LiDAR frame)."""
    from autolabel_ros.track.ego import poses_from_icp
    from autolabel_ros.track.sequence import track_sequence, yaw_of
    if len(frames) < 2:
        return {}
    poses = poses_from_icp(f.points for f in frames).poses
    cams = [(f.K, f.T_cam_lidar, f.width, f.height) for f in frames]
    res = track_sequence(results, [f.stamp_ns for f in frames], poses, [f.points for f in frames],
                         cameras=cams)
    out = {}
    for tr in res.tracks:
        if len(tr.obs) < min_track:
            continue
        for b in res.boxes[tr.id]:
            if b.detection is None:
                continue
            yaw = float(wrap_angle(b.yaw - yaw_of(poses[b.frame])))
            out[(b.frame, b.detection)] = TrackHeading(yaw=yaw, frames=len(tr.obs), moving=bool(b.moving),
                                                       track=tr.id)
    return out


def disagrees(label_yaw: float, track_yaw: float) -> bool:
    """Whether a label's heading points the other way from its track's (more than 90 degrees off)."""
    return bool(np.cos(label_yaw - track_yaw) < 0)


def turned(lab: Label3D) -> Label3D:
    """The label with its front and back swapped: heading + pi, mesh turned by pi about the box's
    vertical axis (the same surface seen from the other end)."""
    mesh = lab.mesh
    if mesh is not None:
        v = np.asarray(mesh.vertices, np.float64)
        v = np.c_[2 * lab.center[:2] - v[:, :2], v[:, 2]]
        mesh = Mesh(vertices=v, faces=mesh.faces)
    return replace(lab, yaw=float(wrap_angle(lab.yaw + np.pi)), mesh=mesh)
