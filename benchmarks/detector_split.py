"""The shipped 2D detector's boxes as prompts: what a user without boxes gets, end to end.

``detector_split(src, dst, frames)`` runs the default detector (``DetectorConfig``: SSD-MobileNet-v2
in OpenCV DNN, score >= 0.4, car/truck/bus, as ``autolabel-bag --prompts detector`` uses it) on
each image of the KITTI split ``src`` and writes a split at ``dst`` whose image_2, velodyne and
calib link to ``src`` and whose label_2 holds the detections (class name, 2D box, score; no 3D
fields). Labelling ``dst`` with ``gt-boxes`` prompts then prompts with the detector's Car boxes
(the Car class is what the evaluation counts; trucks and buses stay out, as they would be labelled
as such), and ``src/label_2`` stays the ground truth of the evaluation. Detections are cached: a
frame whose label file exists is not detected again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def detector_split(src: Path, dst: Path, frames) -> Path:
    from autolabel_ros.config import from_dict
    from autolabel_ros.io.kitti import KittiObject, read_image, write_label_file

    src, dst = Path(src), Path(dst)
    (dst / 'label_2').mkdir(parents=True, exist_ok=True)
    for sub in ('image_2', 'velodyne', 'calib'):
        link = dst / sub
        if not link.exists():
            link.symlink_to(src / sub, target_is_directory=True)
    todo = [f for f in frames if not (dst / 'label_2' / f'{f}.txt').is_file()]
    if todo:
        from autolabel_ros.detect import make_detector
        det = make_detector(from_dict({}).detector, 'cpu')
        for fid in todo:
            prompts = det.detect(read_image(src / 'image_2' / f'{fid}.png'))
            write_label_file(dst / 'label_2' / f'{fid}.txt', [
                KittiObject(type=p.cls, truncated=0.0, occluded=0, alpha=0.0, bbox=p.box,
                            hwl=np.zeros(3), location=np.zeros(3), ry=0.0,
                            score=float(p.score if p.score is not None else 1.0))
                for p in prompts])
    return dst
