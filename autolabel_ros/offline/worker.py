"""One labelling worker: loads the models once, turns (frame, prompts) into a persisted-ready record.

The same class runs in-process (``--workers 1``), in each local worker process and inside each Ray
actor, so every path produces identical records. Global RNGs are re-seeded from the config seed
before every frame: a frame's result does not depend on which worker ran it or on what ran before.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from autolabel_ros.core.prompts import screen_prompts, warn_dropped
from autolabel_ros.core.types import Label3D, Mesh, Prompt, SensorFrame
from autolabel_ros.offline.phases import peak_rss_mb

log = logging.getLogger(__name__)

BEV_MAX_POINTS = 20000    # LiDAR points kept per frame for the report's bird's-eye views
BEV_RANGE_M = 80.0
SPAN_KEY = 'span'         # a returned record's schedule entry, removed before the record is saved


@dataclass
class FrameTask:
    """What a worker needs for one frame (picklable; sent to processes and Ray actors)."""

    index: int
    name: str
    stamp_ns: int
    frame: SensorFrame
    prompts: Optional[list]          # None: run the detector
    calib: Optional[dict] = None     # KITTI calib matrices of the source, when it has them
    dropped_prompts: list = field(default_factory=list)   # dicts of prompts the reader could not use
    prompt_chunk: int = 32           # prompts fitted together (bounds memory; progress per chunk)
    fused: bool = False              # with prompts None: the detector's boxes fused with LiDAR proposals
    # with prompts None: the detector's boxes when the parent of forked workers ran it (to order the
    # frames, offline/schedule.py), and its seconds; the worker labels them as if it had run it
    detections: Optional[list] = None
    detect_s: float = 0.0


def prompt_to_dict(p: Prompt) -> dict:
    return {'id': int(p.id), 'cls': p.cls, 'score': float(p.score), 'sources': list(p.sources),
            'box': None if p.box is None else [float(v) for v in p.box],
            'points': None if p.points is None else np.asarray(p.points).tolist(),
            'point_labels': None if p.point_labels is None else np.asarray(p.point_labels).tolist()}


def prompt_from_dict(d: dict) -> Prompt:
    return Prompt(id=d['id'], box=d['box'], points=d['points'], point_labels=d['point_labels'],
                  cls=d['cls'], score=d['score'], sources=tuple(d.get('sources') or ()))


def label_to_dict(lab: Label3D) -> dict:
    return {'id': int(lab.id), 'cls': lab.cls, 'score': float(lab.score), 'accepted': bool(lab.accepted),
            'center': lab.center.tolist(), 'size': lab.size.tolist(), 'yaw': float(lab.yaw),
            'box2d': None if lab.box2d is None else lab.box2d.tolist(),
            'latent': None if lab.latent is None else np.asarray(lab.latent, dtype=np.float64).tolist(),
            'reasons': [str(r) for r in lab.reasons], 'metrics': dict(lab.metrics),
            'has_mesh': lab.mesh is not None, 'sources': list(lab.sources)}


def label_from_dict(d: dict, arrays: Optional[dict] = None, k: int = 0) -> Label3D:
    mesh = None
    if d.get('has_mesh') and arrays is not None and f'mesh{k}_v' in arrays:
        mesh = Mesh(vertices=arrays[f'mesh{k}_v'], faces=arrays[f'mesh{k}_f'])
    latent = None if d['latent'] is None else np.asarray(d['latent'])
    return Label3D(center=d['center'], size=d['size'], yaw=d['yaw'], cls=d['cls'], score=d['score'],
                   id=d['id'], latent=latent, mesh=mesh, box2d=d['box2d'],
                   accepted=d['accepted'], reasons=list(d['reasons']), metrics=dict(d['metrics']),
                   sources=tuple(d.get('sources') or ()))


def bev_points(points: np.ndarray) -> np.ndarray:
    """A deterministic subsample (every k-th point within range) of the sweep's x, y for the figures."""
    xy = np.asarray(points, dtype=np.float32)[:, :2]
    xy = xy[np.all(np.abs(xy) < BEV_RANGE_M, axis=1)]
    step = max(1, int(np.ceil(len(xy) / BEV_MAX_POINTS)))
    return xy[::step].astype(np.float16)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _warm_up(segmenter, threads: int) -> None:
    """The segmenter's warm-up on its own thread, with the loading thread's torch threads: a new
    thread's OpenMP setting is the process default, not what the caller set (no pool may start
    in a process that forks workers, offline/parallel.py, and the bits depend on the threads)."""
    import torch

    try:
        torch.set_num_threads(threads)
        segmenter.warm_up()
    except Exception as e:   # noqa: BLE001 - each worker then does it at its first frame, as before
        log.debug('segmenter warm-up failed (%s: %s)', type(e).__name__, e)


class FrameLabeler:
    """Callable on a :class:`FrameTask`; returns ``(record, arrays)`` or ``(error_dict, None)``."""

    def __init__(self, cfg_dict: dict, torch_threads: Optional[int] = None):
        from autolabel_ros.config import from_dict

        self.cfg = from_dict(cfg_dict)
        self.torch_threads = torch_threads
        self._labeler = None
        self._detector = None
        self._fused = False
        self._threads_set = False
        self._segmenter = None        # built before the rest by :meth:`preload`

    def _detector_stale(self, fused: bool) -> bool:
        """Whether a task with these prompts needs the detector (re)built."""
        return self._detector is None or self._fused != fused

    def _loads_models(self, need_detector: bool, fused: bool) -> bool:
        """Whether :meth:`_models` has something to load for a task needing this."""
        return self._labeler is None or (need_detector and self._detector_stale(fused))

    def set_threads(self) -> None:
        """The process' compute threads, as the fitter node sets them for the same config: once per
        process, before its first frame (a forked worker calls it itself: its models were loaded by
        the parent with one thread, see offline/parallel.py)."""
        from autolabel_ros.core.device import process_threads

        if self.torch_threads and (self.cfg.fit.threads or 0) > self.torch_threads:
            log.warning('fit.threads %d is more than this worker\'s share of the cores (%d): the '
                        'workers will slow each other down (fit.threads: 1 or --workers 1)',
                        self.cfg.fit.threads, self.torch_threads)
        process_threads(self.cfg.fit.threads, self.torch_threads)
        self._threads_set = True

    def preload(self, need_detector: bool, fused: bool = False,
                meanwhile: Optional[Callable[[], None]] = None) -> None:
        """Load the models now, without setting the process' threads (the caller has set them):
        the parent of forked workers (which times the load itself, torch's import included). The
        segmenter is built first and warmed up (:meth:`Segmenter.warm_up`) on a second thread while
        this one loads the rest (imports, shape space, detector) and then calls ``meanwhile`` (the
        caller's own imports): the workers inherit the warm segmenter, and the warm-up costs the
        run only what the rest does not cover."""
        warm = None
        try:
            if self._labeler is None:
                warm = self._start_warm_up()
            self._models(need_detector, fused, set_threads=False)
            if meanwhile is not None:
                meanwhile()
        finally:
            if warm is not None:
                warm.join()

    def _start_warm_up(self) -> threading.Thread:
        from autolabel_ros.core.device import resolve_device
        from autolabel_ros.segment import make_segmenter

        self._segmenter = make_segmenter(self.cfg.segmenter, resolve_device(self.cfg.device))
        thread = threading.Thread(target=_warm_up, args=(self._segmenter, _torch_threads()),
                                  name='segmenter-warm-up', daemon=True)
        thread.start()
        return thread

    def detect_ahead(self, task: FrameTask) -> FrameTask:
        """``task`` with the detector's boxes (:attr:`FrameTask.detections`) when it needs them and
        this object has loaded that detector (the parent of forked workers, offline/parallel.py:
        with the workers' threads, so the same boxes); else, or when the detector fails (the worker
        then runs it and reports the error with the frame), ``task`` as it is."""
        if task.prompts is not None or task.detections is not None or self._detector_stale(task.fused):
            return task
        t = time.perf_counter()
        try:
            detections = list(self._detector.detect(task.frame.image))
        except Exception as e:   # noqa: BLE001 - the worker's own run reports it
            log.debug('frame %s: detection left to the worker (%s: %s)', task.name, type(e).__name__, e)
            return task
        return replace(task, detections=detections, detect_s=time.perf_counter() - t)

    def _models(self, need_detector: bool, fused: bool = False, set_threads: bool = True):
        """The pipeline and, when needed, the detector (loaded once); ``set_threads``: set the process'
        threads first unless done already (:meth:`preload`'s caller has set them itself)."""
        if set_threads and not self._threads_set:
            self.set_threads()
        if self._labeler is None:
            from autolabel_ros.pipeline import Autolabeler

            labeler = Autolabeler(self.cfg, segmenter=self._segmenter)
            _ = labeler.segmenter   # built now (the pipeline builds it on first use): part of the model load
            self._labeler = labeler
        if need_detector:
            self.build_detector(fused)
        return self._labeler, self._detector

    def build_detector(self, fused: bool = False) -> None:
        """The detector for ``fused`` or plain detector prompts, unless built already."""
        if not self._detector_stale(fused):
            return
        from autolabel_ros.detect import make_detector
        from autolabel_ros.proposals import fused_detector_config

        # fused prompts want the weak detections too (they confirm LiDAR proposals)
        dcfg = fused_detector_config(self.cfg) if fused else self.cfg.detector
        self._detector = make_detector(dcfg, self.cfg.device)
        self._fused = fused

    def detects_without_torch(self) -> bool:
        """Whether the detector runs on OpenCV alone (SSD-MobileNet, or none): the parent of forked
        workers may then run it on a thread while it loads torch (offline/readahead.py)."""
        from autolabel_ros.detect import runs_without_torch

        return runs_without_torch(self.cfg.detector)

    def __call__(self, task: FrameTask):
        start, cpu = time.monotonic(), time.process_time()
        try:
            record, arrays = self._run(task)
        except Exception as e:   # one bad frame must not stop the job: reported and skipped
            log.warning('frame %s failed: %s', task.name, e)
            record, arrays = {'index': task.index, 'name': task.name, 'error': f'{type(e).__name__}: {e}',
                              'traceback': traceback.format_exc(limit=5)}, None
        # when and where the frame ran (the system-wide monotonic clock, comparable across the local
        # workers): the job takes it off the record for the run's schedule (phases.schedule_summary)
        # (``cpu``: the process' CPU seconds before the frame, its start-up's for a first frame)
        record[SPAN_KEY] = {'worker': os.getpid(), 'start': start, 'end': time.monotonic(), 'cpu': cpu}
        return record, arrays

    def _run(self, task: FrameTask):
        timings = {}
        if self._loads_models(task.prompts is None, task.fused):
            # the first frame of a worker loads its models: timed apart from the frame (phases.py)
            w, c = time.perf_counter(), time.process_time()
            self._models(task.prompts is None, task.fused)
            timings['models_s'] = time.perf_counter() - w
            timings['models_cpu_s'] = time.process_time() - c
        t0, c0 = time.perf_counter(), time.process_time()
        labeler, detector = self._models(task.prompts is None, task.fused)
        prompts = task.prompts
        prompt_source = 'given'
        if prompts is None:
            if task.detections is not None:
                prompts = list(task.detections)
                timings['detect_s'] = task.detect_s
            else:
                t = time.perf_counter()
                prompts = detector.detect(task.frame.image)
                timings['detect_s'] = time.perf_counter() - t
            prompt_source = 'detector'
            if task.fused:
                from autolabel_ros.proposals import fused_prompts

                prompts, pt = fused_prompts(task.frame, prompts, self.cfg)
                timings['proposals_s'] = pt['proposals_s']
                prompt_source = 'fused'
        f = task.frame
        # boxes no model can use (outside the image, degenerate, over the cap) are dropped with a reason
        n_given = len(prompts) + len(task.dropped_prompts)
        prompts, dropped = screen_prompts(list(prompts), f.width, f.height, self.cfg.max_prompts)
        dropped = list(task.dropped_prompts) + [d.as_dict() for d in dropped]
        warn_dropped(log, f'frame {task.name}', dropped, n_given)
        labels = self._label_chunks(labeler, task, prompts, timings)
        if task.fused and labels:
            from autolabel_ros.proposals import reject_duplicates
            reject_duplicates(labels, self.cfg.proposals.duplicate_iou)
        # a detection run ahead by the parent counts in the frame's time, as the worker's own does
        ahead = task.detect_s if task.detections is not None else 0.0
        timings['frame_s'] = time.perf_counter() - t0 + ahead
        timings['worker_cpu_s'] = time.process_time() - c0
        record = {
            'index': task.index, 'name': task.name, 'stamp_ns': int(task.stamp_ns),
            'width': f.width, 'height': f.height, 'K': f.K.tolist(), 'T_cam_lidar': f.T_cam_lidar.tolist(),
            'lidar_frame': f.lidar_frame, 'camera_frame': f.camera_frame, 'calib': task.calib,
            'prompt_source': prompt_source, 'prompts': [prompt_to_dict(p) for p in prompts],
            'dropped_prompts': dropped,
            'labels': [label_to_dict(lab) for lab in labels], 'timings': timings,
        }
        arrays = {'bev': bev_points(f.points)}
        for k, lab in enumerate(labels):
            if lab.mesh is not None:
                arrays[f'mesh{k}_v'] = np.asarray(lab.mesh.vertices, dtype=np.float32)
                arrays[f'mesh{k}_f'] = np.asarray(lab.mesh.faces, dtype=np.int32)
        # what travels to and from a worker process (phases.py): the sensor arrays, the result arrays
        timings['task_mb'] = (f.image.nbytes + f.points.nbytes) / 1e6
        timings['result_mb'] = sum(a.nbytes for a in arrays.values()) / 1e6
        timings['worker_rss_mb'] = peak_rss_mb()
        return record, arrays

    def _label_chunks(self, labeler, task: FrameTask, prompts: list, timings: dict) -> list:
        """Label the prompts in chunks of ``task.prompt_chunk``: a frame with hundreds of prompts
        keeps its memory bounded and logs its progress. Frames with fewer prompts than a chunk (all
        usual ones) are labelled in one call, exactly as before."""
        import torch

        if not prompts:
            return []
        size = max(1, int(task.prompt_chunk))
        labels = []
        for start in range(0, len(prompts), size):
            # global RNGs re-seeded per call: a frame's result does not depend on what ran before
            torch.manual_seed(self.cfg.seed)
            np.random.seed(self.cfg.seed)
            result = labeler.label(task.frame, prompts[start:start + size])
            labels += result.labels
            for k, v in result.timings.items():
                if isinstance(v, (int, float)):
                    timings[k] = timings.get(k, 0) + v if start else v
            if len(prompts) > size:
                log.info('frame %s: %d/%d prompts labelled', task.name, min(start + size, len(prompts)),
                         len(prompts))
        if len(prompts) > size and 'per_instance_s' in timings:
            fit_post = timings.get('fit_s', 0.0) + timings.get('post_s', 0.0)
            timings['per_instance_s'] = fit_post / len(prompts)
        return labels
