"""Track-level refit: one SDF fit per track on the LiDAR points of all its frames, in its object frame.

The per-frame fitter sees a far car through a handful of points a frame; a track sees it many times,
from a moving ego, so its points of all frames, moved into the car's object frame, cover more of
it (an end-on parked car shows its side later on). This module reruns the product's optimiser
(:func:`autolabel_ros.fit.optimize.optimize`, the same LiDAR, free-space, ground and prior energies
as the per-frame fit; no silhouette: the frames' images are not kept) on those accumulated points,
with one shape code and one set of scales for the whole track:

- the object frame of frame f is the refined track box of f (:mod:`autolabel_ros.track.refine`: the
  one static box, or the smoothed pose of a moving car, its heading from the velocity); every
  frame's points near the box and above its bottom are moved into it, each with the free-space
  samples of its own frame's sensor position;
- the fit's pose is an offset of all those frames' boxes at once (the motion model stays what the
  refinement made of it), started at the box with both headings (static cars: the heading decides
  between them; moving cars: only the direction of travel);
- the result is the tight box of the fitted mesh, written to every frame of the track, and the mesh
  as the track's one shape.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from autolabel_ros.core.geometry import rot_z
from autolabel_ros.core.types import wrap_angle


@dataclass
class RefitSettings:
    margin: float = 0.5          # m around the box: the points taken from each frame
    above_bottom: float = 0.2    # m above the box bottom (the road left out)
    min_points: int = 30         # accumulated points needed for a refit
    max_points: int = 4000       # a near car's many frames are thinned to this many (fixed seed)
    max_shift: float = 1.0       # m: a refit moving the box further than this is not taken
    seed: int = 0


@dataclass
class TrackRefit:
    """The refit of one track, in its object frame (x forward along the seed box's heading)."""

    center: np.ndarray           # tight box centre (object frame)
    size: np.ndarray             # l, w, h
    yaw: float                   # heading offset from the seed box's
    code: np.ndarray             # shape code
    unit_shape: Optional[np.ndarray]   # mesh vertices in the new box's frame / size (None: no mesh)
    faces: Optional[np.ndarray]
    energy: float
    n_points: int
    n_frames: int


def accumulate(frames: Sequence[int], centers: np.ndarray, yaws: np.ndarray, size: np.ndarray,
               points: Callable[[int], np.ndarray], sensor: Callable[[int], np.ndarray],
               s: RefitSettings) -> tuple[np.ndarray, np.ndarray]:
    """(points, sensor position of each point's frame), both (M, 3) in the object frame: every
    frame's world points inside its box grown by ``margin``, above the bottom + ``above_bottom``."""
    P_all, S_all = [], []
    half = np.asarray(size, float) / 2
    for k, f in enumerate(frames):
        P = np.asarray(points(f), dtype=np.float64)
        if not len(P):
            continue
        R = rot_z(float(yaws[k]))
        local = (P[:, :3] - centers[k]) @ R
        keep = (np.all(np.abs(local[:, :2]) <= half[:2] + s.margin, axis=1)
                & (local[:, 2] > -half[2] + s.above_bottom) & (local[:, 2] < half[2] + s.margin))
        if not keep.any():
            continue
        eye = (np.asarray(sensor(f), dtype=np.float64) - centers[k]) @ R
        P_all.append(local[keep])
        S_all.append(np.broadcast_to(eye, (int(keep.sum()), 3)))
    if not P_all:
        return np.zeros((0, 3)), np.zeros((0, 3))
    P, S = np.concatenate(P_all), np.concatenate(S_all)
    if len(P) > s.max_points:
        pick = np.sort(np.random.default_rng(s.seed).choice(len(P), s.max_points, replace=False))
        P, S = P[pick], S[pick]
    return P, S


def _batch(pts: np.ndarray, eyes: np.ndarray, ground_z: float, fc, device):
    from autolabel_ros.fit.batch import FitBatch, freespace_samples

    f32 = dict(dtype=torch.float32, device=device)
    # accumulated points have many sensor positions: each point's samples are the per-frame ones
    # (sensor at the origin) of the point seen from its own sensor, moved back
    fs = freespace_samples((pts - eyes)[None], fc.freespace_samples, fc.freespace_step)[0] + eyes[:, None, :]
    return FitBatch(ray_o=torch.zeros(3, **f32), ray_d=torch.zeros(1, 1, 3, **f32),
                    target=torch.zeros(1, 1, **f32), valid=torch.zeros(1, 1, **f32),
                    pts=torch.as_tensor(pts[None], **f32), w=torch.ones(1, len(pts), **f32),
                    fs=torch.as_tensor(fs[None], **f32),
                    ground=torch.as_tensor([0.0, 0.0, ground_z], **f32),
                    has_mask=torch.zeros(1, dtype=torch.bool, device=device))


class TrackRefitter:
    """Refits tracks with the product's shape space and fit settings (``fit_cfg``: the ``fit`` section;
    its energies minus the silhouette, its schedule, its priors' weights)."""

    def __init__(self, shape, fit_cfg, device, settings: Optional[RefitSettings] = None):
        self.shape = shape
        # no silhouette (the frames' images are not kept): the LiDAR, free-space, ground and prior terms
        on = [e for e in fit_cfg.energies if e in ('lidar', 'ground')]
        self.cfg = dataclasses.replace(fit_cfg, energies=on)
        self.device = device
        self.s = settings or RefitSettings()
        self.calls, self.cpu_s = 0, 0.0      # tracks refitted, thread CPU seconds they took

    def refit(self, frames: Sequence[int], centers: np.ndarray, yaws: np.ndarray, size: np.ndarray,
              points: Callable[[int], np.ndarray], sensor: Callable[[int], np.ndarray],
              both_headings: bool = True) -> dict[str, TrackRefit]:
        """The track's refit in the object frame of its boxes (``centers`` (F, 3), ``yaws`` (F,) of
        ``frames``, one ``size``): the best fit facing the boxes' way (``'forward'``) and, with
        ``both_headings``, the best facing the other way (``'backward'``); empty with too few points,
        a direction without a fit that stays within ``max_shift`` of the box is left out."""
        t0 = time.thread_time()
        try:
            return self._refit(frames, centers, yaws, size, points, sensor, both_headings)
        finally:
            self.calls += 1
            self.cpu_s += time.thread_time() - t0

    def _refit(self, frames, centers, yaws, size, points, sensor, both_headings) -> dict[str, TrackRefit]:
        from autolabel_ros.fit.optimize import optimize

        s, fc = self.s, self.cfg
        pts, eyes = accumulate(frames, np.asarray(centers, float), np.asarray(yaws, float), size, points,
                               sensor, s)
        if len(pts) < s.min_points:
            return {}
        batch = _batch(pts, eyes, -float(size[2]) / 2, fc, self.device)
        yaw0 = np.array([0.0, np.pi]) if both_headings else np.array([0.0])
        fits = optimize(self.shape, batch, np.zeros((len(yaw0), 3)), yaw0, np.zeros(len(yaw0), np.int64), fc,
                        self.device)
        out: dict[str, TrackRefit] = {}
        for a in fits[0].alternatives or fits[0:1]:
            key = 'forward' if np.cos(a.pose[3]) >= 0 else 'backward'
            if key in out or not np.all(np.isfinite(a.pose)):
                continue
            r = self._result(a, len(pts), len(frames))
            if np.linalg.norm(r.center[:2]) <= s.max_shift:
                out[key] = r
        return out

    def _result(self, f, n_points: int, n_frames: int) -> TrackRefit:
        """The tight box and unit mesh of one fitted hypothesis (as the per-frame label is made)."""
        from autolabel_ros.fit.result import box_from_fit, canonical_mesh

        scales = f.scales if self.cfg.log_scales else None
        mesh_c = canonical_mesh(self.shape.decode_full(f.code), self.shape.arrays.extent, scales)
        fallback = self.shape.size_of(torch.as_tensor(f.code[None], dtype=torch.float32,
                                                      device=self.shape.device))[0].cpu().numpy()
        center, size, yaw, _ = box_from_fit(f.pose, mesh_c, fallback)
        unit = faces = None
        if mesh_c is not None:
            mid = (mesh_c.vertices.min(0) + mesh_c.vertices.max(0)) / 2
            unit, faces = (mesh_c.vertices - mid) / np.maximum(size, 1e-6), mesh_c.faces
        return TrackRefit(center=np.asarray(center, float), size=np.asarray(size, float),
                          yaw=float(wrap_angle(yaw)), code=np.asarray(f.code, float), unit_shape=unit,
                          faces=faces, energy=float(f.energy), n_points=n_points, n_frames=n_frames)
