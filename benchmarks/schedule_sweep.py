"""Fit schedules side by side on captured evidence: thread CPU seconds per instance and accuracy.

The evidence of a set's frames is captured once (``benchmarks/profile_fit.py``'s capture, cached
MobileSAM masks); each schedule (``fit`` config overrides, JSON) then fits every frame on one torch
thread and builds its labels. Reported per schedule: the median thread-CPU seconds per instance
(fit + labels, the timing row's figure) and its fit stages, and against the ground truth of each
prompt's car: mean 3D IoU, share with IoU >= 0.5 and >= 0.7, flipped headings (error > 90 deg).
A quick proxy for choosing schedule constants; the benchmark rows (run_all.py) are the result.

    python benchmarks/schedule_sweep.py --set sim --frames 20 --evidence /tmp/ev_sim.pkl \\
        --schedule base='{}' --schedule short='{"iterations": 60}'
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_evidence(set_name: str, n_frames: int | None, path: str | None) -> list[tuple]:
    from benchmarks.profile_fit import capture
    if path and Path(path).is_file():
        with open(path, 'rb') as fh:
            return pickle.load(fh)
    frames = capture(set_name, n_frames)
    if path:
        with open(path, 'wb') as fh:
            pickle.dump(frames, fh)
    return frames


def ground_truth(set_name: str):
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d
    from benchmarks.run_all import KITTI, apollo_root, sim_root
    ds = KittiObjectDataset({'kitti': KITTI, 'sim': sim_root(64), 'apollo': apollo_root()}[set_name])

    def boxes(fid):
        calib = ds.calib(fid)
        return [kitti_to_label3d(o, calib).box7 for o in ds.labels(fid)]
    return boxes


def run_schedule(frames: list[tuple], gt, overrides: dict) -> dict:
    import torch

    import autolabel_ros.fit.result as result
    from autolabel_ros.config import from_dict
    from autolabel_ros.core.types import wrap_angle
    from autolabel_ros.eval.iou import iou3d_lidar
    from autolabel_ros.pipeline import Autolabeler
    torch.set_num_threads(1)
    al = Autolabeler(from_dict({'fit': overrides}))
    per_cpu, ious, flips, stages, boxes = [], [], [], {}, []
    for k, (fid, frame, prompts, ev, rest) in enumerate([frames[0]] + list(frames)):
        c0 = time.thread_time()
        fits, ft = al.fitter.fit(frame, ev, *rest)
        labels = [result.make_label(prompts[o.index], o, f, al.sdf, al.cfg, ev.scan_nonground)
                  for o, f in zip(ev.objects, fits)]
        c1 = time.thread_time()
        if k == 0:          # warm-up
            continue
        per_cpu.append((c1 - c0) / len(labels))
        for name, v in ft.stages.cpu.items():
            stages[name] = stages.get(name, 0.0) + v
        truth = gt(fid)
        for o, lab in zip(ev.objects, labels):
            g = truth[prompts[o.index].id]
            ious.append(iou3d_lidar(lab.box7, g))
            boxes.append(np.asarray(lab.box7, float))
            flips.append(abs(wrap_angle(lab.yaw - g[6])) > np.pi / 2)
    n = len(ious)
    ious = np.array(ious)
    return dict(median_cpu=float(np.median(per_cpu)), mean_cpu=float(np.mean(per_cpu)), n=n,
                iou=float(ious.mean()), iou50=float((ious >= 0.5).mean()), iou70=float((ious >= 0.7).mean()),
                flips=int(np.sum(flips)), stages={k: v / n for k, v in stages.items()}, boxes=boxes)


def agreement(boxes: list, base: list) -> str:
    """How far a schedule's labels lie from the first schedule's (the same evidence): mean 3D IoU between
    the two labels of each car, mean centre shift, and the cars whose heading differs by > 90 deg."""
    from autolabel_ros.core.types import wrap_angle
    from autolabel_ros.eval.iou import iou3d_lidar
    iou = np.mean([iou3d_lidar(a, b) for a, b in zip(boxes, base)])
    shift = np.mean([np.linalg.norm(a[:3] - b[:3]) for a, b in zip(boxes, base)])
    flipped = sum(abs(wrap_angle(a[6] - b[6])) > np.pi / 2 for a, b in zip(boxes, base))
    return f'vs the first: 3D IoU {iou:.3f}, centre shift {100 * shift:.1f} cm, heading flipped {flipped}'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--set', default='sim', choices=('kitti', 'sim', 'apollo'))
    p.add_argument('--frames', type=int, default=None)
    p.add_argument('--evidence', default=None, help='captured evidence (pickle): read, or written if absent')
    p.add_argument('--schedule', action='append', default=[], help='NAME=JSON fit overrides (repeatable)')
    p.add_argument('--stages', action='store_true', help='print the per-stage CPU ms per instance')
    a = p.parse_args(argv)
    frames = load_evidence(a.set, a.frames, a.evidence)
    if a.frames:
        frames = frames[:a.frames]
    gt = ground_truth(a.set)
    base = None
    for s in a.schedule or ['base={}']:
        name, _, js = s.partition('=')
        r = run_schedule(frames, gt, json.loads(js or '{}'))
        print(f'{a.set} {name}: {r["median_cpu"]:.3f} s CPU/inst median ({r["mean_cpu"]:.3f} mean), '
              f'IoU {r["iou"]:.3f}, >=0.5 {r["iou50"]:.3f}, >=0.7 {r["iou70"]:.3f}, '
              f'flips {r["flips"]}/{r["n"]}', flush=True)
        if base is None:
            base = r['boxes']
        else:
            print('   ' + agreement(r['boxes'], base), flush=True)
        if a.stages:
            top = sorted(r['stages'].items(), key=lambda x: -x[1])
            print('   ' + ', '.join(f'{k} {1e3 * v:.0f}' for k, v in top))


if __name__ == '__main__':
    main()
