"""CSS in the fit: RANSAC-Procrustes initial poses and the front/back cue, per object of a frame.

``css_evidence`` takes the lifted evidence and the network's predictions and returns

- the evidence with the initial hypotheses of ``method``: ``hybrid`` appends the Procrustes pose to
  the Segment-Lift-Fit headings; ``sdflabel`` makes it the only one (SDFLabel's initialisation),
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
    uv, z = project(frame.K, transform_points(frame.T_cam_lidar, pts))
    nocs, ok = pred.at_pixels(uv)
    ok &= z > 0.5
    if ok.sum() < 5:
        return None
    return ransac_similarity(nocs[ok] - 0.5, pts[ok], rng, iters=iters, inlier_m=inlier_m)


def css_evidence(evidence, frame, preds: list, method: str, seed: int = 0, iters: int = 200,
                 inlier_m: float = 0.3, handicap: float = 0.0
                 ) -> tuple[object, list[Callable | None], list[dict]]:
    """(evidence with the method's initial hypotheses, per-object cues, per-object diagnostics).
    ``handicap``: hybrid's Procrustes hypothesis enters the fit's pruning with this much more energy."""
    objs, cues, info = [], [], []
    for o, p in zip(evidence.objects, preds):
        rng = np.random.default_rng([seed, int(o.index)])
        sim = procrustes_pose(p, o.points, frame, rng, iters, inlier_m) if method != 'slf' else None
        init = o.init
        d = {'procrustes': sim is not None}
        if sim is not None:
            xyz, yaw = sim.t[None], np.array([sim.yaw])
            d.update(scale=sim.scale, inliers=int(sim.inliers.sum()))
            if method == 'sdflabel':
                init = dataclasses.replace(init, xyz=xyz, yaw=yaw)
            else:
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
