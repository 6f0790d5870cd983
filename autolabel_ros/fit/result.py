"""From a fitted (pose, code) to the label: watertight mesh, its tight box, verification verdict."""
from __future__ import annotations

import numpy as np
import torch

from autolabel_ros.core.geometry import rot_z
from autolabel_ros.core.types import Label3D, Mesh
from autolabel_ros.fit.lift import ObjectEvidence
from autolabel_ros.fit.optimize import ObjectFit
from autolabel_ros.fit.verify import (accept_features, hypothesis_agreement, inside_share, label_score,
                                     occluded_share, point_cover, points_outside_box, right_probability,
                                     see_through, surface_ratio, tight_probability)
from autolabel_ros.shape.mesh import sdf_to_mesh


def canonical_mesh(sdf_grid: np.ndarray, extent: np.ndarray, scales=None) -> Mesh | None:
    """Mesh (canonical frame, metres, outward faces) of an [iz, iy, ix] SDF grid spanning
    [-extent, extent], stretched by per-axis ``scales``; None when the shape is empty."""
    mesh = sdf_to_mesh(sdf_grid, np.asarray(extent, float))
    if len(mesh.vertices) == 0:
        return None
    if scales is not None:
        mesh = Mesh(vertices=mesh.vertices * np.asarray(scales, float), faces=mesh.faces)
    return mesh


def box_from_fit(pose: np.ndarray, mesh_c: Mesh | None, fallback_size: np.ndarray):
    """Tight box of the canonical mesh moved by pose (x, y, z, yaw): (center, size, yaw) in the LiDAR
    frame, and the mesh in the LiDAR frame."""
    x, y, z, yaw = (float(v) for v in pose)
    R = rot_z(yaw)
    t = np.array([x, y, z])
    if mesh_c is None:
        return t, np.asarray(fallback_size, float), yaw, None
    lo, hi = mesh_c.vertices.min(0), mesh_c.vertices.max(0)
    center = R @ ((lo + hi) / 2) + t
    mesh_l = Mesh(vertices=mesh_c.vertices @ R.T + t, faces=mesh_c.faces)
    return center, hi - lo, yaw, mesh_l


def make_label(prompt, ev: ObjectEvidence, f: ObjectFit, shape, cfg, scan_pts: np.ndarray) -> Label3D:
    """The Label3D of a fitted object: mesh and tight box from the full-resolution shape. The accept
    decision reads the calibrated probability that the label is right (IoU >= 0.5, not flipped;
    :func:`autolabel_ros.fit.verify.right_probability` over mask IoU, LiDAR surface agreement, fit points,
    range, heading confidence, occluded share, energy, how much of the box's length and width the fit
    points span, how decided the placement is among the fit's hypotheses, the share of scan rays that
    pass through the car's lower body; ``metrics['confidence']``):
    accepted when it reaches ``verify.min_confidence`` and lifting found no reason to reject. score = the
    mean of it and P(tight) (IoU >= 0.7, ``metrics['p_tight']``), verify.label_score.
    ``cfg``: the whole AutolabelConfig."""
    vc = cfg.verify
    scales = f.scales if cfg.fit.log_scales else None
    mesh_c = canonical_mesh(shape.decode_full(f.code), shape.arrays.extent, scales)
    size_fallback = shape.size_of(torch.as_tensor(f.code[None], dtype=torch.float32,
                                                  device=shape.device))[0].cpu().numpy()
    center, size, yaw, mesh = box_from_fit(f.pose, mesh_c, size_fallback)
    iou = float(f.terms['mask_iou_hi'])
    ratio, n_near = surface_ratio(shape, f.pose, f.code, scales, scan_pts, vc.surface_band, vc.near_distance)
    occl = occluded_share(ev.nearer, ev.box2d)
    margin = float(f.terms.get('flip_margin', np.inf))
    hlogit = float(f.terms.get('heading_logit', np.inf))
    box7 = np.concatenate([center, size, [yaw]])
    cover = point_cover(ev.init.points, box7)
    inside = inside_share(ev.init.points, box7)
    agree = hypothesis_agreement(f.pose, [(a.pose, a.energy) for a in (f.alternatives or [f])])
    through = see_through(scan_pts, box7)
    feats = accept_features(iou, ratio, len(ev.init.points), float(np.linalg.norm(center[:2])), hlogit, occl,
                            float(f.energy), *cover, *agree, terms=f.terms, see_through=through)
    conf = right_probability(feats)
    p_tight = tight_probability(feats)
    reasons = list(ev.reasons)
    if conf < vc.min_confidence:
        reasons.append('low_confidence')
        # what stands out (explains the rejection; the decision is the calibrated model's)
        if iou < vc.min_mask_iou:
            reasons.append('low_mask_iou')
        if ratio < vc.min_surface_ratio and 'no_lidar_points' not in reasons:
            reasons.append('low_surface_ratio')
    if points_outside_box(ev.init.points, box7):
        reasons.append('points_outside_box')     # a car-sized box on part of something else
    init = ev.init
    metrics = dict(confidence=conf, p_tight=p_tight, mask_iou=iou, surface_ratio=ratio, n_near_points=n_near,
                   length_cover=cover[0], width_cover=cover[1], inside_share=inside, see_through=through,
                   hyp_gap=agree[0],
                   hyp_spread=agree[1], flip_margin=margin, heading_logit=hlogit, occluded_share=occl,
                   n_points=int(len(init.points)),
                   n_frustum=int(init.n_frustum), energy=f.energy, terms=f.terms,
                   hypotheses=f.hyp_energies, hypothesis=f.hyp_index, depth=float(init.depth),
                   init_xyz=init.xyz[f.hyp_index].tolist(), init_yaw=float(init.yaw[f.hyp_index]),
                   scales=np.asarray(f.scales).tolist(),
                   alternatives=[{'pose': np.asarray(a.pose).tolist(), 'energy': a.energy,
                                  'iou': a.terms.get('mask_iou_hi'),
                                  **{k: v for k, v in a.terms.items() if k.startswith('cue_')}}
                                 for a in (f.alternatives or [f])])
    return Label3D(center=center, size=size, yaw=yaw, cls=prompt.cls, score=label_score(conf, p_tight),
                   id=prompt.id, latent=np.asarray(f.code, float), mesh=mesh, box2d=ev.box2d,
                   accepted=not reasons, reasons=reasons, metrics=metrics, sources=prompt.sources)


def unfitted_label(prompt, mean_size: np.ndarray, reason: str = 'empty_box') -> Label3D:
    """A prompt that was not fitted (its box empty after clipping, or dropped with ``reason`` by the
    prompt checks, core/prompts.py): rejected, centre not finite (writers skip)."""
    return Label3D(center=np.full(3, np.nan), size=mean_size, yaw=0.0, cls=prompt.cls, score=0.0,
                   id=prompt.id, box2d=prompt.bounding_box(), accepted=False, reasons=[reason],
                   sources=prompt.sources)
