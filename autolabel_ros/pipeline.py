"""Segment, Lift and Fit: 2D prompts + image + LiDAR -> metric 3D car labels with shapes.

``Autolabeler(config).label(frame, prompts, masks=None)`` returns one :class:`Label3D` per prompt
(``id`` = prompt id, ``box2d`` = the prompt box clipped to the image; for click prompts the box
of the mask). Steps:

1. masks: the given ones, or the promptable segmenter (built on first use);
2. ground plane by RANSAC; frustum points of every mask (ground and off-object clusters removed);
3. occlusion order by median LiDAR depth; per object crop, rays, target and occlusion maps (the
   masks of nearer objects and the pixels of LiDAR returns in front of the object: poles, cyclists);
4. one batched fit over all objects x heading hypotheses (:mod:`autolabel_ros.fit.optimize`);
5. mesh + tight box from the fitted code, confidence = rendered-vs-mask IoU, verification flags.

Objects without LiDAR points are still fitted (mask + ground: a monocular guess) but rejected
with reason ``no_lidar_points``; a prompt no model can use (outside the image, over the
``max_prompts`` cap: core/prompts.py) gives a rejected label with that reason and a non-finite
centre (writers skip it), and one warning line per frame.
"""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import torch

from autolabel_ros.config import AutolabelConfig
from autolabel_ros.core.device import resolve_device
from autolabel_ros.core.geometry import project, transform_points
from autolabel_ros.core.prompts import check_prompts
from autolabel_ros.core.types import Label3D, Prompt, SensorFrame
from autolabel_ros.fit.energies import FitBatch
from autolabel_ros.fit.ground import fit_ground
from autolabel_ros.fit.heading import lamp_cue, redness
from autolabel_ros.fit.init import init_object, mask_points, select_cluster
from autolabel_ros.fit.optimize import optimize
from autolabel_ros.fit.render import camera_rays, crop_box, crop_pixels, crop_resample
from autolabel_ros.fit.result import box_from_fit, canonical_mesh
from autolabel_ros.fit.sdf import SdfModel, analytic_prior
from autolabel_ros.fit.verify import mask_ious, surface_ratio

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


class Autolabeler:
    def __init__(self, config: AutolabelConfig | None = None, prior=None):
        self.cfg = config or AutolabelConfig()
        self.device = resolve_device(self.cfg.device)
        prior = prior if prior is not None else load_fit_prior(self.cfg.prior)
        self.sdf = SdfModel(prior, device=self.device, mode=self.cfg.fit.sdf_mode,
                            downsample=self.cfg.fit.sdf_downsample)
        self._segmenter = None
        self.timings: dict = {}
        self.last_masks: list = []

    @property
    def segmenter(self):
        if self._segmenter is None:
            from autolabel_ros.segment import make_segmenter
            self._segmenter = make_segmenter(self.cfg.segmenter, self.device)
        return self._segmenter

    # ------------------------------------------------------------------------------------------
    def label(self, frame: SensorFrame, prompts: list[Prompt], masks: list[np.ndarray] | None = None
              ) -> list[Label3D]:
        t0 = time.perf_counter()
        cfg, fc = self.cfg, self.cfg.fit
        self.timings = {'segment_s': 0.0, 'prep_s': 0.0, 'fit_s': 0.0, 'post_s': 0.0, 'total_s': 0.0,
                        'per_instance_s': 0.0, 'n': len(prompts)}
        if not prompts:
            self.timings['total_s'] = time.perf_counter() - t0
            return []
        if masks is not None and len(masks) != len(prompts):
            raise ValueError(f'{len(masks)} masks given for {len(prompts)} prompts')
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        W, H = frame.width, frame.height
        # prompts no model can use (outside the image, over the cap): rejected labels, reason logged
        dropped = {d.index: d.reason for d in check_prompts(prompts, W, H, cfg.max_prompts, frame.frame_id)}
        boxes = []
        for i, p in enumerate(prompts):
            b = np.clip(p.bounding_box().astype(np.float64), 0, [W, H, W, H])
            boxes.append(b if (i not in dropped and b[2] - b[0] >= 1 and b[3] - b[1] >= 1) else None)
        ok = [i for i, b in enumerate(boxes) if b is not None]

        # 1. masks
        if masks is None:
            ts = time.perf_counter()
            full = [None] * len(prompts)
            if ok:
                seg_prompts = [_clipped_prompt(prompts[i], boxes[i]) for i in ok]
                mk, _ = self.segmenter.segment(frame.image, seg_prompts)
                for i, m in zip(ok, mk):
                    full[i] = np.asarray(m, bool)
            masks = full
            self.timings['segment_s'] = time.perf_counter() - ts
        else:
            masks = [None if m is None else np.asarray(m).astype(bool) for m in masks]
            for m in masks:
                if m is not None and m.shape != (H, W):
                    raise ValueError(f'mask shape {m.shape} does not match the image ({H}, {W})')

        self.last_masks = masks     # full-image instance masks of the last call (for figures, debugging)
        tp = time.perf_counter()
        # 2. ground and point projection
        xyz = frame.xyz.astype(np.float64)
        ground = fit_ground(xyz, cfg.ground, rng)
        pc = transform_points(frame.T_cam_lidar, xyz)
        uv, z = project(frame.K, pc)
        valid = (z > 0.5) & np.all(np.isfinite(uv), axis=1)
        uv_int = np.zeros((len(xyz), 2), np.int64)
        uv_int[valid] = np.floor(uv[valid]).astype(np.int64)
        valid &= (uv_int[:, 0] >= 0) & (uv_int[:, 0] < W) & (uv_int[:, 1] >= 0) & (uv_int[:, 1] < H)
        nonground = np.ones(len(xyz), bool) if ground is None else \
            ground.height_above(xyz) > cfg.ground.removal_height
        mean_size = self.sdf.mean_size

        objs = []          # per fitted object: dict
        reasons = {i: [] for i in range(len(prompts))}
        for i in ok:
            m = masks[i]
            if m is None or not m.any():
                reasons[i].append('empty_mask')
                m = np.zeros((H, W), bool)
                x1, y1, x2, y2 = boxes[i].astype(int)
                m[y1:y2, x1:x2] = True
                masks[i] = m
            idx = mask_points(uv_int, valid & nonground, m, fc.mask_erode_px)
            if len(idx) < 3 and fc.mask_erode_px > 0:
                idx = mask_points(uv_int, valid & nonground, m, 0)
            n_frustum = len(idx)
            b = boxes[i]
            if prompts[i].box is None and 'empty_mask' not in reasons[i]:
                # click prompts: the clicks' bounding box says nothing about the car's extent, the mask does
                b = boxes[i] = self._box_of({'mask': m})
            centre_px = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]])
            o, dc = camera_rays(frame.K, frame.T_cam_lidar, centre_px)
            # depth implied by the box height for a mean-height car (for cluster choice and no-point init);
            # a box cut by the image border or an occluder says little, so it is only used when the
            # box is away from the image border
            fy = frame.K[1, 1]
            box_depth = float(np.clip(fy * mean_size[2] / max(b[3] - b[1], 1.0), 2.0, 150.0))
            at_border = b[0] <= 2 or b[1] <= 2 or b[2] >= W - 2 or b[3] >= H - 2
            keep = select_cluster(xyz[idx], pc[idx, 2], fc.cluster_radius, None if at_border else box_depth)
            idx = idx[keep]
            near_depth = float(pc[idx, 2].min()) if len(idx) else None
            pts = xyz[idx]
            if len(pts) > fc.max_points:
                # seeded per prompt id: an object's subset does not depend on the other prompts
                sub = np.random.default_rng([cfg.seed, int(prompts[i].id) & 0xFFFFFFFF])
                sel = np.sort(sub.choice(len(pts), fc.max_points, replace=False))
                pts, idx = pts[sel], idx[sel]
            if n_frustum == 0 or len(pts) == 0:
                reasons[i].append('no_lidar_points')
            elif len(pts) < cfg.verify.min_points:
                reasons[i].append('too_few_points')
            depth = float(np.median(pc[idx, 2])) if len(idx) else box_depth
            init = init_object(pts, n_frustum, depth, ground, mean_size, max(1, fc.yaw_hypotheses),
                               box_center_ray=dc[0], cam_origin=o, box_depth=box_depth)
            ob = dict(i=i, init=init, mask=m)
            if fc.lidar_occluders and near_depth is not None:
                ob['occluders'] = self._lidar_occluders(uv, pc[:, 2], valid & nonground, m, near_depth,
                                                        (H, W))
            objs.append(ob)

        labels: list[Label3D | None] = [None] * len(prompts)
        if objs:
            fits, extra = self._fit(frame, objs, ground, rng)
            self.timings['prep_s'] = extra['prep_s']
            self.timings['fit_s'] = extra['fit_s']
            tq = time.perf_counter()
            for k, (o, f) in enumerate(zip(objs, fits)):
                labels[o['i']] = self._make_label(prompts[o['i']], boxes[o['i']], o, f, extra, k,
                                                  xyz[nonground], reasons[o['i']])
            self.timings['post_s'] = time.perf_counter() - tq
        else:
            self.timings['prep_s'] = time.perf_counter() - tp
        for i, p in enumerate(prompts):
            if labels[i] is None:
                labels[i] = Label3D(center=np.full(3, np.nan), size=mean_size, yaw=0.0, cls=p.cls, score=0.0,
                                    id=p.id, box2d=p.bounding_box(), accepted=False,
                                    reasons=[dropped.get(i, 'empty_box')])
        self.timings['total_s'] = time.perf_counter() - t0
        n_fit = max(len(objs), 1)
        self.timings['per_instance_s'] = (self.timings['fit_s'] + self.timings['post_s']) / n_fit
        return labels

    # ------------------------------------------------------------------------------------------
    def _fit(self, frame, objs, ground, rng):
        fc = self.cfg.fit
        dev = self.device
        ts = time.perf_counter()
        H, W = frame.height, frame.width
        N = len(objs)
        S = fc.crop_size
        order = np.argsort([o['init'].depth for o in objs], kind='stable')
        rank = np.empty(N, int)
        rank[order] = np.arange(N)
        crops, rays_d, targets, valids = [], [], [], []
        for k, o in enumerate(objs):
            nearer = np.zeros((H, W), bool)
            for j, q in enumerate(objs):
                if j != k and rank[j] < rank[k]:
                    nearer |= q['mask']
            if 'occluders' in o:
                nearer |= o['occluders']
            b = self._box_of(o)
            crop = crop_box(b, W, H, fc.box_padding)
            crops.append(crop)
            origin, d = camera_rays(frame.K, frame.T_cam_lidar, crop_pixels(crop, S))
            rays_d.append(d)
            targets.append(crop_resample(o['mask'], crop, S, (H, W)).ravel())
            inside = crop_resample(None, crop, S, (H, W))
            occl = crop_resample(nearer, crop, S, (H, W))
            valids.append((inside * (1.0 - occl)).ravel())
            o['nearer'] = nearer
        M = max(1, max(len(o['init'].points) for o in objs))
        Kf = fc.freespace_samples
        pts = np.zeros((N, M, 3))
        w = np.zeros((N, M))
        for k, o in enumerate(objs):
            p = o['init'].points
            pts[k, :len(p)] = p
            w[k, :len(p)] = 1.0
        # free-space samples: on the LiDAR ray of each point (sensor at the LiDAR origin), in front of it
        rng_ = np.linalg.norm(pts, axis=-1, keepdims=True).clip(1e-3)
        steps = fc.freespace_step * np.arange(1, Kf + 1)
        fs = pts[:, :, None, :] * (1.0 - steps[None, None, :, None] / rng_[:, :, None, :]).clip(0.0)
        f32 = dict(dtype=torch.float32, device=dev)
        target = torch.as_tensor(np.stack(targets), **f32)
        batch = FitBatch(ray_o=torch.as_tensor(origin, **f32), ray_d=torch.as_tensor(np.stack(rays_d), **f32),
                         target=target, valid=torch.as_tensor(np.stack(valids), **f32),
                         pts=torch.as_tensor(pts, **f32), w=torch.as_tensor(w, **f32),
                         fs=torch.as_tensor(fs, **f32),
                         ground=None if ground is None else torch.as_tensor(ground.coef, **f32),
                         has_mask=(target.sum(-1) > 0.5))
        init_xyz = np.concatenate([o['init'].xyz for o in objs])
        init_yaw = np.concatenate([o['init'].yaw for o in objs])
        obj = np.concatenate([np.full(len(o['init'].yaw), k) for k, o in enumerate(objs)])
        prep_s = time.perf_counter() - ts
        tf = time.perf_counter()
        fits = optimize(self.sdf, batch, init_xyz, init_yaw, obj, fc, dev)
        # confidence: hard render at a finer crop vs the mask, on unoccluded pixels; computed for every
        # surviving hypothesis, it also takes part in the final choice between them
        Sf = fc.final_crop_size
        rd, tg, vd = [], [], []
        for k, o in enumerate(objs):
            _, d = camera_rays(frame.K, frame.T_cam_lidar, crop_pixels(crops[k], Sf))
            rd.append(d)
            tg.append(crop_resample(o['mask'], crops[k], Sf, (H, W)).ravel())
            inside = crop_resample(None, crops[k], Sf, (H, W))
            vd.append((inside * (1.0 - crop_resample(o['nearer'], crops[k], Sf, (H, W)))).ravel())
        alts = [(k, a) for k, f in enumerate(fits) for a in (f.alternatives or [f])]
        ak = np.array([k for k, _ in alts])
        pose = torch.as_tensor(np.stack([a.pose for _, a in alts]), **f32)
        codes = torch.as_tensor(np.stack([a.code for _, a in alts]), **f32)
        scales = torch.as_tensor(np.stack([a.scales for _, a in alts]), **f32) if fc.log_scales else None
        ious = mask_ious(self.sdf, pose, codes, scales, batch.ray_o, torch.as_tensor(np.stack(rd)[ak], **f32),
                         np.stack(tg)[ak], np.stack(vd)[ak])
        for (_, a), iou in zip(alts, ious):
            a.terms['mask_iou_hi'] = float(iou)
        fits = self._choose_heading(frame, objs, fits)
        fit_s = time.perf_counter() - tf
        return fits, dict(prep_s=prep_s, fit_s=fit_s, ious=np.array([f.terms['mask_iou_hi'] for f in fits]))

    def _choose_heading(self, frame, objs, fits):
        """Re-rank each object's surviving hypotheses: final energy + ``w_lamps`` x lamp-colour cue
        (fit/heading.py) + ``w_select_iou`` x (1 - mask IoU of the finer hard render)."""
        fc = self.cfg.fit
        red = redness(frame.image) if fc.w_lamps > 0 else None
        out = []
        for o, f in zip(objs, fits):
            alts = f.alternatives or [f]
            if len(alts) < 2:
                out.append(f)
                continue
            # the paint's redness: upper quartile of the mask (glass and tyres are darker, lamps small)
            base = float(np.percentile(red[o['mask']], 75)) if red is not None and o['mask'].any() else 0.0
            scores = []
            for a in alts:
                size = self.sdf.size_of(torch.as_tensor(a.code[None], dtype=torch.float32,
                                                        device=self.device))[0].cpu().numpy()
                t = lamp_cue(a.pose, size, frame, o['mask'], red, base) if red is not None else 0.0
                a.terms['lamps'] = t
                scores.append(a.energy + fc.w_lamps * t + fc.w_select_iou * (1 - a.terms['mask_iou_hi']))
            best = alts[int(np.argmin(scores))]
            best.alternatives = alts
            out.append(best)
        return out

    def _lidar_occluders(self, uv, depth, ok, mask, near_depth, shape):
        """Full-image bool map of the pixels covered by LiDAR returns in front of an object (nearer than
        its nearest clustered point by ``occluder_margin``) around its mask: a pole, cyclist or bush
        there hides part of the car, so the silhouette term must not ask the render to explain it."""
        fc = self.cfg.fit
        H, W = shape
        ys, xs = np.nonzero(mask)
        r = int(fc.occluder_radius_px)
        pad = 0.1 * max(xs.max() - xs.min(), ys.max() - ys.min()) + r
        box = (xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad)
        sel = ok & (depth < near_depth - fc.occluder_margin) & (uv[:, 0] >= box[0]) & (uv[:, 0] <= box[2]) \
            & (uv[:, 1] >= box[1]) & (uv[:, 1] <= box[3])
        occ = np.zeros((H, W), np.uint8)
        if sel.any():
            u = np.clip(uv[sel, 0].astype(int), 0, W - 1)
            v = np.clip(uv[sel, 1].astype(int), 0, H - 1)
            occ[v, u] = 1
            occ = cv2.dilate(occ, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        return occ.astype(bool)

    @staticmethod
    def _box_of(o):
        m = o['mask']
        ys, xs = np.nonzero(m)
        return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)

    def _make_label(self, prompt, box, o, f, extra, k, scan_pts, reasons) -> Label3D:
        cfg, vc = self.cfg, self.cfg.verify
        scales = f.scales if cfg.fit.log_scales else None
        grid = self.sdf.decode_full(f.code)
        mesh_c = canonical_mesh(grid, self.sdf.arrays.extent, scales)
        size_fallback = self.sdf.size_of(torch.as_tensor(f.code[None], dtype=torch.float32,
                                                         device=self.device))[0].cpu().numpy()
        center, size, yaw, mesh = box_from_fit(f.pose, mesh_c, size_fallback)
        iou = float(extra['ious'][k])
        ratio, n_near = surface_ratio(self.sdf, f.pose, f.code, scales, scan_pts, vc.surface_band,
                                      vc.near_distance)
        reasons = list(reasons)
        if iou < vc.min_mask_iou:
            reasons.append('low_mask_iou')
        if ratio < vc.min_surface_ratio and 'no_lidar_points' not in reasons:
            reasons.append('low_surface_ratio')
        init = o['init']
        metrics = dict(mask_iou=iou, surface_ratio=ratio, n_near_points=n_near,
                       n_points=int(len(init.points)),
                       n_frustum=int(init.n_frustum), energy=f.energy, terms=f.terms,
                       hypotheses=f.hyp_energies, hypothesis=f.hyp_index, depth=float(init.depth),
                       init_xyz=init.xyz[f.hyp_index].tolist(), init_yaw=float(init.yaw[f.hyp_index]),
                       scales=np.asarray(f.scales).tolist(),
                       alternatives=[{'pose': np.asarray(a.pose).tolist(), 'energy': a.energy,
                                      'lamps': a.terms.get('lamps', 0.0), 'iou': a.terms.get('mask_iou_hi')}
                                     for a in (f.alternatives or [f])])
        return Label3D(center=center, size=size, yaw=yaw, cls=prompt.cls, score=iou, id=prompt.id,
                       latent=np.asarray(f.code, float), mesh=mesh, box2d=box, accepted=not reasons,
                       reasons=reasons, metrics=metrics)


def _clipped_prompt(p: Prompt, box: np.ndarray) -> Prompt:
    if p.box is None:
        return p
    return Prompt(id=p.id, box=box, points=p.points, point_labels=p.point_labels, cls=p.cls, score=p.score)
