"""One frame's objects as tensors: the crop views (rays, targets, occlusion maps) at any crop size and
the :class:`FitBatch` the energies read. The fit (``fit.crop_size``) and the verification render
(``fit.final_crop_size``) both take their crops from :func:`crop_views`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from autolabel_ros.fit.rays import camera_rays, crop_box, crop_pixels, crop_resample


@dataclass
class CropViews:
    """Per object, an S x S view of its padded crop (P = S * S pixels, row-major)."""

    ray_o: np.ndarray      # 3, camera centre in the LiDAR frame
    ray_d: np.ndarray      # N, P, 3 unit ray directions (LiDAR frame)
    target: np.ndarray     # N, P instance mask, area-resampled to [0, 1]
    valid: np.ndarray      # N, P occlusion/validity map O: inside the image and not occluded


@dataclass
class FitBatch:
    """Tensors of one frame's objects (N of them); per-hypothesis tensors are indexed by ``obj``."""

    ray_o: torch.Tensor          # 3, camera centre in the LiDAR frame
    ray_d: torch.Tensor          # N, P, 3 crop ray directions
    target: torch.Tensor         # N, P instance mask on the crop (area-resampled, [0, 1])
    valid: torch.Tensor          # N, P occlusion/validity map O
    pts: torch.Tensor            # N, M, 3 frustum points (padded)
    w: torch.Tensor              # N, M point weights (0 = padding)
    fs: torch.Tensor             # N, M, K, 3 free-space samples in front of each point
    ground: torch.Tensor | None  # N, 3 the road under each object (or 3: one plane), z = a x + b y + c
    has_mask: torch.Tensor       # N bool: non-empty target
    nocs: object = None          # fit/surfels.NocsTargets: the CSS predictions (SDFLabel's losses)
    seeds: object = None         # fit/surfels.Seeds of the shape space (with ``nocs``)

    _last_views: tuple | None = field(default=None, init=False, repr=False, compare=False)  # views_of cache

    def ground_of(self, obj: torch.Tensor) -> torch.Tensor:
        """(B, 3) the road plane under the objects ``obj`` (B,) of the hypotheses (one (3,) plane for
        the frame is broadcast)."""
        g = self.ground
        return g.expand(len(obj), 3) if g.dim() == 1 else g[obj]

    def views_of(self, obj: torch.Tensor) -> HypothesisViews:
        """The silhouette term's per-hypothesis crop tensors of objects ``obj`` (B,), kept for the next
        call with the same ``obj`` tensor (the optimiser passes one until it prunes or settles; tensors
        passed here must not change in place): gathered once instead of every step."""
        if self._last_views is None or self._last_views[0] is not obj:
            valid = self.valid[obj]
            target = self.target[obj] * valid           # occluded pixels say nothing either way
            self._last_views = (obj, HypothesisViews(ray_d=self.ray_d[obj], rays_on=self.rays_on[obj],
                                                     valid=valid, target=target, target_sum=target.sum(-1),
                                                     has_mask=self.has_mask[obj]))
        return self._last_views[1]

    def thinned(self, max_points: int) -> FitBatch:
        """This batch with at most ``max_points`` LiDAR points per object, evenly spaced through each
        object's point list (itself a seeded random subset of its frustum, in scan order); the crop and
        ground tensors are shared. ``self`` when no object has more."""
        n = (self.w > 0).sum(1)
        if int(n.max()) <= max_points:
            return self
        # row j of an object with n > max_points points: its point floor(j n / max_points)
        j = torch.arange(max_points, device=self.w.device)
        rows = torch.where(n[:, None] > max_points, j[None] * n[:, None] // max_points, j[None])   # N, K
        ix = rows.clamp_max(self.w.shape[1] - 1)
        fs = self.fs.gather(1, ix[..., None, None].expand(-1, -1, *self.fs.shape[2:]))
        return dataclasses.replace(self, pts=self.pts.gather(1, ix[..., None].expand(-1, -1, 3)),
                                   w=self.w.gather(1, ix) * (j[None] < n[:, None]), fs=fs)

    @cached_property
    def rays_on(self) -> torch.Tensor:
        """(N, P) bool: the crop pixels the silhouette term sees (occlusion/validity map above 0)."""
        return self.valid > 0

    @cached_property
    def lidar_rows(self) -> LidarRows:
        """The weighted points without the padding (objects' point counts differ by 10-100x in a
        frame; the padded (N, M) layout looked up every padding point of every hypothesis)."""
        keep = self.w > 0                                                    # N, M
        rows = torch.cat([self.pts[:, :, None], self.fs], 2)[keep]          # Q, 1 + K, 3 (object-major)
        counts = keep.sum(1)
        return LidarRows(rows=rows, w=self.w[keep], counts=counts, starts=torch.cumsum(counts, 0) - counts,
                         wsum=self.w.sum(-1).clamp_min(1e-6))


@dataclass
class HypothesisViews:
    """:meth:`FitBatch.views_of`: the crop tensors of B hypotheses' objects."""

    ray_d: torch.Tensor       # B, P, 3
    rays_on: torch.Tensor     # B, P bool
    valid: torch.Tensor       # B, P occlusion/validity map O
    target: torch.Tensor      # B, P mask times O
    target_sum: torch.Tensor  # B
    has_mask: torch.Tensor    # B bool


@dataclass
class LidarRows:
    """Each object's weighted frustum points, each followed by its K free-space samples, objects one
    after the other (Q rows in all)."""

    rows: torch.Tensor     # Q, 1 + K, 3 the point, then its free-space samples
    w: torch.Tensor        # Q point weights (> 0)
    counts: torch.Tensor   # N rows per object
    starts: torch.Tensor   # N first row of each object
    wsum: torch.Tensor     # N sum of the object's weights (clamped above 0)
    _last: tuple | None = field(default=None, repr=False, compare=False)   # (obj, gathered(obj))

    def of(self, obj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For hypotheses of objects ``obj`` (B,): the row index of each of their points (Hq,) and its
        hypothesis (Hq,), hypothesis-major."""
        counts = self.counts[obj]
        hyp = torch.repeat_interleave(torch.arange(len(obj), device=obj.device), counts)
        first = torch.cumsum(counts, 0) - counts
        return torch.arange(len(hyp), device=obj.device) - first[hyp] + self.starts[obj][hyp], hyp

    def gathered(self, obj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The points (Hq, 3), their free-space samples (Hq, K, 3), weights (Hq,) and hypotheses (Hq,) of
        the hypotheses of objects ``obj``: :meth:`of` applied, kept for the next call with the same
        ``obj`` tensor (the optimiser passes one until it prunes; tensors passed here must not change in
        place). Points and samples are separate contiguous blocks: the fit transforms them apart."""
        if self._last is None or self._last[0] is not obj:
            rows, hyp = self.of(obj)
            g = self.rows[rows]
            self._last = (obj, (g[:, 0].contiguous(), g[:, 1:].contiguous(), self.w[rows], hyp))
        return self._last[1]


def object_crops(objects, width: int, height: int, pad_frac: float) -> list[np.ndarray]:
    """Integer crop of each object: its mask's box, padded (may extend outside the image)."""
    return [crop_box(o.mask_bounds, width, height, pad_frac) for o in objects]


def crop_views(frame, objects, crops, size: int) -> CropViews:
    """Rays, targets and occlusion maps of the objects' crops resampled to size x size."""
    shape = (frame.height, frame.width)
    rays, targets, valids = [], [], []
    origin = None
    for o, crop in zip(objects, crops):
        origin, d = camera_rays(frame.K, frame.T_cam_lidar, crop_pixels(crop, size))
        rays.append(d)
        targets.append(crop_resample(o.mask, crop, size, shape).ravel())
        inside = crop_resample(None, crop, size, shape)
        occl = crop_resample(o.nearer, crop, size, shape)
        valids.append((inside * (1.0 - occl)).ravel())
    return CropViews(ray_o=origin, ray_d=np.stack(rays), target=np.stack(targets), valid=np.stack(valids))


def freespace_samples(pts: np.ndarray, n: int, step: float) -> np.ndarray:
    """(N, M, n, 3) points on the LiDAR ray of each point (sensor at the LiDAR origin), ``step``,
    2 ``step``, ... in front of it: the sensor saw through them, so the model must not cover them."""
    rng_ = np.linalg.norm(pts, axis=-1, keepdims=True).clip(1e-3)
    steps = step * np.arange(1, n + 1)
    return pts[:, :, None, :] * (1.0 - steps[None, None, :, None] / rng_[:, :, None, :]).clip(0.0)


def build_batch(views: CropViews, objects, ground, fc, device) -> FitBatch:
    """The FitBatch of the objects' crop views, clustered points and the ground plane."""
    N = len(objects)
    M = max(1, max(len(o.points) for o in objects))
    pts = np.zeros((N, M, 3))
    w = np.zeros((N, M))
    for k, o in enumerate(objects):
        pts[k, :len(o.points)] = o.points
        w[k, :len(o.points)] = 1.0
    fs = freespace_samples(pts, fc.freespace_samples, fc.freespace_step)
    f32 = dict(dtype=torch.float32, device=device)
    target = torch.as_tensor(views.target, **f32)
    return FitBatch(ray_o=torch.as_tensor(views.ray_o, **f32), ray_d=torch.as_tensor(views.ray_d, **f32),
                    target=target, valid=torch.as_tensor(views.valid, **f32),
                    pts=torch.as_tensor(pts, **f32), w=torch.as_tensor(w, **f32),
                    fs=torch.as_tensor(fs, **f32),
                    ground=None if ground is None else torch.as_tensor(np.stack(
                        [ground.coef + [0.0, 0.0, getattr(o, 'ground_offset', 0.0)] for o in objects]),
                        **f32),
                    has_mask=(target.sum(-1) > 0.5))
