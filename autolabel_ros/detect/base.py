"""Detector interface, COCO -> KITTI class names and the shared post-processing (numpy only)."""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from autolabel_ros.core.types import Prompt, check_rgb_image

# COCO category ids as used by the TF model zoo and torchvision (91-id numbering) -> (COCO name,
# KITTI-style name). Only road users: the rest of COCO never becomes a prompt.
COCO_CLASSES = {
    1: ('person', 'Pedestrian'),
    2: ('bicycle', 'Cyclist'),
    3: ('car', 'Car'),
    4: ('motorcycle', 'Motorcycle'),
    6: ('bus', 'Bus'),
    7: ('train', 'Tram'),
    8: ('truck', 'Truck'),
}


class DetectorUnavailable(RuntimeError):
    """The detector cannot be built (missing or mismatching weights, unknown backend, bad class)."""


class Detector:
    """2D detector producing box prompts: ``detect(image HxWx3 uint8 RGB) -> list[Prompt]``.

    Prompts carry KITTI-style class names ('Car', 'Truck', 'Bus', ...), the detector score, and
    ``id`` = rank in the returned list (highest score first).
    """

    def detect(self, image: np.ndarray) -> list[Prompt]:
        raise NotImplementedError


class NullDetector(Detector):
    """Backend 'none': prompts come from somewhere else (another node, a person)."""

    def detect(self, image: np.ndarray) -> list[Prompt]:
        check_image(image)
        return []


def check_image(image: np.ndarray) -> np.ndarray:
    return check_rgb_image(image, 'detector')


def resolve_classes(classes: Optional[Iterable[str]]) -> set[int]:
    """COCO ids for a class filter given as COCO or KITTI names (any case); empty = all road users."""
    names = [str(c).strip() for c in (classes or []) if str(c).strip()]
    if not names:
        return set(COCO_CLASSES)
    lookup = {}
    for cid, (coco, kitti) in COCO_CLASSES.items():
        lookup[coco.lower()] = cid
        lookup[kitti.lower()] = cid
    ids = set()
    for n in names:
        if n.lower() not in lookup:
            valid = ', '.join(sorted({c for pair in COCO_CLASSES.values() for c in pair}))
            raise DetectorUnavailable(f'detector.classes: unknown class {n!r} (valid: {valid})')
        ids.add(lookup[n.lower()])
    return ids


def to_prompts(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, width: int, height: int,
               class_ids: set[int], score_threshold: float, max_detections: int) -> list[Prompt]:
    """Filter (class, score), clip to the image, sort by score and keep the best ``max_detections``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    keep = np.isin(labels, list(class_ids)) & (scores >= score_threshold)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, width - 1.0)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, height - 1.0)
    ok = (boxes[:, 2] - boxes[:, 0] >= 1.0) & (boxes[:, 3] - boxes[:, 1] >= 1.0)
    boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
    order = np.argsort(-scores, kind='stable')[:max(0, int(max_detections))]
    return [Prompt(id=i, box=boxes[j], cls=COCO_CLASSES[int(labels[j])][1], score=float(scores[j]),
                   sources=('detector',))
            for i, j in enumerate(order)]


