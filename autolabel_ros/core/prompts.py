"""Checking 2D prompts before they reach the segmenter: the boxes no model can use are dropped,
counted and reported with their reason, never silently.

Reasons (``DroppedPrompt.reason``):

- ``non_finite``: a coordinate is NaN or infinite;
- ``inverted``: x2 < x1 or y2 < y1;
- ``zero_area``: x2 == x1 or y2 == y1;
- ``outside_image``: less than one pixel of the box lies inside the image;
- ``over_cap``: the frame has more prompts than the configured cap (``max_prompts``); the ones with
  the lowest scores go (ties: the later ones).

Readers of raw boxes (Detection2DArray messages, KITTI label files) call :func:`box_problem` before
they build a :class:`Prompt` (which refuses the first three) and return a :class:`PromptList`, a
plain list that also carries what it dropped. :func:`screen_prompts` applies the image-size checks
and the cap to prompts that exist.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from autolabel_ros.core.types import Prompt

_log = logging.getLogger('autolabel_ros.prompts')
REASONS = ('non_finite', 'inverted', 'zero_area', 'outside_image', 'over_cap')


@dataclass(frozen=True)
class DroppedPrompt:
    """A prompt that was not labelled, and why. ``index``: its position in the input list."""

    index: int
    id: int
    reason: str
    box: Optional[tuple] = None

    def as_dict(self) -> dict:
        box = None if self.box is None else [float(v) if np.isfinite(v) else None for v in self.box]
        return {'index': int(self.index), 'id': int(self.id), 'reason': self.reason, 'box': box}

    @classmethod
    def from_dict(cls, d: dict) -> 'DroppedPrompt':
        box = None if d.get('box') is None else tuple(np.nan if v is None else float(v) for v in d['box'])
        return cls(index=int(d['index']), id=int(d['id']), reason=str(d['reason']), box=box)


class PromptList(list):
    """A list of prompts that also remembers the ones its reader dropped (``.dropped``)."""

    def __init__(self, prompts: Iterable[Prompt] = (), dropped: Iterable[DroppedPrompt] = ()):
        super().__init__(prompts)
        self.dropped = list(dropped)

    def copy(self) -> 'PromptList':
        return PromptList(self, self.dropped)


def box_problem(box, width: Optional[int] = None, height: Optional[int] = None) -> Optional[str]:
    """The reason a box (x1, y1, x2, y2) cannot be used, or None. The image check needs the size."""
    b = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(b)):
        return 'non_finite'
    if b[2] < b[0] or b[3] < b[1]:
        return 'inverted'
    if b[2] == b[0] or b[3] == b[1]:
        return 'zero_area'
    if width is not None and height is not None:
        c = np.clip(b, 0, [width, height, width, height])
        if c[2] - c[0] < 1 or c[3] - c[1] < 1:
            return 'outside_image'
    return None


def screen_prompts(prompts: Sequence[Prompt], width: int, height: int, max_prompts: int = 0
                   ) -> tuple[list[Prompt], list[DroppedPrompt]]:
    """(usable prompts in input order, dropped ones). ``max_prompts`` > 0 caps the usable ones."""
    kept, dropped = [], []
    for i, p in enumerate(prompts):
        box = p.bounding_box()
        reason = box_problem(box, width, height)
        if reason is None:
            kept.append((i, p))
        else:
            dropped.append(DroppedPrompt(i, int(p.id), reason, tuple(float(v) for v in box)))
    if max_prompts and len(kept) > max_prompts:
        # highest scores first; a stable sort keeps the earlier of equal scores
        order = sorted(range(len(kept)), key=lambda k: -float(kept[k][1].score))
        keep = set(order[:max_prompts])
        for k in sorted(set(order) - keep):
            i, p = kept[k]
            dropped.append(DroppedPrompt(i, int(p.id), 'over_cap',
                                         tuple(float(v) for v in p.bounding_box())))
        kept = [kept[k] for k in sorted(keep)]
    dropped.sort(key=lambda d: d.index)
    return [p for _, p in kept], dropped


def count_reasons(dropped: Iterable) -> dict:
    """{reason: count} of DroppedPrompts or their dicts, sorted by reason."""
    c = Counter(d['reason'] if isinstance(d, dict) else d.reason for d in dropped)
    return dict(sorted(c.items()))


def warn_dropped(log: logging.Logger, where: str, dropped: Sequence, total: int) -> None:
    """One warning line per frame: how many prompts were dropped, by reason, and their ids."""
    if not dropped:
        return
    ids = [d['id'] if isinstance(d, dict) else d.id for d in dropped]
    shown = ', '.join(str(i) for i in ids[:10]) + (', ...' if len(ids) > 10 else '')
    reasons = ', '.join(f'{n} {r}' for r, n in count_reasons(dropped).items())
    log.warning('%s: %d of %d prompts dropped (%s; ids %s)', where, len(dropped), total, reasons, shown)


def check_prompts(prompts: Sequence[Prompt], width: int, height: int, max_prompts: int = 0,
                  frame_id: str = '') -> list[DroppedPrompt]:
    """The prompts :func:`screen_prompts` would drop, with one warning line when there are any."""
    _, dropped = screen_prompts(prompts, width, height, max_prompts)
    warn_dropped(_log, f'frame {frame_id!r}', dropped, len(prompts))
    return dropped
