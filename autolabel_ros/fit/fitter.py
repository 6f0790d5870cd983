"""The fit of one frame's objects: evidence in, one typed :class:`ObjectFit` per object out.

:meth:`Fitter.fit` runs the whole problem in three steps:

1. optimise: one batched Adam run over all objects x heading hypotheses
   (:func:`autolabel_ros.fit.optimize.optimize`) on the crops of ``fit.crop_size``;
2. verify: every surviving hypothesis is hard-rendered on finer crops (``fit.final_crop_size``, the
   same crop builder and ray sampler) and scored by mask IoU on the unoccluded pixels;
3. choose the heading: final energy + ``w_lamps`` x lamp cue (:mod:`autolabel_ros.fit.heading`) +
   ``w_css`` x the per-object learned cue when the caller gives one (``cues``: the CSS network's
   front/back cue, :mod:`autolabel_ros.css.cue`) + ``w_select_iou`` x (1 - that IoU).

Swappable parts: the shape space (``shape``: an :class:`autolabel_ros.fit.sdf.SdfModel` or anything
with its query/sample/fold/size interface), the renderer (:class:`autolabel_ros.fit.render.Renderer`)
and the initialiser (used by :func:`autolabel_ros.fit.lift.lift`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from autolabel_ros.fit.batch import build_batch, crop_views, object_crops
from autolabel_ros.fit.heading import lamp_cue, redness
from autolabel_ros.fit.lift import FrameEvidence
from autolabel_ros.fit.optimize import ObjectFit, optimize
from autolabel_ros.fit.render import Renderer, render_silhouettes
from autolabel_ros.fit.verify import mask_ious


@dataclass
class FitTimings:
    prep_s: float = 0.0      # crops, rays and the batch
    fit_s: float = 0.0       # optimisation, verification render, heading choice


class Fitter:
    def __init__(self, shape, fit_cfg, device, renderer: Renderer = render_silhouettes):
        self.shape = shape
        self.cfg = fit_cfg
        self.device = device
        self.renderer = renderer

    def fit(self, frame, evidence: FrameEvidence, cues: list | None = None
            ) -> tuple[list[ObjectFit], FitTimings]:
        """One ObjectFit per evidence object (same order); ``terms['mask_iou_hi']`` holds its
        verification IoU, ``alternatives`` every surviving hypothesis. ``cues``: per object None or a
        callable pose -> t (negative supports the hypothesis), weighted by ``fit.w_css``."""
        fc, objs = self.cfg, evidence.objects
        times = FitTimings()
        if not objs:
            return [], times
        ts = time.perf_counter()
        crops = object_crops(objs, frame.width, frame.height, fc.box_padding)
        views = crop_views(frame, objs, crops, fc.crop_size)
        batch = build_batch(views, objs, evidence.ground, fc, self.device)
        init_xyz = np.concatenate([o.init.xyz for o in objs])
        init_yaw = np.concatenate([o.init.yaw for o in objs])
        obj = np.concatenate([np.full(len(o.init.yaw), k) for k, o in enumerate(objs)])
        times.prep_s = time.perf_counter() - ts
        tf = time.perf_counter()
        fits = optimize(self.shape, batch, init_xyz, init_yaw, obj, fc, self.device, self.renderer)
        self._verify(frame, objs, crops, fits, batch.ray_o)
        red = redness(frame.image) if fc.w_lamps > 0 else None
        cues = cues or [None] * len(objs)
        fits = [self._choose_heading(frame, red, o, f, c) for o, f, c in zip(objs, fits, cues)]
        times.fit_s = time.perf_counter() - tf
        return fits, times

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

    def _choose_heading(self, frame, red, o, f: ObjectFit, cue=None) -> ObjectFit:
        """Re-rank an object's surviving hypotheses: final energy + ``w_lamps`` x lamp-colour cue
        + ``w_select_iou`` x (1 - mask IoU of the finer hard render)."""
        fc = self.cfg
        alts = f.alternatives or [f]
        if len(alts) < 2:
            return f
        # the paint's redness: upper quartile of the mask (glass and tyres are darker, lamps small)
        base = float(np.percentile(red[o.mask], 75)) if red is not None and o.mask.any() else 0.0
        scores = []
        for a in alts:
            size = self.shape.size_of(torch.as_tensor(a.code[None], dtype=torch.float32,
                                                      device=self.device))[0].cpu().numpy()
            t = lamp_cue(a.pose, size, frame, o.mask, red, base) if red is not None else 0.0
            a.terms['lamps'] = t
            c = float(cue(a.pose)) if cue is not None else 0.0
            a.terms['css'] = c
            scores.append(a.energy + fc.w_lamps * t + fc.w_css * c
                          + fc.w_select_iou * (1 - a.terms['mask_iou_hi']))
        best = alts[int(np.argmin(scores))]
        best.alternatives = alts
        return best
