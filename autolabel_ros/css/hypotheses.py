"""CSS in the fit: RANSAC-Procrustes initial poses and the front/back cue, per object of a frame.

``css_evidence`` takes the lifted evidence and the network's predictions and returns

- the evidence with the initial hypotheses of ``method``: ``hybrid`` appends the Procrustes pose to
  the Segment-Lift-Fit headings where it is a new start: its centre at least ``min_offset`` from the
  LiDAR-lifted hypothesis of the nearest heading (closer, the two fits start from the same place, and
  which of the two near-twins wins the energy ranking is noise; docs/SDFLABEL.md, "Hybrid");
  ``sdflabel`` makes it the only one (SDFLabel's initialisation),
  keeping the usual hypotheses for an object where Procrustes finds no pose; ``slf`` keeps them
  (the network then serves only the cue);
- one cue per object for the heading choice (:func:`autolabel_ros.css.cue.css_cue`), or None.

LiDAR points of an object get the NOCS of the patch cell they project into (cells of the mask only);
those pairs go to :func:`autolabel_ros.fit.procrustes.ransac_similarity`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from autolabel_ros.core.geometry import project, transform_points
from autolabel_ros.css.cue import css_cue
from autolabel_ros.css.predict import NocsPrediction
from autolabel_ros.fit.procrustes import Similarity, ransac_similarity


def procrustes_pose(pred: NocsPrediction, pts: np.ndarray, frame, rng: np.random.Generator,
                    iters: int = 200, inlier_m: float = 0.3) -> Similarity | None:
    """The similarity NOCS -> LiDAR of one object from its kept points (M x 3, LiDAR frame)."""
    if pred is None or len(pts) < 5:
        return None
    # the points in front of the camera (a truncated car's also lie beyond the image, fit/truncation.py)
    pc = transform_points(frame.T_cam_lidar, pts)
    front = pc[:, 2] > 0.5
    pts = pts[front]
    uv, _ = project(frame.K, pc[front])
    nocs, ok = pred.at_pixels(uv)
    if ok.sum() < 5:
        return None
    return ransac_similarity(nocs[ok] - 0.5, pts[ok], rng, iters=iters, inlier_m=inlier_m)


def lift_agreement(init, sim: Similarity) -> dict:
    """How the Procrustes pose agrees with the LiDAR-lifted hypothesis of the nearest heading:
    ``dyaw`` (rad, 0..pi/4: the min-area rectangle's axes against Procrustes' yaw, mod 90 deg),
    ``dxy`` (m: horizontal distance between their centres)."""
    d = (np.asarray(init.yaw) - sim.yaw + np.pi) % (2 * np.pi) - np.pi
    k = int(np.argmin(np.abs(d)))
    q = float(np.abs((d[k] + np.pi / 4) % (np.pi / 2) - np.pi / 4))
    return {'dyaw': q, 'dxy': float(np.linalg.norm(init.xyz[k, :2] - sim.t[:2]))}


def css_evidence(evidence, frame, preds: list, method: str, seed: int = 0, iters: int = 200,
                 inlier_m: float = 0.3, handicap: float = 0.0, min_offset: float = 0.0
                 ) -> tuple[object, list[Callable | None], list[dict]]:
    """(evidence with the method's initial hypotheses, per-object cues, per-object diagnostics).
    ``handicap``: hybrid's Procrustes hypothesis enters the fit's pruning with this much more energy;
    ``min_offset`` (m): hybrid adds it only where its centre is at least this far from the lifted
    hypothesis of the nearest heading (``lift_agreement``'s ``dxy``). Diagnostics per object:
    ``procrustes`` (a pose was found), ``added`` (it became a hypothesis), its scale, inliers, pairs,
    ``dyaw``, ``dxy``, and the network's ``facing``."""
    objs, cues, info = [], [], []
    for o, p in zip(evidence.objects, preds):
        rng = np.random.default_rng([seed, int(o.index)])
        sim = procrustes_pose(p, o.points, frame, rng, iters, inlier_m) if method != 'slf' else None
        init = o.init
        d = {'procrustes': sim is not None, 'added': False}
        if sim is not None:
            xyz, yaw = sim.t[None], np.array([sim.yaw])
            d.update(scale=sim.scale, inliers=int(sim.inliers.sum()), pairs=len(sim.inliers),
                     **lift_agreement(init, sim))
            d['added'] = method == 'sdflabel' or d['dxy'] >= min_offset
            if method == 'sdflabel':
                init = dataclasses.replace(init, xyz=xyz, yaw=yaw)
            elif d['added']:
                bias = np.zeros(len(init.yaw) + 1)
                bias[-1] = handicap
                init = dataclasses.replace(init, xyz=np.vstack([init.xyz, xyz]),
                                           yaw=np.concatenate([init.yaw, yaw]),
                                           prune_bias=bias if handicap else None)
        objs.append(dataclasses.replace(o, init=init))
        if p is None:
            cues.append(None)
        else:
            f = p.facing()
            d['facing'] = f
            cues.append(lambda pose, _f=f: css_cue(pose, frame.T_cam_lidar, _f))
        info.append(d)
    return dataclasses.replace(evidence, objects=objs), cues, info
