"""Which error costs each car its 3D IoU: per car, the IoU the label would have if one component of
its box were the ground truth's (the rest left as fitted), next to the signed errors.

Components, in the ground-truth car's frame: centre along the car (``along``) and across it
(``across``), the box bottom (``bottom``: KITTI boxes stand on their bottom), length, width, height
(height changed about the label's bottom), heading (modulo 180 deg: IoU ignores flips) and
``len+along`` (length and along-centre together: an end the data does not see moves both). The
gain of a component = IoU with it corrected - IoU as labelled; the table averages the gains over
the cars of an IoU band. Per car also: range, scan points in the ground-truth box, how much of its
length they span (``seen``; the table also groups the cars by it), KITTI occlusion and truncation,
view (``end-on`` when the camera looks along the car), and whether the length error sits at the far
end (the box's near end where the car's is, its far end off) or at the near one.

    python benchmarks/iou_decomp.py PRED_DIR [--data KITTI-layout training dir] [--cars]

PRED_DIR = a prediction folder of a benchmark row (e.g. ``$AUTOLABEL_BENCH_CACHE/pred/<row>``);
matching: the label nearest (bird's-eye centre) each ground-truth car, within 4 m.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMPONENTS = ('along', 'across', 'bottom', 'length', 'width', 'height', 'yaw', 'len+along')
MATCH_M = 4.0
GROUND_M = 0.25
END_ON_COS = np.cos(np.radians(30))    # end-on: the car's axis within 30 deg of the line of sight


def _corrected(p: np.ndarray, g: np.ndarray, comp: str) -> np.ndarray:
    """Box p (x, y, z, l, w, h, yaw; LiDAR frame, z = centre) with component ``comp`` taken from g."""
    q = p.copy()
    c, s = np.cos(g[6]), np.sin(g[6])
    u, v = np.array([c, s]), np.array([-s, c])
    d = p[:2] - g[:2]
    if comp in ('along', 'len+along'):
        q[:2] -= (d @ u) * u
    if comp == 'across':
        q[:2] -= (d @ v) * v
    if comp == 'bottom':
        q[2] = (g[2] - g[5] / 2) + p[5] / 2
    if comp in ('length', 'len+along'):
        q[3] = g[3]
    if comp == 'width':
        q[4] = g[4]
    if comp == 'height':
        q[5] = g[5]
        q[2] = (p[2] - p[5] / 2) + g[5] / 2
    if comp == 'yaw':
        dy = (g[6] - p[6] + np.pi / 2) % np.pi - np.pi / 2     # nearest of g's heading and its flip
        q[6] = p[6] + dy
    return q


def car_rows(root: Path, pred_dir: Path, frames) -> list[dict]:
    from autolabel_ros.core.types import wrap_angle
    from autolabel_ros.eval.iou import iou3d_lidar
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d, read_label_file
    ds = KittiObjectDataset(root)
    rows = []
    for fid in frames:
        calib = ds.calib(fid)
        xyz = ds.load_frame(fid).xyz[:, :3].astype(float)
        pf = pred_dir / f'{fid}.txt'
        preds = [kitti_to_label3d(o, calib) for o in read_label_file(pf)] if pf.is_file() else []
        pb = [np.r_[p.center, p.size, p.yaw] for p in preds]
        for line, o in enumerate(ds.labels(fid)):
            if o.type != 'Car':
                continue
            lab = kitti_to_label3d(o, calib)
            g = np.r_[lab.center, lab.size, lab.yaw]
            c, s = np.cos(g[6]), np.sin(g[6])
            rel = xyz - g[:3]
            along, across = rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c
            inside = (np.abs(along) < g[3] / 2) & (np.abs(across) < g[4] / 2) & (np.abs(rel[:, 2]) < g[5] / 2)
            # how much of the car's length the scan spans (1st-99th percentile along it of the points
            # above the lowest GROUND_M: the road under and behind the car is no sight of the car)
            body = inside & (rel[:, 2] > GROUND_M - g[5] / 2)
            seen = float(np.ptp(np.percentile(along[body], [1, 99])) / g[3]) if body.sum() >= 5 else 0.0
            view = abs(np.cos(g[6] - np.arctan2(g[1], g[0])))       # 1: looking along the car
            base = dict(frame=fid, line=line + 1, range=float(np.linalg.norm(g[:2])),
                        points=int(inside.sum()), occluded=int(o.occluded), truncated=float(o.truncated),
                        end_on=bool(view > END_ON_COS), seen=seen, gt_l=float(g[3]))
            d = [np.linalg.norm(b[:2] - g[:2]) for b in pb]
            if not d or min(d) > MATCH_M:
                rows.append(dict(base, missing=True, iou=0.0))
                continue
            p = pb[int(np.argmin(d))]
            iou = float(iou3d_lidar(p, g))
            u = np.array([c, s])
            dxy = p[:2] - g[:2]
            # the far end of the car points away from the sensor: sign of u . centre
            far = np.sign(u @ g[:2]) or 1.0
            # where the length error sits: the near end's and the far end's offsets along u
            d_near = (dxy @ u - far * (p[3] - g[3]) / 2) * -far      # + = label's near end nearer
            d_far = (dxy @ u + far * (p[3] - g[3]) / 2) * far        # + = label's far end farther
            rng_p, rng_g = np.linalg.norm(p[:3]), np.linalg.norm(g[:3])
            rows.append(dict(
                base, iou=iou, d_along=float(dxy @ u), d_across=float(dxy @ [-s, c]),
                d_depth=float(rng_p - rng_g),
                d_bottom=float((p[2] - p[5] / 2) - (g[2] - g[5] / 2)),
                dl=float(p[3] - g[3]), dw=float(p[4] - g[4]), dh=float(p[5] - g[5]),
                near_end=float(d_near), far_end=float(d_far),
                dyaw=float(np.degrees(wrap_angle(p[6] - g[6]))),
                gain={k: float(iou3d_lidar(_corrected(p, g, k), g)) - iou for k in COMPONENTS}))
    return rows


def print_tables(rows: list[dict], title: str = '', cars: bool = False, moderate: bool = False) -> None:
    ok = [r for r in rows if not r.get('missing')]
    if moderate:        # KITTI's moderate cars: occlusion <= 1, truncation <= 0.3 (the AP@moderate ones)
        ok = [r for r in ok if r['occluded'] <= 1 and r['truncated'] <= 0.3]
    keys = ['d_along', 'd_across', 'd_depth', 'd_bottom', 'dl', 'dw', 'dh', 'near_end', 'far_end']
    what = ' (occlusion <= 1, truncation <= 0.3)' if moderate else ''
    print(f'\n{title}{what}: {len(ok)} cars with a label; '
          f'mean IoU3D {np.mean([r["iou"] for r in ok]):.3f}; IoU >= 0.7: {sum(r["iou"] >= 0.7 for r in ok)}')
    bands = [('IoU >= 0.7', 0.7, 1.01), ('0.5 <= IoU < 0.7', 0.5, 0.7), ('IoU < 0.5', -1, 0.5)]
    bands = [(n, lambda r, lo=lo, hi=hi: lo <= r['iou'] < hi) for n, lo, hi in bands] + [
        ('scan spans >= 80 % of the length', lambda r: r['seen'] >= 0.8),
        ('scan spans 50-80 %', lambda r: 0.5 <= r['seen'] < 0.8),
        ('scan spans < 50 %', lambda r: r['seen'] < 0.5)]
    print('\n| band | cars | ' + ' | '.join(f'gain {k}' for k in COMPONENTS) + ' | '
          + ' | '.join(f'mean {k}' for k in keys) + ' | mean abs dyaw |')
    print('|---|---|' + '---|' * (len(COMPONENTS) + len(keys) + 1))
    for name, pick in bands:
        sel = [r for r in ok if pick(r)]
        if not sel:
            continue
        gains = ' | '.join(f"{np.mean([r['gain'][k] for r in sel]):+.3f}" for k in COMPONENTS)
        errs = ' | '.join(f"{np.mean([r[k] for r in sel]):+.2f}" for k in keys)
        dyaw = np.mean([min(abs(r['dyaw']), 180 - abs(r['dyaw'])) for r in sel])
        print(f'| {name} | {len(sel)} | {gains} | {errs} | {dyaw:.1f} |')
    # would one fix lift the 0.5-0.7 band over 0.7?
    mid = [r for r in ok if 0.5 <= r['iou'] < 0.7]
    if mid:
        over = {k: sum(r['iou'] + r['gain'][k] >= 0.7 for r in mid) for k in COMPONENTS}
        print('\n0.5-0.7 band, cars over 0.7 with one component corrected: '
              + ', '.join(f'{k} {v}' for k, v in over.items()) + f' (of {len(mid)})')
    if cars:
        for r in rows:
            if r.get('missing'):
                print(f"  {r['frame']}:{r['line']} no label")
                continue
            top = max(COMPONENTS, key=lambda k: r['gain'][k])
            print(f"  {r['frame']}:{r['line']:<2} r={r['range']:5.1f} pts={r['points']:5d} "
                  f"occ={r['occluded']} "
                  f"tr={r['truncated']:.2f} seen={r['seen']:.2f} L={r['gt_l']:.2f} "
                  f"{'end-on' if r['end_on'] else 'side  '} iou={r['iou']:.2f} "
                  + ' '.join(f'{k}={r[k]:+.2f}' for k in keys) + f" yaw={r['dyaw']:+6.1f}"
                  + f" | worst {top} {r['gain'][top]:+.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    shared = Path(os.environ.get('AUTOLABEL_SHARED_DATA', ROOT.parent / 'shared' / 'data'))
    p.add_argument('pred', help='prediction folder (KITTI label files)')
    p.add_argument('--data', default=str(shared / 'kitti_object' / 'training'))
    p.add_argument('--cars', action='store_true', help='print every car')
    p.add_argument('--moderate', action='store_true', help='only cars of occlusion <= 1, truncation <= 0.3')
    a = p.parse_args(argv)
    from autolabel_ros.io.kitti import KittiObjectDataset
    root, pred = Path(a.data), Path(a.pred)
    for path, what in ((root / 'label_2', 'no label_2 folder'), (pred, 'no such prediction folder')):
        if not path.is_dir():
            print(f'{path}: {what}', file=sys.stderr)
            return 2
    frames = [f for f in KittiObjectDataset(root).frame_ids if (pred / f'{f}.txt').is_file()]
    print_tables(car_rows(root, pred, frames), str(pred.name), a.cars, a.moderate)
    return 0


if __name__ == '__main__':
    sys.exit(main())
