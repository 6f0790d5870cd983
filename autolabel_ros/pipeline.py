"""Segment, Lift and Fit: 2D prompts + image + LiDAR -> metric 3D car labels with shapes.

``Autolabeler(config).label(frame, prompts, masks=None)`` returns a :class:`LabelResult` with one
:class:`Label3D` per prompt (``id`` = prompt id, ``box2d`` = the prompt box clipped to the image; for
click prompts the box of the mask), the masks used and the step timings:

1. segment: the given masks, or the promptable segmenter (built on first use);
2. lift (:mod:`autolabel_ros.fit.lift`): ground plane, per-object frustum points, cluster, LiDAR
   occluders, initial hypotheses and occlusion maps, as typed evidence;
3. fit (:mod:`autolabel_ros.fit.fitter`): one batched optimisation over all objects x headings, the
   verification render and the heading choice;
   with ``method: hybrid | sdflabel`` the CSS network (:mod:`autolabel_ros.css`) reads each object's
   patch between lift and fit: its NOCS give a RANSAC-Procrustes initial pose (added to the
   hypotheses, or the only one for ``sdflabel``) and the front/back cue ``css`` for the heading
   choice (with ``method: slf``, ``css`` in ``fit.heading_cues`` runs the network for the cue alone;
   for the methods of ``css.cue_tiebreak``, hybrid by default, it only breaks the other cues' ties,
   and votes at ``css.hidden_vote`` on cars that nearer objects hide);
4. labels (:mod:`autolabel_ros.fit.result`): mesh + tight box, confidence = rendered-vs-mask IoU,
   accept/reject; a label on the fitted box of a nearer object that hides it is rejected
   (:func:`autolabel_ros.fit.occlusion.reject_on_nearer`).

Objects without LiDAR points are still fitted (mask + ground: a monocular guess) but rejected
with reason ``no_lidar_points``; a prompt no model can use (outside the image, over the
``max_prompts`` cap: core/prompts.py) or whose box is empty after clipping to the image gives a
rejected label with that reason (``empty_box`` for the latter) and a non-finite centre (writers skip
it), one warning line per frame, and an entry in ``LabelResult.diagnostics['dropped_prompts']``.
A call changes no process-wide state: randomness is seeded locally from ``seed``, and the torch
thread count is the entry point's (``fit.threads``, see :func:`autolabel_ros.core.device.set_torch_threads`).
"""
from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import numpy as np

from autolabel_ros.config import AutolabelConfig
from autolabel_ros.core.device import resolve_device
from autolabel_ros.core.prompts import check_prompts
from autolabel_ros.core.types import LabelResult, Prompt, SensorFrame
from autolabel_ros.fit.fitter import Fitter
from autolabel_ros.fit.init import init_object
from autolabel_ros.fit.lift import Initialiser, lift
from autolabel_ros.fit.occlusion import reject_on_nearer
from autolabel_ros.fit.render import Renderer, render_silhouettes
from autolabel_ros.fit.result import make_label, unfitted_label
from autolabel_ros.fit.sdf import SdfModel, analytic_prior

log = logging.getLogger(__name__)


def load_fit_prior(path: str = ''):
    """The configured prior (path), else the packaged default; the analytic fallback (with a warning)
    only when no default prior file is installed."""
    from autolabel_ros.shape.prior import load_prior
    if path in ('', 'default', None):
        try:
            return load_prior(None)
        except (FileNotFoundError, OSError, ValueError) as e:
            log.warning('default shape prior not available (%s); using the analytic fallback prior', e)
            return analytic_prior()
    if path == 'analytic':
        return analytic_prior()
    return load_prior(path)


def silhouette_mode(cfg) -> str:
    """fit.silhouette with auto resolved: the box segmenter's masks are the prompt rectangles, which
    the outline compositing would fill edge to edge; a union render is looser and fits them better."""
    mode = cfg.fit.silhouette
    if mode == 'auto':
        return 'union' if cfg.segmenter.model == 'box' else 'outline'
    return mode


def load_deepsdf_prior(path: str = ''):
    """The DeepSDF shape space's grids (``shape.kind: deepsdf``): ``path``, else the packaged one."""
    from autolabel_ros.shape.deepsdf import DeepSdfSpace, default_deepsdf_path
    return DeepSdfSpace.load(Path(path).expanduser() if path else default_deepsdf_path()).prior


def prior_mean_size(cfg: AutolabelConfig) -> np.ndarray:
    """(l, w, h) of the configured shape space's mean car, without building the fit (a run-level step
    after the labelling, fit/fleet.py, reads the prior's mean length)."""
    prior = (load_deepsdf_prior(cfg.shape.deepsdf) if cfg.shape.kind == 'deepsdf'
             else load_fit_prior(cfg.prior))
    return np.asarray(prior.sizes, float).mean(0)


class Autolabeler:
    """The pipeline with its parts: the shape space (``self.sdf``: ``shape``, else an SdfModel of the
    prior), the renderer and the initialiser (defaults: :func:`autolabel_ros.fit.render.render_silhouettes`,
    :func:`autolabel_ros.fit.init.init_object`) and the segmenter (``segmenter``, else built from the
    config on first use)."""

    def __init__(self, config: AutolabelConfig | None = None, prior=None, renderer: Renderer | None = None,
                 initialiser: Initialiser | None = None, shape=None, segmenter=None):
        self.cfg = config or AutolabelConfig()
        self.device = resolve_device(self.cfg.device)
        if shape is None:
            if prior is None:
                prior = (load_deepsdf_prior(self.cfg.shape.deepsdf) if self.cfg.shape.kind == 'deepsdf'
                         else load_fit_prior(self.cfg.prior))
            shape = SdfModel(prior, device=self.device, mode=self.cfg.fit.sdf_mode,
                             downsample=self.cfg.fit.sdf_downsample)
        self.sdf = shape
        self.initialiser = initialiser or init_object
        if renderer is None:
            renderer = functools.partial(render_silhouettes, mode=silhouette_mode(self.cfg))
        self.fitter = Fitter(self.sdf, self.cfg.fit, self.device, renderer,
                             ('css',) if self.cfg.method in self.cfg.css.cue_tiebreak else (),
                             self.cfg.css.hidden_vote)
        self._segmenter = segmenter      # None: built from the config on first use
        self._css = None

    @property
    def segmenter(self):
        if self._segmenter is None:
            from autolabel_ros.segment import make_segmenter
            self._segmenter = make_segmenter(self.cfg.segmenter, self.device)
        return self._segmenter

    @property
    def css(self):
        """The CSS network (methods hybrid and sdflabel, the heading cue css), loaded on first use."""
        if self._css is None:
            from autolabel_ros.css.predict import CssPredictor
            self._css = CssPredictor(self.cfg.css.weights)
        return self._css

    def label(self, frame: SensorFrame, prompts: list[Prompt], masks: list[np.ndarray] | None = None
              ) -> LabelResult:
        t0, c0 = time.perf_counter(), time.process_time()
        t = dict(segment_s=0.0, embed_s=0.0, decode_s=0.0, prep_s=0.0, css_s=0.0, fit_s=0.0, post_s=0.0,
                 total_s=0.0, cpu_s=0.0, per_instance_s=0.0, n=len(prompts))
        if masks is not None and len(masks) != len(prompts):
            raise ValueError(f'{len(masks)} masks given for {len(prompts)} prompts')
        # prompts no model can use (outside the image, over the cap): rejected labels, reason logged
        dropped = {d.index: d.reason for d in check_prompts(prompts, frame.width, frame.height,
                                                            self.cfg.max_prompts, frame.frame_id)}
        boxes = [None if i in dropped else clip_box(p, frame.width, frame.height)
                 for i, p in enumerate(prompts)]
        ts = time.perf_counter()
        segmented = masks is None and any(b is not None for b in boxes)
        masks = self._masks(frame, prompts, boxes, masks)
        t['segment_s'] = time.perf_counter() - ts if prompts else 0.0
        if segmented:       # SAM's image embedding and decoder seconds, when the segmenter reports them
            st = getattr(self._segmenter, 'timings', None) or {}
            t.update({k: float(st[k]) for k in ('embed_s', 'decode_s') if k in st})
        tp = time.perf_counter()
        evidence = lift(frame, prompts, boxes, masks, self.cfg, self.sdf.mean_size,
                        self.initialiser) if prompts else None
        t['prep_s'] = time.perf_counter() - tp
        labels = [unfitted_label(p, self.sdf.mean_size, dropped.get(i, 'empty_box'))
                  for i, p in enumerate(prompts)]
        cues = nocs = None
        if evidence is not None and evidence.objects and (self.cfg.method != 'slf'
                                                          or 'css' in self.cfg.fit.heading_cues):
            tc = time.perf_counter()
            evidence, cues, preds = self._with_css(frame, evidence)
            if self.cfg.method in self.cfg.css.nocs_loss:
                nocs = preds
            t['css_s'] = time.perf_counter() - tc
            t['prep_s'] += t['css_s']
        if evidence is not None and evidence.objects:
            # nocs only when the surfel losses run: hooks that wrap fit(frame, evidence, cues) still work
            fits, ft = (self.fitter.fit(frame, evidence, cues) if nocs is None
                        else self.fitter.fit(frame, evidence, cues, nocs))
            t['prep_s'] += ft.prep_s
            t['fit_s'] = ft.fit_s
            tq = time.perf_counter()
            for ev, f in zip(evidence.objects, fits):
                scan = evidence.scan_nonground
                labels[ev.index] = make_label(prompts[ev.index], ev, f, self.sdf, self.cfg, scan)
                masks[ev.index] = ev.mask
            reject_on_nearer(labels, evidence.objects)
            t['post_s'] = time.perf_counter() - tq
            # the CSS forward pass and Procrustes (methods hybrid, sdflabel) count as per-instance work
            t['per_instance_s'] = (t['fit_s'] + t['post_s'] + t['css_s']) / len(evidence.objects)
        t['total_s'] = time.perf_counter() - t0
        t['cpu_s'] = time.process_time() - c0      # all threads of the process: the load-robust number
        diagnostics = {'dropped_prompts': [{'index': i, 'id': int(prompts[i].id), 'reason': r}
                                           for i, r in sorted(dropped.items())]}
        return LabelResult(labels=labels, masks=masks, timings=t, diagnostics=diagnostics)

    def _with_css(self, frame, evidence):
        from autolabel_ros.css.hypotheses import css_evidence
        preds = self.css.predict(frame.image, [o.mask for o in evidence.objects])
        ev, cues, _ = css_evidence(evidence, frame, preds, self.cfg.method, self.cfg.seed,
                                   self.cfg.css.ransac_iters, self.cfg.css.inlier_m,
                                   self.cfg.css.procrustes_handicap, self.cfg.css.procrustes_min_offset)
        return ev, cues, preds

    def _masks(self, frame, prompts, boxes, given) -> list:
        """Per prompt the H x W bool mask (None where the clipped box is empty or SAM gave none)."""
        H, W = frame.height, frame.width
        if given is not None:
            out = [None if m is None else np.asarray(m).astype(bool) for m in given]
            for m in out:
                if m is not None and m.shape != (H, W):
                    raise ValueError(f'mask shape {m.shape} does not match the image ({H}, {W})')
            return out
        out = [None] * len(prompts)
        ok = [i for i, b in enumerate(boxes) if b is not None]
        if ok:
            mk, _ = self.segmenter.segment(frame.image, [clipped_prompt(prompts[i], boxes[i]) for i in ok])
            for i, m in zip(ok, mk):
                out[i] = np.asarray(m, bool)
        return out


def clip_box(p: Prompt, width: int, height: int) -> np.ndarray | None:
    """The prompt's box clipped to the image, None when less than a pixel is left."""
    b = np.clip(p.bounding_box().astype(np.float64), 0, [width, height, width, height])
    return b if (b[2] - b[0] >= 1 and b[3] - b[1] >= 1) else None


def clipped_prompt(p: Prompt, box: np.ndarray) -> Prompt:
    if p.box is None:
        return p
    return Prompt(id=p.id, box=box, points=p.points, point_labels=p.point_labels, cls=p.cls, score=p.score,
                  sources=p.sources)
