"""Which labels a KITTI ``label_2`` file of predictions holds: the one output policy of
``autolabel-kitti`` and ``autolabel-bag``.

Every fitted label is written, rejected ones included, with its score in the 16th (score) column:
the calibrated probability that the label is right (IoU3D >= 0.5 and heading not flipped;
fit/verify.py), so an AP evaluation ranks labels by how likely they are right, and ``score >=
verify.min_confidence`` keeps the accepted ones (a label rejected while lifting, e.g. without LiDAR
points, is written with its probability capped just below that threshold). A label without a finite
centre (its prompt box was empty after clipping to the image) is not written.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from autolabel_ros.core.types import Label3D

# a rejected label's score stays below the accept threshold by at least this much
BELOW_THRESHOLD = 1e-3


def kitti_predictions(labels, min_confidence: float = 0.7) -> list[Label3D]:
    """Copies of the labels to write, in order, with the policy's scores (in [0, 1]);
    ``min_confidence`` = the accept threshold (``verify.min_confidence``)."""
    out = []
    for lab in labels:
        if not np.all(np.isfinite(lab.center)):
            continue
        score = float(np.clip(lab.score, 0.0, 1.0))
        if not lab.accepted:
            score = min(score, max(min_confidence - BELOW_THRESHOLD, 0.0))
        out.append(replace(lab, score=score))
    return out
