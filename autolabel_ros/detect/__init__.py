"""2D detectors that produce box prompts (OpenCV-DNN SSD-MobileNet-v2, torchvision, none).

``make_detector(cfg.detector, device)`` is the entry point; heavy imports happen only when a
backend is built.
"""
from __future__ import annotations

from autolabel_ros.detect.base import COCO_CLASSES, Detector, DetectorUnavailable, NullDetector

__all__ = ['Detector', 'NullDetector', 'SsdMobilenetDetector', 'TorchvisionDetector', 'DetectorUnavailable',
           'COCO_CLASSES', 'make_detector', 'BACKENDS', 'backend_name', 'runs_without_torch']

BACKENDS = ('ssd_mobilenet', 'fasterrcnn', 'fasterrcnn_v2', 'retinanet', 'retinanet_v2', 'fcos',
            'fasterrcnn_mobilenet', 'fasterrcnn_mobilenet_320', 'ssdlite', 'none')
# the backends built without torch (OpenCV's DNN module, or no detector)
OPENCV_BACKENDS = ('ssd_mobilenet', 'ssd', 'none')


def __getattr__(name):
    if name == 'SsdMobilenetDetector':
        from autolabel_ros.detect.ssd import SsdMobilenetDetector
        return SsdMobilenetDetector
    if name == 'TorchvisionDetector':
        from autolabel_ros.detect.tv import TorchvisionDetector
        return TorchvisionDetector
    raise AttributeError(name)


def backend_name(cfg) -> str:
    """A ``DetectorConfig``'s backend, normalised (empty = none)."""
    return str(getattr(cfg, 'backend', 'ssd_mobilenet') or 'none').strip().lower()


def runs_without_torch(cfg) -> bool:
    """Whether the detector of ``cfg`` is built and run without torch (OpenCV alone, or none)."""
    return backend_name(cfg) in OPENCV_BACKENDS


def make_detector(cfg, device='auto') -> Detector:
    """Build the detector of a ``DetectorConfig`` (backend, weights, score_threshold, classes,
    max_detections). Raises ``DetectorUnavailable`` with a how-to-fix message."""
    backend = backend_name(cfg)
    common = dict(score_threshold=float(getattr(cfg, 'score_threshold', 0.4)),
                  classes=list(getattr(cfg, 'classes', []) or []),
                  max_detections=int(getattr(cfg, 'max_detections', 50)))
    if backend == 'none':
        return NullDetector()
    if backend in ('ssd_mobilenet', 'ssd'):
        from autolabel_ros.detect.ssd import SsdMobilenetDetector
        # an optional "graph.pb,text.pbtxt" in weights overrides the packaged files
        weights = str(getattr(cfg, 'weights', '') or '')
        files = [s.strip() for s in weights.split(',') if s.strip()]
        if files and len(files) != 2:
            raise DetectorUnavailable(f'detector.weights {weights!r}: for ssd_mobilenet give '
                                      f'"GRAPH.pb,TEXT_GRAPH.pbtxt" or leave it empty')
        return SsdMobilenetDetector(graph=files[0] if files else None,
                                    text_graph=files[1] if files else None,
                                    tiles=int(getattr(cfg, 'tiles', 0) or 0), **common)
    from autolabel_ros.detect.tv import ARCHITECTURES, TorchvisionDetector

    if backend not in ARCHITECTURES:
        raise DetectorUnavailable(f'unknown detector.backend {backend!r} (expected one of '
                                  f'{", ".join(BACKENDS)})')
    return TorchvisionDetector(backend, str(getattr(cfg, 'weights', '') or ''), device=device, **common)
