"""Offline sweeps of the two rules that keep hybrid's Procrustes hypothesis out of a fit, from the
dumps of benchmarks/hybrid_cars.py (variants hybrid-every-procrustes, or hybrid before the
lifted-hypothesis gate, and hybrid-no-procrustes, or slf, of the same frames).

- Prune handicap d (``css.procrustes_handicap``): the Procrustes hypothesis enters the fit's pruning with
  its energy + d, so it goes on only where it beats the Segment-Lift-Fit hypotheses by d.
- Lifted-hypothesis offset m (``css.procrustes_min_offset``): it is added only where its centre is at
  least m from the LiDAR-lifted hypothesis of the nearest heading (the dumped ``procrustes.dxy``).

Where it is left out the object's fit is the one without it (hybrid-no-procrustes: the fits of an object
do not depend on the other hypotheses; slf where the dump has no hybrid-no-procrustes, the same car for
car on these sets, docs/SDFLABEL.md), elsewhere the hybrid fit; the sweep composes those label files and
evaluates them.

    python benchmarks/hybrid_prune_sweep.py --dataset kitti|sim64|apollo64 [--tag T]
        [--deltas 0,0.01,...] [--offsets 0,0.2,...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'benchmarks'))
import run_all  # noqa: E402  (benchmarks/ is not a package)
from autolabel_ros.fit.optimize import _best_per_object  # noqa: E402


def procrustes_kept(car: dict, base_n: int, delta: float) -> bool:
    """Whether the pruning keeps the Procrustes hypothesis (the last one, where the car has one more
    hypothesis than without it) when its pruning energy is handicapped by ``delta``."""
    h = car.get('hyp_energies') or []
    if len(h) <= base_n:
        return False
    e = np.array([x['energy_pruning'] for x in h], float)
    e[-1] += delta
    yaw = np.array([x['yaw0'] for x in h], float)
    return (len(h) - 1) in _best_per_object(e, np.zeros(len(h), int), 1, 2, yaw).tolist()


def procrustes_added(car: dict, base_n: int, offset: float) -> bool:
    """Whether the lifted-hypothesis gate adds the Procrustes pose (see the module docstring)."""
    p = car.get('procrustes') or {}
    return len(car.get('hyp_energies') or []) > base_n and p.get('dxy', -1.0) >= offset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='kitti', choices=['kitti', 'sim64', 'apollo64'])
    ap.add_argument('--tag', default='')
    ap.add_argument('--deltas', default='0,0.005,0.01,0.02,0.05,0.1,1e9')
    ap.add_argument('--offsets', default='', help='lifted-hypothesis offsets (m) to sweep, e.g. 0,0.2,0.5')
    a = ap.parse_args(argv)
    from autolabel_ros.eval import evaluate
    tag = a.tag or a.dataset
    runs = json.loads((run_all.CACHE / 'pred' / f'hybrid_cars {tag}.json').read_text())
    data = {'kitti': run_all.KITTI, 'apollo64': run_all.apollo_root()}.get(a.dataset) or run_all.sim_root(64)
    base = 'hybrid-no-procrustes' if 'hybrid-no-procrustes' in runs else 'slf'
    every = 'hybrid-every-procrustes' if 'hybrid-every-procrustes' in runs else 'hybrid'
    hyb, nop = runs[every], runs[base]
    d_hyb = run_all.CACHE / 'pred' / f'hybrid_cars {tag} {every}'
    d_nop = run_all.CACHE / 'pred' / f'hybrid_cars {tag} {base}'
    frames = sorted(p.stem for p in d_hyb.glob('*.txt'))
    # per frame, the prediction lines in instance order (car_records' order); labels of non-cars too
    lines = {v: {f: (d / f'{f}.txt').read_text().splitlines() for f in frames} for v, d in
             (('h', d_hyb), ('n', d_nop))}
    # per frame and prediction line: the car records of both runs (same prompts, same order)
    by_line = {(c_h['frame'], c_h['pred_line']): (c_h, c_n) for c_h, c_n in zip(hyb, nop)
               if c_h.get('pred_line') is not None}
    energies = [x['energy_pruning'] for c in hyb for x in (c.get('hyp_energies') or [])]
    print(f'pruning energies: median {np.median(energies):.3f}, 10-90 % {np.percentile(energies, 10):.3f}'
          f' .. {np.percentile(energies, 90):.3f}; with / without Procrustes: {every} / {base}')
    tmp = Path(tempfile.mkdtemp())
    print('| rule | Procrustes in the fit | 3D@0.5 mod | 3D@0.7 mod | BEV@0.7 mod | mean IoU3D | IoU >= 0.7 '
          '| flips |')
    print('| --- ' * 8 + '|')
    rules = [(f'handicap {d:g}', lambda c_h, n, d=d: procrustes_kept(c_h, n, d))
             for d in (float(x) for x in a.deltas.split(',') if x)]
    rules += [(f'offset {m:g} m', lambda c_h, n, m=m: procrustes_added(c_h, n, m))
              for m in (float(x) for x in a.offsets.split(',') if x)]
    for name, rule in rules:
        kept, ious, flips = 0, [], 0
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f in frames:
            out = []
            for j in range(len(lines['h'][f])):
                c_h, c_n = by_line.get((f, j), ({}, {}))
                use = bool(c_h) and rule(c_h, c_n.get('n_hyp') or 0)
                kept += use
                out.append(lines['h' if use else 'n'][f][j])
                c = c_h if use else c_n
                if c and not c.get('missed'):
                    ious.append(c.get('iou3d', 0.0))
                    flips += bool(c.get('flipped'))
            (tmp / f'{f}.txt').write_text('\n'.join(out) + ('\n' if out else ''))
        r = evaluate(data / 'label_2', tmp, frames)
        print(f"| {name} | {kept} | {r['3D@0.5']['moderate']:.1f} | {r['3D@0.7']['moderate']:.1f} | "
              f"{r['BEV@0.7']['moderate']:.1f} | {np.mean(ious):.4f} | "
              f"{np.mean(np.array(ious) >= 0.7):.3f} | "
              f'{flips} / {len(ious)} |', flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
