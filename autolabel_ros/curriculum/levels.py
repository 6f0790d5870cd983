"""Difficulty levels of the curriculum (SDFLabel's rules on the 2D box of a label).

- easy: box height > 40 px, at most 10 % of the box covered by any other box of the frame, away from
  the image border (a first rule, "touching no other box", kept none of 86 accepted labels of the KITTI
  raw excerpt: the fused prompts of parked rows always touch);
- moderate: box height > 25 px, IoU < 0.3 with every other box, away from the border;
- hard: box height > 25 px, IoU < 0.5 with every other box, away from the border (more pseudo-labels
  for a later loop: the pool of a 20-frame log is small).
``others``: the boxes of the objects that can hide the label, i.e. the nearer ones (the curriculum
passes those: with every box, a fully visible car in front of a parked row overlapped the boxes
behind it and failed the easy rule, which then kept 0 of 33 verified labels of the KITTI raw
excerpt). The border rule stays at both levels (a cut car's patch shows only part of it, and its
fitted box is what the network would learn the missing part from). Border = within ``border_px`` of the edge.
The IoU rule alone lets a small box behind a large one through however much of it is hidden (IoU of a
box inside a box 3 x its size is < 0.2): on the KITTI raw excerpt 22 of the moderate level's 52 labels
were mostly hidden cars (the car behind the one ahead, whose roof and rear window alone showed; cars of
a parked row behind a van). ``max_cover`` caps the covered share (the curriculum's ``max_cover``,
default 0.5: KITTI's "partly occluded").
"""
from __future__ import annotations

import numpy as np

from autolabel_ros.core.geometry import box_iou

LEVELS = {'easy': {'min_height': 40.0, 'max_iou': 1.0, 'max_cover': 0.1},
          'moderate': {'min_height': 25.0, 'max_iou': 0.3, 'max_cover': 1.0},
          'hard': {'min_height': 25.0, 'max_iou': 0.5, 'max_cover': 1.0}}


def covered(a, b) -> float:
    """Share of box a's area inside box b."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return inter / area if area > 0 else 1.0


def level_rule(level: str, max_cover: float = 1.0) -> dict:
    """The rule of ``level`` with the share of the box any nearer box may cover capped at ``max_cover``
    (a level's own cap stays where it is tighter)."""
    if level not in LEVELS:
        raise ValueError(f'unknown curriculum level {level!r}; allowed: {", ".join(LEVELS)}')
    rule = dict(LEVELS[level])
    rule['max_cover'] = min(rule['max_cover'], float(max_cover))
    return rule


def passes(box, others, width: int, height: int, level: str, border_px: float = 2.0,
           max_cover: float = 1.0) -> bool:
    """Whether a label with 2D box (x1, y1, x2, y2) belongs to ``level`` among the frame's other boxes
    (``max_cover``: :func:`level_rule`)."""
    rule = level_rule(level, max_cover)
    b = np.asarray(box, float)
    if b[3] - b[1] <= rule['min_height']:
        return False
    if b[0] < border_px or b[1] < border_px or b[2] > width - border_px or b[3] > height - border_px:
        return False
    for o in others:
        if box_iou(b, o) >= rule['max_iou'] or covered(b, o) > rule['max_cover']:
            return False
    return True
