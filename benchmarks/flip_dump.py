"""Every flipped car of a fit dump, and what the heading choice had to go on.

Reads the dumps of benchmarks/fit_dump.py through the cue values of benchmarks/heading_cues.py (the
default cues and weights re-decide each object exactly as the fit does) and prints, per flipped car:
its KITTI difficulty, distance, the share of its 2D box nearer objects hide, its mask's share of the
box, its fit points (and how many sit in the upper half of the true box: roof and windows seen over
an occluder), the heading error of every surviving hypothesis, and -- when a hypothesis within 45 deg
of the truth survived -- each weighted term of the choice for the true hypothesis minus the chosen one
(positive: the term favoured the wrong one) and the terms that favoured the truth.

The summary splits the flips into
- *no true hypothesis*: no survivor lies within 45 deg of the truth (the heading choice cannot fix
  them; the pruning or the fit's yaw must);
- *nothing favours the truth*: a true hypothesis survived, but none of the fit's energy terms nor any
  enabled cue scores it better;
- *outvoted*: some term favoured the truth, the sum did not.

    python benchmarks/flip_dump.py [--sets apollo,sim,kitti]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fit_dump import uncrop  # noqa: E402
from benchmarks.heading_cues import cue_records, decide, default_weights  # noqa: E402

TRUE_DEG = 45.0
ENERGY_TERMS = ('mask', 'lidar', 'freespace', 'ground', 'shape', 'scale', 'scale_common')


def difficulty(gt: dict) -> str:
    from autolabel_ros.eval.kitti_eval import DIFFICULTIES
    for name in ('easy', 'moderate', 'hard'):
        min_h, max_occ, max_trunc = DIFFICULTIES[name]
        if gt['height2d'] >= min_h and gt['occluded'] <= max_occ and gt['truncated'] <= max_trunc:
            return name
    return 'beyond'


def mask_share(rec: dict) -> float:
    """Share of the 2D box covered by the object's mask."""
    (x0, y0), m = uncrop(rec['mask'], None)
    b = rec['box2d']
    bx0, by0, bx1, by1 = int(np.floor(b[0])), int(np.floor(b[1])), int(np.ceil(b[2])), int(np.ceil(b[3]))
    ys, xs = np.nonzero(m)
    inside = ((xs + x0 >= bx0) & (xs + x0 < bx1) & (ys + y0 >= by0) & (ys + y0 < by1)).sum()
    return float(inside / max((bx1 - bx0) * (by1 - by0), 1))


def yaw_err(a: dict, gt: dict) -> float:
    return float(np.degrees(np.angle(np.exp(1j * (a['pose'][3] - gt['yaw'])))))


def contributions(t: dict, c: dict, cues, w: dict) -> dict:
    """Per term, the true hypothesis' weighted value minus the chosen one's (> 0: it favoured the
    chosen, wrong one): the energy terms at their weights in the energy, the cues at theirs."""
    from autolabel_ros.config import from_dict
    fc = from_dict({}).fit
    we = {'mask': fc.w_mask, 'lidar': fc.w_lidar, 'freespace': fc.w_lidar * fc.w_freespace,
          'ground': fc.w_ground, 'shape': fc.w_shape, 'scale': fc.w_scale, 'scale_common': fc.w_scale_common}
    out = {k: we[k] * (t['terms'].get(k, 0.0) - c['terms'].get(k, 0.0)) for k in ENERGY_TERMS}
    out.update({k: w[k] * (t['terms'].get(f'cue_{k}', 0.0) - c['terms'].get(f'cue_{k}', 0.0)) for k in cues})
    return out


def flip_rows(name: str, cues, w: dict) -> list[dict]:
    recs = cue_records(name)
    rows = []
    for r, x in zip(recs, decide(recs, cues, w)):
        if not x['flipped']:
            continue
        g, ch = r['gt'], r['alts'][x['index']]
        c, s = np.cos(g['yaw']), np.sin(g['yaw'])
        rel = r['points'] - g['center']
        up = rel[:, 2] > 0.05 * g['size'][2] if len(rel) else np.zeros(0, bool)
        row = dict(set=name, frame=r['frame'], line=r['line'] + 1, difficulty=difficulty(g),
                   dist=float(np.linalg.norm(g['center'][:2])), occluded=r['occluded_share'],
                   mask=mask_share(r), n=len(r['points']), n_up=int(up.sum()),
                   u_up=float(np.mean(rel[up, 0] * c + rel[up, 1] * s) / (g['size'][0] / 2)) if up.any()
                   else float('nan'),
                   errs=[yaw_err(a, g) for a in r['alts']], chosen=x['index'])
        true = [a for a in r['alts'] if np.cos(a['pose'][3] - g['yaw']) > np.cos(np.radians(TRUE_DEG))]
        if true:
            t = min(true, key=lambda a: a['energy'])
            row['terms'] = contributions(t, ch, cues, w)
            row['favour_true'] = [k for k, v in row['terms'].items() if v < -1e-6]
            row['iou_true'], row['iou_chosen'] = t['iou3d'], ch['iou3d']
        rows.append(row)
    return rows


def report(rows: list[dict], n_cars: int, name: str) -> list[str]:
    lines = [f'## {name}: {len(rows)} flipped of {n_cars} cars', '']
    for r in rows:
        head = (f"{r['frame']}/{r['line']:<2d} {r['difficulty']:8s} {r['dist']:5.1f} m"
                f"  hidden {r['occluded']:.2f}"
                f"  mask {r['mask']:.2f}  pts {r['n']:4d} (upper {r['n_up']:3d}, along {r['u_up']:+.2f})"
                f"  survivors {' '.join(f'{e:+.0f}' for e in r['errs'])} deg")
        if 'terms' not in r:
            lines.append(head + '  | no true hypothesis')
            continue
        against = sorted(((v, k) for k, v in r['terms'].items() if v > 1e-6), reverse=True)[:3]
        lines.append(head + f"  | IoU true {r['iou_true']:.2f} chosen {r['iou_chosen']:.2f}  against: "
                     + ', '.join(f'{k} {v:+.3f}' for v, k in against)
                     + f"  for: {', '.join(r['favour_true']) or 'nothing'}")
    by_diff = {d: sum(r['difficulty'] == d for r in rows) for d in ('easy', 'moderate', 'hard', 'beyond')}
    none = sum('terms' not in r for r in rows)
    nothing = sum('terms' in r and not r['favour_true'] for r in rows)
    lines += ['', 'by difficulty: ' + ', '.join(f'{k} {v}' for k, v in by_diff.items()),
              f'no true hypothesis survived: {none}; nothing favours the truth: {nothing}; '
              f'outvoted: {len(rows) - none - nothing}', '']
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sets', default='apollo,sim,kitti')
    a = p.parse_args(argv)
    from autolabel_ros.config import from_dict
    cues, w = from_dict({}).fit.heading_cues, default_weights()
    for name in [s for s in a.sets.split(',') if s]:
        rows = flip_rows(name, cues, w)
        print('\n'.join(report(rows, len(cue_records(name)), name)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
