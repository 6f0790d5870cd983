"""Which labels a KITTI ``label_2`` file of predictions holds: the one output policy of
``autolabel-kitti`` and ``autolabel-bag``.

Every fitted label is written, rejected ones included, with its score (``Label3D.score``) in the 16th
column: the mean of two calibrated probabilities, P(right) (IoU3D >= 0.5, heading not flipped) and
P(tight) (IoU3D >= 0.7, not flipped) (fit/verify.py label_score) = the expected share of the two KITTI
IoU thresholds the label passes, so an AP evaluation at either threshold ranks labels by how likely they
pass it. A label is accepted when P(right) >= ``verify.min_confidence``, so an accepted label scores at
least half of it; a rejected label (by the model, or while lifting, e.g. too few LiDAR points) is
written with its score capped just below that: ``score >= verify.min_confidence / 2`` keeps the
accepted ones. A label without a finite centre (its prompt box was empty after clipping to the image)
is not written.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from autolabel_ros.core.types import Label3D

# a rejected label's score stays below the lowest accepted score by at least this much
BELOW_THRESHOLD = 1e-3


def lowest_accepted_score(min_confidence: float) -> float:
    """The least score an accepted label can have: P(right) = ``min_confidence``, P(tight) = 0."""
    return 0.5 * float(min_confidence)


def kitti_predictions(labels, min_confidence: float = 0.7) -> list[Label3D]:
    """Copies of the labels to write, in order, with the policy's scores (in [0, 1]);
    ``min_confidence`` = the accept threshold on P(right) (``verify.min_confidence``)."""
    out = []
    for lab in labels:
        if not np.all(np.isfinite(lab.center)):
            continue
        score = float(np.clip(lab.score, 0.0, 1.0))
        if not lab.accepted:
            score = min(score, max(lowest_accepted_score(min_confidence) - BELOW_THRESHOLD, 0.0))
        out.append(replace(lab, score=score))
    return out
