"""Occupancy benchmark: the per-frame grids of simulated drives against the simulator's ground truth.

    AUTOLABEL_BENCH_CACHE=... python benchmarks/occupancy.py [--seed 700000] [--frames 7] [--beams 64,32]
                                                             [--out DIR]

One drive per LiDAR (the tracking benchmark's first scene, 10 cars), every frame labelled by the
per-frame pipeline from the ground-truth 2D boxes with oracle masks (as benchmarks/track_data.py;
labels with their meshes cached under ``$AUTOLABEL_BENCH_CACHE/occupancy``), ego poses exact. The
grids of the middle frames (each with its full window of neighbours) are built with the default
settings (config section ``occupancy``) and variants, from the per-frame labels and from the tracked
ones (autolabel_ros.track), and scored by autolabel_ros.eval.occupancy against
autolabel_ros.sim.occupancy (cars scored: those with an accepted label within 2 m). Also the time per
frame of the grid beside the time of the labelling.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get('AUTOLABEL_BENCH_CACHE', Path.home() / '.cache' / 'autolabel_ros' / 'bench'))
N_CARS = 10
DEFAULT = 'default (window 2, free 0)'


def labelled_drive(seed: int, beams: int, frames: int, labeler_box: list) -> dict:
    """Per frame: points, pose, stamp, labels (with meshes), ground-truth ids/centres, label seconds."""
    from autolabel_ros.sim.drive import Simulator
    from benchmarks.track_data import gt_prompts

    path = CACHE / 'occupancy' / f'drive{seed}_b{beams}_f{frames}.pkl'
    if path.is_file():
        with open(path, 'rb') as f:
            return pickle.load(f)
    if labeler_box[0] is None:
        from benchmarks.track_data import make_labeler
        labeler_box[0] = make_labeler()
    sim = Simulator(seed, n_frames=frames, beams=beams, n_cars=N_CARS)
    out = []
    for i in range(frames):
        sf = sim.frame(i)
        prompts, masks = gt_prompts(sf)
        t0 = time.perf_counter()
        res = labeler_box[0].label(sf.frame, prompts, masks)
        out.append({'points': sf.frame.points[:, :3].astype(np.float32), 'T': sf.T_world_lidar,
                    'stamp_ns': int(sf.frame.stamp_ns), 'labels': res.labels,
                    'label_s': time.perf_counter() - t0,
                    'gt': [(g.id, g.center.copy()) for g in sf.gt]})
        print(f'[occupancy] b{beams} frame {i}: {len(prompts)} cars labelled in {out[-1]["label_s"]:.1f} s',
              flush=True)
    doc = {'seed': seed, 'beams': beams, 'frames': out}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as f:
        pickle.dump(doc, f)
    return doc


def tracked_labels(drive: dict) -> list:
    from autolabel_ros.offline.tracking import _crop
    from autolabel_ros.track.sequence import track_sequence

    fr = drive['frames']
    res = track_sequence([f['labels'] for f in fr], [f['stamp_ns'] for f in fr], [f['T'] for f in fr],
                         [_crop(f['points'], f['labels']) for f in fr])
    return res.labels


def score_frame(sim, k: int, drive: dict, labels: list, settings, gt_cache: dict) -> dict:
    from autolabel_ros.eval.occupancy import occupancy_scores
    from autolabel_ros.sim.occupancy import gt_occupancy
    from autolabel_ros.track.occupancy import frame_scans, grid_shape, occupancy_grid

    fr = drive['frames']
    t0 = time.perf_counter()
    scans = frame_scans(k, [f['points'] for f in fr], [f['T'] for f in fr], labels, settings)
    g = occupancy_grid(scans, labels[k], settings)
    dt = time.perf_counter() - t0
    origin, shape = grid_shape(settings)
    key = (k, settings.voxel)
    if key not in gt_cache:
        gt_cache[key] = gt_occupancy(sim, k, origin, shape, settings.voxel)
    gt_cls, gt_ids = gt_cache[key]
    acc = [lab for lab in labels[k] if lab.accepted and np.all(np.isfinite(lab.center))]
    cars = [gid for gid, c in fr[k]['gt']
            if acc and min(np.linalg.norm(lab.center - c) for lab in acc) < 2.0]
    sc = occupancy_scores(g.labels, g.instance, gt_cls, gt_ids, cars)
    return {**{k_: v for k_, v in sc.items() if k_ != 'per_car_recall'}, 'seconds': dt, 'counts': g.counts(),
            'free_s': g.stats['free_s'], 'rays': g.stats['rays'], 'samples': g.stats['samples']}


def pool(rows: list[dict]) -> dict:
    out = {}
    for key in ('car_recall', 'car_precision', 'free_precision', 'ground_precision', 'other_precision'):
        v = [r[key] for r in rows if r[key] is not None]
        out[key] = float(np.mean(v)) if v else None
    out['seconds'] = float(np.mean([r['seconds'] for r in rows]))
    out['free_s'] = float(np.mean([r['free_s'] for r in rows]))
    out['free_voxels'] = float(np.mean([r['counts']['free'] for r in rows]))
    out['frames'] = len(rows)
    return out


def main(argv=None) -> int:
    from autolabel_ros.sim.drive import Simulator
    from autolabel_ros.track.occupancy import OccupancySettings

    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seed', type=int, default=700000)
    p.add_argument('--frames', type=int, default=7)
    p.add_argument('--beams', default='64,32')
    p.add_argument('--out', default='/tmp/occupancy-bench')
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    box = [None]
    variants = {DEFAULT: OccupancySettings(),
                'window 0': OccupancySettings(window=0),
                'free_window 2': OccupancySettings(free_window=2),
                'ray_step 0.5': OccupancySettings(ray_step=0.5)}
    results = {}
    for beams in (int(b) for b in a.beams.split(',')):
        drive = labelled_drive(a.seed, beams, a.frames, box)
        sim = Simulator(a.seed, n_frames=a.frames, beams=beams, n_cars=N_CARS)
        per_frame = [f['labels'] for f in drive['frames']]
        tracked = tracked_labels(drive)
        mid = range(2, a.frames - 2)
        gt_cache: dict = {}
        label_s = float(np.mean([f['label_s'] for f in drive['frames']]))
        runs = [('per-frame labels', name, per_frame, s) for name, s in variants.items()]
        runs.append(('tracked labels', DEFAULT, tracked, variants[DEFAULT]))
        for what, name, labels, s in runs:
            key = f'b{beams} | {what} | {name}'
            results[key] = {**pool([score_frame(sim, k, drive, labels, s, gt_cache) for k in mid]),
                            'label_s': label_s}
            print(f'[occupancy] {key}: {results[key]}', flush=True)
    (out / 'occupancy.json').write_text(json.dumps(results, indent=1) + '\n')
    lines = ['| LiDAR | labels | settings | car recall | car precision | free precision | ground precision '
             '| other precision | free voxels | grid s/frame (free space s) | label s/frame |',
             '|' + '---|' * 11]
    f = lambda v: '-' if v is None else f'{100 * v:.1f} %'  # noqa: E731
    for key, r in results.items():
        b, labs, name = key.split(' | ')
        lines.append(f"| {b[1:]} | {labs} | {name} | {f(r['car_recall'])} | {f(r['car_precision'])} "
                     f"| {f(r['free_precision'])} | {f(r['ground_precision'])} | {f(r['other_precision'])} "
                     f"| {r['free_voxels']:.0f} | {r['seconds']:.2f} ({r['free_s']:.2f}) "
                     f"| {r['label_s']:.1f} |")
    md = '\n'.join(lines)
    (out / 'occupancy.md').write_text(md + '\n')
    print(md)
    return 0


if __name__ == '__main__':
    sys.exit(main())
