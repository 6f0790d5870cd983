"""One label per car: accepted labels whose footprints overlap are the same car seen by two prompts.

Fusion merges boxes in the image, but two prompts of one car can survive it (a tile's box and the
whole image's box of a car cut by a tile, a detection and a LiDAR cluster covering only half of
the car); the fit then puts two labels on the car. In the bird's-eye view that is plain: the
footprints overlap. The best-scored label stays; the others are rejected with reason
``duplicate`` (kept in the outputs like every rejected label).
"""
from __future__ import annotations

import numpy as np
from shapely.geometry import Polygon

from autolabel_ros.core.geometry import bev_corners


def footprint_iou(a, b) -> float:
    pa, pb = Polygon(bev_corners(a.center, a.size, a.yaw)), Polygon(bev_corners(b.center, b.size, b.yaw))
    inter = pa.intersection(pb).area
    union = pa.area + pb.area - inter
    return float(inter / union) if union > 0 else 0.0


def reject_duplicates(labels: list, min_iou: float) -> int:
    """Mark, in place, every accepted label whose footprint overlaps a better-scored accepted one by
    ``min_iou`` (bird's-eye IoU) as rejected ('duplicate'); returns how many."""
    acc = [lab for lab in labels if lab.accepted and np.all(np.isfinite(lab.box7))]
    acc.sort(key=lambda lab: -lab.score)
    kept, n = [], 0
    for lab in acc:
        if any(footprint_iou(lab, k) >= min_iou for k in kept):
            lab.accepted = False
            lab.reasons = list(lab.reasons) + ['duplicate']
            n += 1
        else:
            kept.append(lab)
    return n
