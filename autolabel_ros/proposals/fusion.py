"""Fuse box prompts from several sources into one prompt per object, remembering who proposed it.

Two boxes are the same object when their IoU reaches ``merge_iou``, or when one lies almost
inside the other (intersection / smaller area >= ``merge_containment``) and they are of similar
size (smaller / larger area >= ``containment_min_ratio``: a distant car seen through the gap of a
near car's box stays its own object). Matching is greedy, best pair first.

The merged prompt keeps the box of the earlier group (the detector's), the later group's (the
LiDAR's), the union of both, or (``auto``) the LiDAR's unless its cluster is sparse, then the union
(``merged_box``): the detector's box of a far or half-hidden car is often cut short or spans two
cars, the box of a dense cluster is not; a few rings of a far car give a box cut short as well. The
highest score stays; its ``sources`` is the union. Click (point-only) prompts
pass through untouched.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from autolabel_ros.core.types import Prompt


KNOWN_SOURCES = ('detector', 'lidar')   # sources a prompt of a group may carry beside the group's


def confirmed(candidates: Sequence[Prompt], weak: Sequence[Prompt], min_iou: float,
              allowed: np.ndarray | None = None) -> list[Prompt]:
    """The candidates (LiDAR proposals) that a weak detection overlaps by ``min_iou`` (and, with
    ``allowed``, candidates x weak bool, only the allowed pairs): tagged with both sources, scored by
    the better of the two."""
    if not candidates or not weak:
        return []
    iou, _, _ = iou_matrix(np.array([p.box for p in candidates]), np.array([p.box for p in weak]))
    if allowed is not None:
        iou = np.where(allowed, iou, 0.0)
    out = []
    for i in np.flatnonzero(iou.max(1) >= min_iou):
        p, w = candidates[i], weak[int(np.argmax(iou[i]))]
        out.append(Prompt(id=p.id, box=p.box, cls=p.cls, score=max(p.score, w.score),
                          sources=tuple(dict.fromkeys(p.sources + ('detector',)))))
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IoU, intersection / smaller area, smaller / larger area) of every pair of x1y1x2y2 boxes."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    aa = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    ab = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    small, large = np.minimum(aa, ab), np.maximum(aa, ab)
    iou = inter / np.maximum(aa + ab - inter, 1e-9)
    contain = inter / np.maximum(small, 1e-9)
    return iou, contain, small / np.maximum(large, 1e-9)


def same_object(iou, contain, ratio, cfg) -> np.ndarray:
    similar = (contain >= cfg.merge_containment) & (ratio >= cfg.containment_min_ratio)
    return (iou >= cfg.merge_iou) | similar


def fuse_prompts(groups: Sequence[tuple[str, Sequence[Prompt]]], cfg, sparse: frozenset = frozenset()
                 ) -> list[Prompt]:
    """One box prompt per object from ``[(source name, prompts), ...]`` (the box of a merge: see
    ``merged_box``), then the point prompts of every group. ``cfg``: ``proposals`` config section.
    ``sparse``: ids of later-group prompts from sparse clusters (``merged_box: auto`` takes the union of
    those). Box prompts are renumbered 0..n-1 in the output order (highest score first)."""
    fused: list[dict] = []          # {'box', 'score', 'cls', 'sources'}
    points: list[Prompt] = []
    for name, prompts in groups:
        boxes = [p for p in prompts if p.box is not None]
        points += [p for p in prompts if p.box is None]
        if not boxes:
            continue
        new = np.array([p.box for p in boxes])
        taken_new = np.zeros(len(boxes), bool)
        if fused:
            old = np.array([f['box'] for f in fused])
            iou, contain, ratio = iou_matrix(old, new)
            match = same_object(iou, contain, ratio, cfg)
            # greedy: best IoU (then containment) first, each box used once
            cand = np.argwhere(match)
            order = np.lexsort((-contain[match], -iou[match]))
            taken_old = np.zeros(len(old), bool)
            for k in order:
                i, j = cand[k]
                if taken_old[i] or taken_new[j]:
                    continue
                taken_old[i] = taken_new[j] = True
                f = fused[i]
                how = getattr(cfg, 'merged_box', 'detector')
                if how == 'auto' and name == 'lidar':
                    how = 'union' if boxes[j].id in sparse else 'lidar'
                if how == 'union':
                    b = boxes[j].box
                    f['box'] = np.array([min(f['box'][0], b[0]), min(f['box'][1], b[1]),
                                         max(f['box'][2], b[2]), max(f['box'][3], b[3])])
                elif how == 'lidar' and name == 'lidar':
                    f['box'] = np.asarray(boxes[j].box, float)
                if name not in f['sources']:
                    f['sources'].append(name)
                f['score'] = max(f['score'], float(boxes[j].score))
        for j, p in enumerate(boxes):
            if not taken_new[j]:
                extra = [s for s in p.sources if s in KNOWN_SOURCES and s != name]
                fused.append({'box': np.asarray(p.box, float), 'score': float(p.score), 'cls': p.cls,
                              'sources': [name] + extra})
    fused.sort(key=lambda f: -f['score'])
    out = [Prompt(id=i, box=f['box'], cls=f['cls'], score=f['score'], sources=tuple(f['sources']))
           for i, f in enumerate(fused)]
    # clicks keep their ids (the nodes number them apart from the boxes)
    out += [Prompt(id=p.id, points=p.points, point_labels=p.point_labels, cls=p.cls, score=p.score,
                   sources=tuple(p.sources) or ('click',)) for p in points]
    return out


def source_counts(items) -> dict:
    """{source: prompts/labels it proposed (alone or with others)} plus {'a+b': proposed by exactly a
    and b} for the objects several sources saw; items without sources count as 'given'."""
    out: dict = {}
    for it in items:
        src = sorted(getattr(it, 'sources', ()) or ()) or ['given']
        keys = src + (['+'.join(src)] if len(src) > 1 else [])
        for k in keys:
            out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))
