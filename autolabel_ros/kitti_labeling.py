"""Label the frames of a KITTI object split with the pipeline: the library behind ``autolabel-kitti``
and the KITTI sections of ``benchmarks/run_all.py``.

Prompts (``prompts_mode``): ``gt-boxes`` / ``gt-points`` are made from ``label_2``; ``detector`` and
``fused`` need no ``label_2``: the 2D detector of the config on each image, and for ``fused`` its boxes
fused with the LiDAR object proposals (as ``autolabel-bag --prompts fused``, the default there).

What the label files hold is :mod:`autolabel_ros.io.kitti_policy` (the same for ``autolabel-bag``):
every fitted prompt, scored with its calibrated probability of being right. ``masks='gt'`` reads oracle
instance masks from ``DATA/instance_2/NNNNNN.png`` (uint16, value k = the object on line k-1 of
label_2, 0 = none), as written by the benchmarks' simulator export. Over the whole run the cars not seen
side-on get the fleet's length (``fit.fleet_length``, :mod:`autolabel_ros.fit.fleet`).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)

GT_MODES = ('gt-boxes', 'gt-points')       # prompts from label_2
DETECTED_MODES = ('detector', 'fused')      # prompts from the 2D detector (+ the LiDAR), no label_2 needed
PROMPT_MODES = GT_MODES + DETECTED_MODES


def make_prompt_detector(cfg, mode: str, device):
    """The detector of a detected prompt mode (None for the ground-truth modes): fused prompts want the
    weak detections too, which only confirm LiDAR proposals."""
    if mode not in DETECTED_MODES:
        return None
    from autolabel_ros.detect import make_detector
    from autolabel_ros.proposals import fused_detector_config
    return make_detector(fused_detector_config(cfg) if mode == 'fused' else cfg.detector, device)


def detected_prompts(frame, detector, cfg, mode: str) -> list:
    """One frame's prompts of a detected mode: the detector's boxes, fused with the LiDAR object
    proposals for ``fused``."""
    prompts = detector.detect(frame.image)
    if mode == 'fused':
        from autolabel_ros.proposals import fused_prompts
        prompts, _ = fused_prompts(frame, prompts, cfg)
    return prompts


def read_instance_masks(path: Path, prompts, shape) -> list[np.ndarray]:
    import cv2
    # OpenCV would print its own warning for a missing file before this error
    inst = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if Path(path).is_file() else None
    if inst is None:
        raise FileNotFoundError(f'{path}: oracle instance mask not found (needed by --masks gt)')
    if inst.shape[:2] != tuple(shape):
        raise ValueError(f'{path}: mask size {inst.shape[:2]} differs from the image {tuple(shape)}')
    return [inst == (p.id + 1) for p in prompts]


def label_frames(data, out, prompts_mode='gt-boxes', frames=None, config=None, masks='sam',
                 progress=True, autolabeler=None, run: list | None = None) -> dict:
    """Label the frames of a KITTI split; returns the stats dict (also used by the benchmarks). Each
    frame's label file is written as it is labelled; with ``fit.fleet_length`` the files whose labels the
    run's fleet length changes are written again at the end (:func:`finish_run`). ``run``: a list that
    collects the frames across calls instead (a caller labelling a split frame by frame), which then
    calls :func:`finish_run` itself."""
    from tqdm import tqdm

    from autolabel_ros.io.kitti import KittiObjectDataset, label3d_to_kitti, write_label_file
    from autolabel_ros.io.kitti_policy import kitti_predictions
    from autolabel_ros.pipeline import Autolabeler

    ds = KittiObjectDataset(data)
    fids = ds.frame_ids if not frames else [f.strip() for f in frames if f.strip()]
    missing = [f for f in fids if f not in ds.frame_ids]
    if missing:
        raise FileNotFoundError(f'{ds.root}: frames not found: {", ".join(missing[:5])}')
    if prompts_mode not in PROMPT_MODES:
        raise ValueError(f'prompt mode must be one of {", ".join(PROMPT_MODES)}, got {prompts_mode!r}')
    al = autolabeler or Autolabeler(config)
    detector = make_prompt_detector(al.cfg, prompts_mode, al.cfg.device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats = {'frames': [], 'instances': [], 'config': {'prompts': prompts_mode, 'masks': masks}}
    own_run: list = []
    for fid in tqdm(fids, desc='autolabel-kitti', unit='frame', disable=not progress):
        tl = time.perf_counter()
        frame = ds.load_frame(fid)
        calib = ds.calib(fid)
        if detector is None:
            prompts = ds.prompts(fid, mode=prompts_mode, seed=al.cfg.seed)
        else:
            prompts = detected_prompts(frame, detector, al.cfg, prompts_mode)
        given = None
        if masks == 'gt':
            given = read_instance_masks(ds.root / 'instance_2' / f'{fid}.png', prompts,
                                        frame.image.shape[:2])
        load_s = time.perf_counter() - tl
        result = al.label(frame, prompts, given)
        if prompts_mode == 'fused' and result.labels:     # as autolabel-bag --prompts fused does
            from autolabel_ros.proposals import reject_duplicates
            reject_duplicates(result.labels, al.cfg.proposals.duplicate_iou)
        objs = []
        kept = []
        for lab in kitti_predictions(result.labels, al.cfg.verify.min_confidence):
            objs.append(label3d_to_kitti(lab, calib, frame.width, frame.height))
            kept.append(dataclasses.replace(lab, mesh=None))      # the boxes, for the fleet length
            m = lab.metrics
            stats['instances'].append({
                'frame': fid, 'id': int(lab.id), 'accepted': bool(lab.accepted), 'reasons': lab.reasons,
                'score': lab.score, 'mask_iou': m.get('mask_iou'), 'surface_ratio': m.get('surface_ratio'),
                'n_points': m.get('n_points'), 'energy': m.get('energy'),
                # which initial hypothesis won, of how many (method hybrid: the Procrustes one is last)
                'hypothesis': m.get('hypothesis'), 'hypotheses': m.get('hypotheses'),
                'prompt_box': None if lab.box2d is None else [float(v) for v in lab.box2d],
                'fit_s': result.timings['per_instance_s']})
        write_label_file(out / f'{fid}.txt', objs)
        (own_run if run is None else run).append((fid, kept, calib, frame.width, frame.height))
        t = dict(result.timings)
        t.update(frame=fid, load_s=load_s, n_prompts=len(prompts), n_labels=len(objs))
        stats['frames'].append(t)
    if run is None:
        stats['fleet'] = finish_run(out, own_run, al)
    fr = stats['frames']
    per_inst = [f['per_instance_s'] for f in fr if f['n'] > 0]
    stats['summary'] = {
        'n_frames': len(fr), 'n_instances': len(stats['instances']),
        'n_accepted': int(sum(i['accepted'] for i in stats['instances'])),
        'median_fit_s_per_instance': float(np.median(per_inst)) if per_inst else None,
        'median_frame_s': float(np.median([f['total_s'] for f in fr])) if fr else None,
        'median_segment_s': float(np.median([f['segment_s'] for f in fr])) if fr else None,
    }
    return stats


def finish_run(out, run: list, al) -> dict | None:
    """The run's fleet length (fit/fleet.py) over every frame ``label_frames`` collected: the label
    files whose boxes it changes are written again. Returns what it read (None when off)."""
    from autolabel_ros.fit import fleet
    from autolabel_ros.io.kitti import label3d_to_kitti, write_label_file

    if not al.cfg.fit.fleet_length or not run:
        return None
    frames, result = fleet.apply([labels for _, labels, *_ in run], float(al.sdf.mean_size[0]))
    for (fid, before, calib, width, height), labels in zip(run, frames):
        if any(a is not b for a, b in zip(before, labels)):
            write_label_file(Path(out) / f'{fid}.txt', [label3d_to_kitti(lab, calib, width, height)
                                                        for lab in labels])
    _log.info(result.summary())
    return dataclasses.asdict(result)
