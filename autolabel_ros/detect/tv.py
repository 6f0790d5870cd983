"""torchvision detectors from a LOCAL weights file (nothing is ever downloaded).

The architecture is built with ``weights=None, weights_backbone=None`` and 91 COCO classes, then
the file is loaded with ``torch.load(weights_only=True)``; torchvision's released COCO weights
(e.g. ``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``) are plain state dicts that fit.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from autolabel_ros.detect.base import Detector, DetectorUnavailable, check_image, resolve_classes, to_prompts

# backend name -> torchvision.models.detection builder
ARCHITECTURES = {
    'fasterrcnn': 'fasterrcnn_resnet50_fpn',
    'fasterrcnn_v2': 'fasterrcnn_resnet50_fpn_v2',
    'retinanet': 'retinanet_resnet50_fpn',
    'retinanet_v2': 'retinanet_resnet50_fpn_v2',
    'fcos': 'fcos_resnet50_fpn',
    'fasterrcnn_mobilenet': 'fasterrcnn_mobilenet_v3_large_fpn',
    'fasterrcnn_mobilenet_320': 'fasterrcnn_mobilenet_v3_large_320_fpn',
    'ssdlite': 'ssdlite320_mobilenet_v3_large',
}
ARCHITECTURES.update({v: v for v in list(ARCHITECTURES.values())})
NUM_COCO_CLASSES = 91


class TorchvisionDetector(Detector):
    """``min_size``/``max_size`` (optional) override the builder's input resize (800/1333 for the
    R-CNN family): smaller is faster on CPU and worse on small objects."""

    def __init__(self, backend: str, weights: str, device='cpu', score_threshold: float = 0.4,
                 classes: Optional[Iterable[str]] = None, max_detections: int = 50,
                 min_size: Optional[int] = None, max_size: Optional[int] = None):
        import torch
        import torchvision.models.detection as tvd

        from autolabel_ros.core.device import resolve_device

        arch = ARCHITECTURES.get(backend)
        if arch is None:
            raise DetectorUnavailable(f'unknown torchvision detector {backend!r} (expected one of '
                                      f'{", ".join(sorted(ARCHITECTURES))})')
        if not weights:
            raise DetectorUnavailable(f'detector.backend {backend!r} needs detector.weights: a local '
                                      f'{arch} COCO state dict (.pth); nothing is downloaded at run time')
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DetectorUnavailable(f'detector.weights {str(path)!r} does not exist (backend {backend!r} '
                                      f'needs a local {arch} COCO state dict; nothing is downloaded)')
        self.class_ids = resolve_classes(classes)
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        kwargs = {k: v for k, v in (('min_size', min_size), ('max_size', max_size)) if v is not None}
        t0 = time.perf_counter()
        model = getattr(tvd, arch)(weights=None, weights_backbone=None, num_classes=NUM_COCO_CLASSES,
                                   **kwargs)
        try:
            state = torch.load(str(path), map_location='cpu', weights_only=True)
        except Exception as exc:  # zip/pickle errors come in many types
            raise DetectorUnavailable(f'cannot read detector weights {str(path)!r}: '
                                      f'{type(exc).__name__}: {exc}') from exc
        if isinstance(state, dict) and isinstance(state.get('model'), dict):
            state = state['model']
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            detail = ' '.join(str(exc).strip().splitlines()[:3])[:400]
            raise DetectorUnavailable(f'detector weights {str(path)!r} do not fit {arch} with '
                                      f'{NUM_COCO_CLASSES} COCO classes: {detail}') from exc
        self.model = model.eval().to(self.device)
        self.arch = arch
        self.timings = {'load_s': time.perf_counter() - t0}

    def detect(self, image: np.ndarray):
        import torch

        image = check_image(image)
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float() / 255.0
        with torch.inference_mode():
            out = self.model([x])[0]
        self.timings['detect_s'] = time.perf_counter() - t0
        return to_prompts(out['boxes'].cpu().numpy(), out['scores'].cpu().numpy(),
                          out['labels'].cpu().numpy(), w, h, self.class_ids, self.score_threshold,
                          self.max_detections)
