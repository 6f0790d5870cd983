"""One labelling worker: loads the models once, turns (frame, prompts) into a persisted-ready record.

The same class runs in-process (``--workers 1``), in each local worker process and inside each Ray
actor, so every path produces identical records. Global RNGs are re-seeded from the config seed
before every frame: a frame's result does not depend on which worker ran it or on what ran before.
"""
from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Optional

import numpy as np

from autolabel_ros.core.types import Label3D, Mesh, Prompt, SensorFrame

log = logging.getLogger(__name__)

BEV_MAX_POINTS = 20000    # LiDAR points kept per frame for the report's bird's-eye views
BEV_RANGE_M = 80.0


@dataclass
class FrameTask:
    """What a worker needs for one frame (picklable; sent to processes and Ray actors)."""

    index: int
    name: str
    stamp_ns: int
    frame: SensorFrame
    prompts: Optional[list]          # None: run the detector
    calib: Optional[dict] = None     # KITTI calib matrices of the source, when it has them


def prompt_to_dict(p: Prompt) -> dict:
    return {'id': int(p.id), 'cls': p.cls, 'score': float(p.score),
            'box': None if p.box is None else [float(v) for v in p.box],
            'points': None if p.points is None else np.asarray(p.points).tolist(),
            'point_labels': None if p.point_labels is None else np.asarray(p.point_labels).tolist()}


def prompt_from_dict(d: dict) -> Prompt:
    return Prompt(id=d['id'], box=d['box'], points=d['points'], point_labels=d['point_labels'],
                  cls=d['cls'], score=d['score'])


def label_to_dict(lab: Label3D) -> dict:
    return {'id': int(lab.id), 'cls': lab.cls, 'score': float(lab.score), 'accepted': bool(lab.accepted),
            'center': lab.center.tolist(), 'size': lab.size.tolist(), 'yaw': float(lab.yaw),
            'box2d': None if lab.box2d is None else lab.box2d.tolist(),
            'latent': None if lab.latent is None else np.asarray(lab.latent, dtype=np.float64).tolist(),
            'reasons': [str(r) for r in lab.reasons], 'metrics': dict(lab.metrics),
            'has_mesh': lab.mesh is not None}


def label_from_dict(d: dict, arrays: Optional[dict] = None, k: int = 0) -> Label3D:
    mesh = None
    if d.get('has_mesh') and arrays is not None and f'mesh{k}_v' in arrays:
        mesh = Mesh(vertices=arrays[f'mesh{k}_v'], faces=arrays[f'mesh{k}_f'])
    latent = None if d['latent'] is None else np.asarray(d['latent'])
    return Label3D(center=d['center'], size=d['size'], yaw=d['yaw'], cls=d['cls'], score=d['score'],
                   id=d['id'], latent=latent, mesh=mesh, box2d=d['box2d'],
                   accepted=d['accepted'], reasons=list(d['reasons']), metrics=dict(d['metrics']))


def bev_points(points: np.ndarray) -> np.ndarray:
    """A deterministic subsample (every k-th point within range) of the sweep's x, y for the figures."""
    xy = np.asarray(points, dtype=np.float32)[:, :2]
    xy = xy[np.all(np.abs(xy) < BEV_RANGE_M, axis=1)]
    step = max(1, int(np.ceil(len(xy) / BEV_MAX_POINTS)))
    return xy[::step].astype(np.float16)


class FrameLabeler:
    """Callable on a :class:`FrameTask`; returns ``(record, arrays)`` or ``(error_dict, None)``."""

    def __init__(self, cfg_dict: dict, torch_threads: Optional[int] = None):
        from autolabel_ros.config import from_dict

        self.cfg = from_dict(cfg_dict)
        self.torch_threads = torch_threads
        self._labeler = None
        self._detector = None

    def _models(self, need_detector: bool):
        if self._labeler is None:
            from autolabel_ros.core.device import set_torch_threads

            # the process' torch threads: the fit's setting (fit.threads), else the worker's share
            set_torch_threads(self.cfg.fit.threads or self.torch_threads or 0)
            if self.torch_threads:
                import cv2

                cv2.setNumThreads(int(self.torch_threads))   # the SSD detector runs in OpenCV DNN
            from autolabel_ros.pipeline import Autolabeler

            self._labeler = Autolabeler(self.cfg)
        if need_detector and self._detector is None:
            from autolabel_ros.detect import make_detector

            self._detector = make_detector(self.cfg.detector, self.cfg.device)
        return self._labeler, self._detector

    def __call__(self, task: FrameTask):
        try:
            return self._run(task)
        except Exception as e:   # one bad frame must not stop the job: reported and skipped
            log.warning('frame %s failed: %s', task.name, e)
            return {'index': task.index, 'name': task.name, 'error': f'{type(e).__name__}: {e}',
                    'traceback': traceback.format_exc(limit=5)}, None

    def _run(self, task: FrameTask):
        import torch

        t0 = time.perf_counter()
        labeler, detector = self._models(task.prompts is None)
        timings = {}
        prompts = task.prompts
        prompt_source = 'given'
        if prompts is None:
            t = time.perf_counter()
            prompts = detector.detect(task.frame.image)
            timings['detect_s'] = time.perf_counter() - t
            prompt_source = 'detector'
        torch.manual_seed(self.cfg.seed)
        np.random.seed(self.cfg.seed)
        labels = []
        if prompts:
            result = labeler.label(task.frame, list(prompts))
            labels = result.labels
            timings.update({k: v for k, v in result.timings.items() if isinstance(v, (int, float))})
        timings['frame_s'] = time.perf_counter() - t0
        f = task.frame
        record = {
            'index': task.index, 'name': task.name, 'stamp_ns': int(task.stamp_ns),
            'width': f.width, 'height': f.height, 'K': f.K.tolist(), 'T_cam_lidar': f.T_cam_lidar.tolist(),
            'lidar_frame': f.lidar_frame, 'camera_frame': f.camera_frame, 'calib': task.calib,
            'prompt_source': prompt_source, 'prompts': [prompt_to_dict(p) for p in prompts],
            'labels': [label_to_dict(lab) for lab in labels], 'timings': timings,
        }
        arrays = {'bev': bev_points(f.points)}
        for k, lab in enumerate(labels):
            if lab.mesh is not None:
                arrays[f'mesh{k}_v'] = np.asarray(lab.mesh.vertices, dtype=np.float32)
                arrays[f'mesh{k}_f'] = np.asarray(lab.mesh.faces, dtype=np.int32)
        return record, arrays
