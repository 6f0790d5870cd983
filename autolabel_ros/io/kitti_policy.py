"""Which labels a KITTI ``label_2`` file of predictions holds: the one output policy of
``autolabel-kitti`` and ``autolabel-bag``.

Every fitted label is written, rejected ones included, with its confidence (the verification mask
IoU) in the 16th (score) column; a rejected label's score is halved, so it ranks below every
accepted one in an AP evaluation and still counts for recall. Accepted labels score at least
``verify.min_mask_iou`` (0.7 by default) and rejected ones at most 0.5, so ``score > 0.5`` keeps the
accepted ones. A label without a finite centre (its prompt box was empty after clipping to the
image) is not written.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from autolabel_ros.core.types import Label3D

REJECTED_SCORE_FACTOR = 0.5


def kitti_predictions(labels) -> list[Label3D]:
    """Copies of the labels to write, in order, with the policy's scores (clipped to [0, 1])."""
    out = []
    for lab in labels:
        if not np.all(np.isfinite(lab.center)):
            continue
        score = lab.score if lab.accepted else lab.score * REJECTED_SCORE_FACTOR
        out.append(replace(lab, score=float(np.clip(score, 0.0, 1.0))))
    return out
