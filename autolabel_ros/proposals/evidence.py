"""What the LiDAR says about a box prompt, whoever proposed it.

The image-space fusion (:mod:`autolabel_ros.proposals.fusion`) merges boxes that overlap enough, but a
tile's half of a car, a detection cut short and a LiDAR box of the same car often overlap too little
for that and survive as several prompts of one car. In 3D they are plain: they cover the same
cluster. Each box prompt is given the cluster with points in its box whose own 2D box agrees best
with it (its *owner*); prompts that share an owner and overlap in the image are one object and merge
into the one agreeing best with the owner's box. A box with almost no returns in it cannot be
fitted (the verification rejects objects with fewer than ``verify.min_points`` points) and is no
prompt either.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from autolabel_ros.core.types import Prompt
from autolabel_ros.proposals.fusion import iou_matrix
from autolabel_ros.core.types import SensorFrame
from autolabel_ros.proposals.lidar import LidarScene, in_box, proposal_box


def cluster_boxes(frame: SensorFrame, scene: LidarScene, cfg) -> np.ndarray:
    """K x 4 2D boxes of every cluster of the scene, as a LiDAR proposal's (:func:`proposal_box`); NaN
    where a cluster has none. ``cfg``: proposals section."""
    out = np.full((len(scene.clusters), 4), np.nan)
    for k, idx in enumerate(scene.clusters):
        b = proposal_box(frame, scene.ground, scene.xyz[idx], scene.uv[idx], cfg)
        if b is not None:
            out[k] = b
    return out


def box_owners(scene: LidarScene, cboxes: np.ndarray, boxes: Sequence, min_iou: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per x1y1x2y2 box: its owner cluster (-1 for none), the IoU of the box with the owner's box and the
    number of non-ground returns in the box. The owner is the cluster with points in the box whose own
    2D box agrees best with it (at least ``min_iou``): a near car covers much of the box of a car
    behind it, but its own box is far larger."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    owner, agree = -np.ones(len(boxes), np.int64), np.zeros(len(boxes))
    n = np.array([int(in_box(scene.solid_uv, b).sum()) for b in boxes], np.int64)
    ok = np.all(np.isfinite(cboxes), axis=1)
    if not len(boxes) or not ok.any():
        return owner, agree, n
    iou = iou_matrix(boxes, np.where(ok[:, None], cboxes, 0.0))[0]
    iou[:, ~ok] = 0.0
    for i, b in enumerate(boxes):
        seen = np.unique(scene.label[in_box(scene.uv, b)])
        seen = seen[seen >= 0]
        if len(seen):
            k = seen[np.argmax(iou[i, seen])]
            if iou[i, k] >= min_iou:
                owner[i], agree[i] = k, iou[i, k]
    return owner, agree, n


def sliver(box, min_aspect: float, width: float, edge: float = 2.0) -> bool:
    """A box narrower than ``min_aspect`` times its height that touches neither side of the image
    (``width`` px): a car is about as wide as high even end-on, and KITTI boxes a hidden car whole, so
    such a box is a pole, a person or a cut piece of a car (the LiDAR cluster of a door, a weak
    detection of it). A car cut by the image border is exempt."""
    if min_aspect <= 0:
        return False
    at_edge = box[0] <= edge or box[2] >= width - edge
    return bool(box[2] - box[0] < min_aspect * (box[3] - box[1]) and not at_edge)


def merge_same_cluster(prompts: Sequence[Prompt], owners: Sequence[int], min_overlap: float,
                       fit: Sequence[float] | None = None, depths: Sequence[float] | None = None,
                       nms_iou: float = 1.1, depth_gap: float = 0.0) -> list[Prompt]:
    """One prompt per object. Two box prompts are one object when they share an owner cluster and their
    boxes overlap by ``min_overlap`` (intersection over the smaller box), or when their boxes overlap by
    ``nms_iou`` (IoU) and their owners lie within ``depth_gap`` m of each other (``depths``: the owners'
    camera depths, NaN without an owner; a far car seen between the pillars of a near one is kept: a
    car at long range often falls apart into several clusters, its boxes coincide). The best of an
    object stays, with the sources of all of them: the highest ``fit`` (agreement of the box with its
    cluster's, when given), then the highest score. Order: as given."""
    n = len(prompts)
    fit = np.zeros(n) if fit is None else np.asarray(fit, float)
    depths = np.full(n, np.nan) if depths is None else np.asarray(depths, float)
    owners = np.asarray(owners, np.int64)
    if n == 0:
        return []
    boxes = np.array([p.box for p in prompts])
    iou, contain, _ = iou_matrix(boxes, boxes)
    near = np.abs(depths[:, None] - depths[None, :]) <= depth_gap
    near |= np.isnan(depths)[:, None] | np.isnan(depths)[None, :]
    same = (owners[:, None] == owners[None, :]) & (owners[:, None] >= 0) & (contain >= min_overlap)
    same |= (iou >= nms_iou) & near
    order = sorted(range(n), key=lambda i: (-fit[i], -prompts[i].score))
    kept: list[int] = []
    merged: dict[int, list[str]] = {}
    for i in order:
        hit = [k for k in kept if same[i, k]]
        if hit:
            k = max(hit, key=lambda k: contain[i, k])
            merged.setdefault(k, list(prompts[k].sources))
            merged[k] += [s for s in prompts[i].sources if s not in merged[k]]
            continue
        kept.append(i)
    out = []
    for i in sorted(kept):
        p = prompts[i]
        out.append(Prompt(id=p.id, box=p.box, cls=p.cls, score=p.score,
                          sources=tuple(merged.get(i, p.sources))))
    return out
