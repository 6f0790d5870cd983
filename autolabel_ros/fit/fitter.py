"""The fit of one frame's objects: evidence in, one typed :class:`ObjectFit` per object out.

:meth:`Fitter.fit` runs the whole problem in three steps:

1. optimise: one batched Adam run over all objects x heading hypotheses
   (:func:`autolabel_ros.fit.optimize.optimize`) on the crops of ``fit.crop_size``;
2. verify: every surviving hypothesis is hard-rendered on finer crops (``fit.final_crop_size``, the
   same crop builder and ray sampler) and scored by mask IoU on the unoccluded pixels;
3. choose the heading: final energy + ``w_select_iou`` x (1 - that IoU) + the weighted front/back
   cues of ``fit.heading_cues`` (:mod:`autolabel_ros.fit.heading`: lamp colours, the LiDAR shape
   asymmetry, the look of the visible end, the mean shape's image box against the 2D box, neighbouring
   cars) and, when the caller gives per-object
   ``cues`` (the CSS network's front/back cue, :mod:`autolabel_ros.css.cue`), the cue ``css`` with
   weight ``fit.w_css``.

Swappable parts: the shape space (``shape``: an :class:`autolabel_ros.fit.sdf.SdfModel` or anything
with its query/sample/fold/size interface), the renderer (:class:`autolabel_ros.fit.render.Renderer`)
and the initialiser (used by :func:`autolabel_ros.fit.lift.lift`).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from autolabel_ros.fit.batch import build_batch, crop_views, object_crops
from autolabel_ros.fit.end_look import end_look_cues
from autolabel_ros.fit.heading import (HEADING_CUES, PAINT_PERCENTILE, amodal_box_scores, camera_centre,
                                      choose, colour_cues, hidden_gate, mean_box_cues, mean_shape_residuals,
                                      profile_cue, redness, whiteness)
from autolabel_ros.fit.lift import FrameEvidence
from autolabel_ros.fit.optimize import ObjectFit, optimize
from autolabel_ros.fit.render import Renderer, render_silhouettes
from autolabel_ros.fit.surfels import nocs_targets, surface_seeds
from autolabel_ros.core.stage_clock import StageClock
from autolabel_ros.fit.verify import mask_ious, occluded_share


@dataclass
class FitTimings:
    prep_s: float = 0.0      # crops, rays and the batch
    fit_s: float = 0.0       # optimisation, verification render, heading choice
    stages: StageClock = field(default_factory=StageClock)   # where the time went (core/stage_clock.py)


class Fitter:
    def __init__(self, shape, fit_cfg, device, renderer: Renderer = render_silhouettes,
                 tiebreak_cues: tuple = (), css_hidden_vote: float = 0.0):
        self.shape = shape
        self.cfg = fit_cfg
        self.device = device
        self.renderer = renderer
        # heading cues that only break ties of the others (fit/heading.py pick): css with method hybrid
        self.tiebreak_cues = tuple(tiebreak_cues)
        # ... but on cars nearer objects hide the tie-broken css cue still votes (cue css_hidden: the css
        # value times hidden_gate, at this weight), where Segment-Lift-Fit's own cues are weak
        self.css_hidden_vote = float(css_hidden_vote) if 'css' in self.tiebreak_cues else 0.0
        self._mean_unit = None      # the prior's mean shape's mesh vertices in a unit box (mean_box cue)

    def fit(self, frame, evidence: FrameEvidence, cues: list | None = None, nocs: list | None = None
            ) -> tuple[list[ObjectFit], FitTimings]:
        """One ObjectFit per evidence object (same order); ``terms['mask_iou_hi']`` holds its
        verification IoU, ``alternatives`` every surviving hypothesis. ``cues``: per object None or a
        callable pose -> t (negative supports the hypothesis): the heading cue ``css``. ``nocs``: per
        object None or the CSS network's NocsPrediction: adds SDFLabel's surfel losses (``nocs``,
        ``surfel3d``) to the fit's energies."""
        fc, objs = self.cfg, evidence.objects
        times = FitTimings()
        if not objs:
            return [], times
        clock = times.stages
        ts = time.perf_counter()
        with clock('prep'):
            crops = object_crops(objs, frame.width, frame.height, fc.box_padding)
            views = crop_views(frame, objs, crops, fc.crop_size)
            batch = build_batch(views, objs, evidence.ground, fc, self.device)
            if nocs is not None:
                batch.nocs = nocs_targets(nocs, frame.K, frame.T_cam_lidar, self.device)
                if batch.nocs is not None:
                    extra = [e for e in ('nocs', 'surfel3d') if e not in fc.energies]
                    fc = dataclasses.replace(fc, energies=list(fc.energies) + extra)
            if {'nocs', 'surfel3d'} & set(fc.energies):
                batch.seeds = surface_seeds(self.shape)
            init_xyz = np.concatenate([o.init.xyz for o in objs])
            init_yaw = np.concatenate([o.init.yaw for o in objs])
            obj = np.concatenate([np.full(len(o.init.yaw), k) for k, o in enumerate(objs)])
            bias = [o.init.prune_bias if o.init.prune_bias is not None else np.zeros(len(o.init.yaw))
                    for o in objs]
            prune_bias = np.concatenate(bias) if any(np.any(b) for b in bias) else None
            coarse = self._coarse_batch(frame, objs, crops, batch)
        times.prep_s = time.perf_counter() - ts
        tf = time.perf_counter()
        fits = optimize(self.shape, batch, init_xyz, init_yaw, obj, fc, self.device, self.renderer, clock,
                        coarse, prune_bias, self._prune_box_score(frame, objs))
        with clock('verify'):
            self._verify(frame, objs, crops, fits, batch.ray_o)
        names = list(fc.heading_cues) + (['css'] if cues is not None and 'css' not in fc.heading_cues else [])
        if 'css' in names and self.css_hidden_vote > 0:
            names.append('css_hidden')
        with clock('heading_cues'):
            self.heading_cues(frame, objs, fits, names, cues)
            fits = choose(fits, names, self.cue_weights(), fc.w_select_iou, self.tiebreak_cues)
        times.fit_s = time.perf_counter() - tf
        return fits, times

    def _prune_box_score(self, frame, objs):
        """The pruning's amodal-box score (``fit.w_prune_box``, :func:`amodal_box_scores`) as optimize's
        ``prune_score``, or None where no object is an amodal box prompt that nearer objects hide."""
        w = self.cfg.w_prune_box
        gates = np.array([hidden_gate(occluded_share(o.nearer, o.box2d)) if o.amodal else 0.0 for o in objs])
        if w <= 0 or not np.any(gates > 0):
            return None

        def score(obj, poses, sizes):
            return w * amodal_box_scores(self.mean_unit_vertices(), obj, poses, sizes, gates,
                                         [o.box2d for o in objs], frame.K, frame.T_cam_lidar,
                                         frame.image.shape[:2])
        return score

    def _coarse_batch(self, frame, objs, crops, batch):
        """The batch at ``fit.coarse_crop_size`` for the silhouette steps before the last
        ``fit.fine_steps`` (coarse-to-fine; the LiDAR and ground tensors are shared), or None when no
        silhouette step is coarse."""
        fc = self.cfg
        if (not fc.coarse_crop_size or fc.iterations - fc.fine_steps <= fc.mask_from
                or fc.coarse_crop_size == fc.crop_size):
            return None
        v = crop_views(frame, objs, crops, fc.coarse_crop_size)
        f32 = dict(dtype=torch.float32, device=self.device)
        target = torch.as_tensor(v.target, **f32)
        return dataclasses.replace(batch, ray_d=torch.as_tensor(v.ray_d, **f32), target=target,
                                   valid=torch.as_tensor(v.valid, **f32), has_mask=target.sum(-1) > 0.5)

    def _verify(self, frame, objs, crops, fits, ray_o):
        """Hard render at the finer crop vs the mask, on unoccluded pixels, for every surviving
        hypothesis: the label's confidence, and a part of the final choice between hypotheses."""
        fc = self.cfg
        fine = crop_views(frame, objs, crops, fc.final_crop_size)
        alts = [(k, a) for k, f in enumerate(fits) for a in (f.alternatives or [f])]
        ak = np.array([k for k, _ in alts])
        f32 = dict(dtype=torch.float32, device=self.device)
        pose = torch.as_tensor(np.stack([a.pose for _, a in alts]), **f32)
        codes = torch.as_tensor(np.stack([a.code for _, a in alts]), **f32)
        scales = torch.as_tensor(np.stack([a.scales for _, a in alts]), **f32) if fc.log_scales else None
        ious = mask_ious(self.shape, pose, codes, scales, ray_o, torch.as_tensor(fine.ray_d[ak], **f32),
                         fine.target[ak], fine.valid[ak], renderer=self.renderer)
        for (_, a), iou in zip(alts, ious):
            a.terms['mask_iou_hi'] = float(iou)

    def cue_weights(self) -> dict:
        """Each heading cue's weight: the config's ``w_<cue>``."""
        return {**{c: getattr(self.cfg, f'w_{c}') for c in HEADING_CUES}, 'css_hidden': self.css_hidden_vote}

    def mean_unit_vertices(self) -> np.ndarray:
        """The prior's mean shape as mesh vertices (canonical frame) scaled into a unit box (computed
        once): the mean_box cue stretches it to each hypothesis' size."""
        if self._mean_unit is None:
            from autolabel_ros.shape.mesh import sdf_to_mesh
            grid = self.shape.decode_full(np.zeros(self.shape.arrays.basis.shape[0], np.float32))
            v = sdf_to_mesh(grid, np.asarray(self.shape.arrays.extent, float)).vertices
            self._mean_unit = v / np.maximum(v.max(0) - v.min(0), 1e-6)
        return self._mean_unit

    def cue_sizes(self, alts) -> np.ndarray:
        """(A, 3) box sizes (l, w, h) of the hypotheses: the code's size times the per-axis scales."""
        codes = torch.as_tensor(np.stack([a.code for a in alts]), dtype=torch.float32, device=self.device)
        sizes = self.shape.size_of(codes).cpu().numpy()
        return sizes * np.stack([a.scales for a in alts]) if self.cfg.log_scales else sizes

    def heading_cues(self, frame, objs, fits, cues, css_cues: list | None = None) -> None:
        """Front/back cue values of every surviving hypothesis (``terms['cue_<name>']``, 0 for a cue
        not computed): the colour cues from the image at the visible end's lamp spots, the shape cue
        from the fit points under the prior's mean shape, the shape code's own prior term. The neighbour
        cue is :func:`choose`'s; ``css_cues`` (per object a callable or None) give the cue ``css``."""
        colour = 'lamps' in cues or 'headlamps' in cues
        red = redness(frame.image) if colour else None
        white = whiteness(frame.image) if colour else None
        cam = camera_centre(frame)
        for k, (o, f) in enumerate(zip(objs, fits)):
            alts = f.alternatives or [f]
            occl = occluded_share(o.nearer, o.box2d)
            for a in alts:
                for c in HEADING_CUES:
                    a.terms[f'cue_{c}'] = 0.0
                a.terms['cue_shape_code'] = float(a.terms.get('shape', 0.0))   # the energy's own term
                a.terms['n_points'] = float(len(o.init.points))                 # the lane cue's weight
                a.terms['occluded'] = occl                                      # ... and its hidden boost
            if len(alts) < 2:
                continue
            if 'css' in cues and css_cues is not None and css_cues[k] is not None:
                for a in alts:
                    a.terms['cue_css'] = float(css_cues[k](a.pose))
            if colour and o.mask.any():
                rb = float(np.percentile(red[o.mask], PAINT_PERCENTILE['red']))
                wb = float(np.percentile(white[o.mask], PAINT_PERCENTILE['white']))
                codes = torch.as_tensor(np.stack([a.code for a in alts]), dtype=torch.float32,
                                        device=self.device)
                sizes = self.shape.size_of(codes).cpu().numpy()
                for a, size in zip(alts, sizes):
                    lamps, head = colour_cues(a.pose, size, frame, o.mask, cam, red, rb, white, wb)
                    a.terms['cue_lamps'], a.terms['cue_headlamps'] = lamps, head
            if 'mean_shape' in cues:
                scales = np.stack([a.scales for a in alts]) if self.cfg.log_scales else None
                res = mean_shape_residuals(self.shape, np.stack([a.pose for a in alts]), scales,
                                           o.init.points, self.cfg.lidar_robust)
                for a, r in zip(alts, res):
                    a.terms['cue_mean_shape'] = float(r)
            if 'profile' in cues:
                # the points the camera sees too: the profile model knows the view of the image
                # (a truncated car's scan beyond the border, fit/truncation.py, is left out)
                seen = o.init.points if o.in_image is None else o.init.points[o.in_image]
                for a, size in zip(alts, self.cue_sizes(alts)):
                    a.terms['cue_profile'] = profile_cue(seen, a.pose, size, cam)
            if 'end_look' in cues:
                vals = end_look_cues(frame.image, frame.K, frame.T_cam_lidar, cam, [a.pose for a in alts],
                                     self.cue_sizes(alts), len(o.init.points), occl, mask=o.mask)
                for a, v in zip(alts, vals):
                    a.terms['cue_end_look'] = v
            gate = hidden_gate(occl)        # the ramp of the cues that only act on hidden cars
            if 'hidden_shape' in cues:
                for a in alts:
                    a.terms['cue_hidden_shape'] = gate * a.terms['cue_shape_code']
            if 'css_hidden' in cues:
                for a in alts:
                    a.terms['cue_css_hidden'] = gate * a.terms['cue_css']
            if 'mean_box' in cues and o.amodal:      # a box of what was seen, or a mask's: no evidence
                vals = mean_box_cues(self.mean_unit_vertices(), [a.pose for a in alts], self.cue_sizes(alts),
                                     frame.K, frame.T_cam_lidar, frame.image.shape[:2], o.box2d)
                for a, v in zip(alts, vals):
                    a.terms['cue_mean_box'] = v
