"""Simulated drives labelled frame by frame, cached for the tracking benchmark (benchmarks/tracks.py).

One sequence = one simulator scene (seed) driven for ``frames`` frames at 10 Hz with a given LiDAR.
Every frame is labelled by the per-frame pipeline (``Autolabeler.label``) from the ground-truth 2D
boxes with oracle instance masks (the simulator's modal masks: MobileSAM on every frame of every
sequence costs more than the benchmark's budget on a CPU; the tracking rows and the single-frame rows
read the same per-frame labels, so the comparison is fair). Per frame one ``.npz`` holds the LiDAR
points, the ego pose, the ground truth and the labels.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get('AUTOLABEL_BENCH_CACHE', Path.home() / '.cache' / 'autolabel_ros' / 'bench'))
SEQ_SEED0 = 700000
N_CARS = 10
# label metrics kept in the cache (benchmarks/tracks.py gives them back to the labels)
LABEL_METRICS = ('heading_logit', 'flip_margin', 'n_points', 'confidence', 'mask_iou')


def seq_dir(seed: int, beams: int, frames: int) -> Path:
    return CACHE / 'tracks' / f'seq{seed}_b{beams}_f{frames}'


def _gt_arrays(sf) -> dict:
    g = sf.gt
    return {'gt_id': np.array([x.id for x in g], np.int64).reshape(-1),
            'gt_box': np.array([x.box7 for x in g], np.float64).reshape(-1, 7),
            'gt_speed': np.array([x.metrics['speed'] for x in g], np.float64).reshape(-1),
            'gt_points': np.array([x.metrics['lidar_points'] for x in g], np.int64).reshape(-1),
            'gt_occlusion': np.array([x.occlusion for x in g], np.int64).reshape(-1),
            'gt_truncation': np.array([x.truncation for x in g], np.float64).reshape(-1)}


def _label_arrays(labels) -> dict:
    return {'lab_id': np.array([x.id for x in labels], np.int64).reshape(-1),
            'lab_box': np.array([x.box7 for x in labels], np.float64).reshape(-1, 7),
            'lab_score': np.array([x.score for x in labels], np.float64).reshape(-1),
            'lab_accepted': np.array([x.accepted for x in labels], bool).reshape(-1),
            # what the tracking reads of a label's metrics (its heading confidence, its LiDAR support)
            **{f'lab_{k}': np.array([float(x.metrics.get(k, np.nan)) for x in labels], np.float64).reshape(-1)
               for k in LABEL_METRICS},
            'lab_reasons': np.array([','.join(x.reasons) for x in labels], dtype=str).reshape(-1)}


def gt_prompts(sf) -> tuple[list, list]:
    """A simulated frame's ground-truth 2D boxes as prompts, with their oracle masks (cars whose box
    is empty in the image are left out)."""
    from autolabel_ros.core.types import Prompt

    prompts, masks = [], []
    for g in sf.gt:
        b = g.box2d
        if b is None or b[2] <= b[0] or b[3] <= b[1]:
            continue
        prompts.append(Prompt(id=g.id, box=b, sources=('gt',)))
        masks.append(sf.masks == g.id)
    return prompts, masks


def build_sequence(seed: int, beams: int, frames: int, labeler, log=print) -> Path:
    """Simulate and label one sequence into its cache folder (frames already there are kept)."""
    from autolabel_ros.sim.drive import Simulator

    out = seq_dir(seed, beams, frames)
    out.mkdir(parents=True, exist_ok=True)
    sim = None
    for i in range(frames):
        path = out / f'{i:06d}.npz'
        if path.exists():
            continue
        sim = sim or Simulator(seed, n_frames=frames, beams=beams, n_cars=N_CARS)
        t0 = time.perf_counter()
        sf = sim.frame(i)
        prompts, masks = gt_prompts(sf)
        t1 = time.perf_counter()
        res = labeler.label(sf.frame, prompts, masks)
        arrays = {'points': sf.frame.points[:, :3].astype(np.float32), 'T_world_lidar': sf.T_world_lidar,
                  'stamp_ns': np.int64(sf.frame.stamp_ns), 'T_cam_lidar': sf.frame.T_cam_lidar,
                  'K': sf.frame.K, 'image_size': np.array([sf.frame.width, sf.frame.height]),
                  **_gt_arrays(sf), **_label_arrays(res.labels)}
        tmp = path.with_suffix('.tmp.npz')
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        log(f'[tracks] seq {seed} b{beams} frame {i}: {len(prompts)} cars, sim {t1 - t0:.1f} s, '
            f'label {time.perf_counter() - t1:.1f} s')
    return out


def load_sequence(seed: int, beams: int, frames: int) -> list[dict]:
    out = seq_dir(seed, beams, frames)
    seq = []
    for i in range(frames):
        with np.load(out / f'{i:06d}.npz') as z:
            seq.append({k: z[k] for k in z.files})
    return seq


def make_labeler():
    from autolabel_ros.config import AutolabelConfig
    from autolabel_ros.core.device import set_torch_threads
    from autolabel_ros.pipeline import Autolabeler

    cfg = AutolabelConfig()
    set_torch_threads(cfg.fit.threads or 1)
    return Autolabeler(cfg)


if __name__ == '__main__':
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    p = argparse.ArgumentParser(description='simulate + label the tracking benchmark sequences')
    p.add_argument('--sequences', type=int, default=3)
    p.add_argument('--frames', type=int, default=20)
    p.add_argument('--beams', default='64,32')
    a = p.parse_args()
    lab = make_labeler()
    for k in range(a.sequences):
        for b in (int(x) for x in a.beams.split(',')):
            build_sequence(SEQ_SEED0 + k, b, a.frames, lab)
