"""Segmenter interface and the prompt clean-up every backend shares (numpy only, no torch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from autolabel_ros.core.types import Prompt, check_rgb_image

MAX_CLICKS = 8   # SAM was trained with a handful of clicks; more is almost always a UI mistake


class SegmenterUnavailable(RuntimeError):
    """The segmenter cannot be built (no checkpoint, unknown model, checkpoint/model mismatch)."""


class Segmenter:
    """Promptable segmenter: one boolean mask and one quality score per prompt, same order."""

    def segment(self, image: np.ndarray, prompts: Sequence[Prompt]) -> tuple[list[np.ndarray], list[float]]:
        raise NotImplementedError

    def warm_up(self) -> None:
        """Do now the one-time work of the first :meth:`segment` call that does not depend on the
        image (none here); same results either way."""


@dataclass
class CleanPrompt:
    """A prompt reduced to what lies inside the image (pixel coordinates)."""

    box: Optional[np.ndarray]            # (4,) clipped x1 y1 x2 y2, or None
    points: Optional[np.ndarray]         # (K, 2) inside the image, or None
    labels: Optional[np.ndarray]         # (K,) 1 = object, 0 = background

    @property
    def empty(self) -> bool:
        return self.box is None and self.points is None

    @property
    def kind(self) -> tuple[bool, bool]:
        return self.box is not None, self.points is not None


def check_image(image: np.ndarray) -> np.ndarray:
    return check_rgb_image(image, 'segmenter')


def clean_prompt(prompt: Prompt, width: int, height: int) -> CleanPrompt:
    """Clip the box to the image, drop clicks outside it; what is left may be empty.

    Pixel coordinates follow SAM: (0, 0) is the centre of the top-left pixel, so the last valid
    coordinate is W-1 / H-1 (KITTI's 2D boxes use the same convention).
    """
    box = None
    if prompt.box is not None:
        b = np.asarray(prompt.box, dtype=np.float64).copy()
        b[[0, 2]] = np.clip(b[[0, 2]], 0.0, width - 1.0)
        b[[1, 3]] = np.clip(b[[1, 3]], 0.0, height - 1.0)
        # a box that ends up thinner than a pixel was outside the image
        if b[2] - b[0] >= 1.0 and b[3] - b[1] >= 1.0:
            box = b
    points = labels = None
    if prompt.points is not None:
        p = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
        lab = np.asarray(prompt.point_labels, dtype=np.int64).reshape(-1)
        # pixel i spans [i - 0.5, i + 0.5)
        inside = (p[:, 0] >= -0.5) & (p[:, 0] < width - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] < height - 0.5)
        p, lab = p[inside], lab[inside]
        if len(p) > MAX_CLICKS:
            raise ValueError(f'prompt {prompt.id}: {len(p)} clicks inside the image, at most '
                             f'{MAX_CLICKS} are supported')
        # background-only clicks do not say which object is meant: treat as no clicks
        if len(p) and (np.any(lab > 0) or box is not None):
            points, labels = p, lab
    return CleanPrompt(box, points, labels)


def group_prompts(cleaned: Sequence[CleanPrompt]) -> dict[tuple[bool, bool], list[int]]:
    """Indices of the non-empty prompts per kind (box?, points?).

    SAM's prompt encoder takes boxes for a whole batch or for none of it, so prompts with and
    without a box cannot share one decoder call; within a kind, click counts are padded.
    """
    groups: dict[tuple[bool, bool], list[int]] = {}
    for i, c in enumerate(cleaned):
        if not c.empty:
            groups.setdefault(c.kind, []).append(i)
    return groups


def pad_points(cleaned: Sequence[CleanPrompt]) -> tuple[np.ndarray, np.ndarray]:
    """Stack clicks to (B, K, 2) and labels to (B, K), padding with label -1 (SAM's 'not a point')."""
    k = max(len(c.points) for c in cleaned)
    coords = np.zeros((len(cleaned), k, 2), dtype=np.float64)
    labels = np.full((len(cleaned), k), -1, dtype=np.int64)
    for i, c in enumerate(cleaned):
        coords[i, :len(c.points)] = c.points
        labels[i, :len(c.points)] = c.labels
    return coords, labels


class BoxSegmenter(Segmenter):
    """Baseline without a network: the (clipped) prompt box filled. For ablations and fast tests."""

    def segment(self, image, prompts):
        image = check_image(image)
        h, w = image.shape[:2]
        masks, scores = [], []
        for p in prompts:
            c = clean_prompt(p, w, h)
            m = np.zeros((h, w), dtype=bool)
            box = c.box
            if box is None and c.points is not None:
                pts = c.points[c.labels > 0]
                box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
            if box is not None:
                x1, y1 = np.floor(box[:2]).astype(int)
                x2, y2 = np.ceil(box[2:]).astype(int)
                m[y1:y2 + 1, x1:x2 + 1] = True
            masks.append(m)
            scores.append(1.0 if m.any() else 0.0)
        return masks, scores
