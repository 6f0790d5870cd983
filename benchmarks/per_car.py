"""Per-car error breakdown of one fit configuration (a diagnosis tool beside run_all.py).

    python benchmarks/per_car.py --dataset kitti|sim64 [--frames N] [--masks sam|gt] \
        [--config '{"fit": {"w_ground": 4}}'] [--cars]

Labels the split with cached segmenter masks (the run_all.py cache), evaluates it, and prints the
signed errors of every matched car in the car's own frame: centre along/across the heading, bottom
height, length/width/height, heading (flips marked), 3D IoU. Means of the signed errors show the
systematic biases (e.g. fits sitting high or short) that the AP numbers hide.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_all  # noqa: E402  (benchmarks/ is not a package)


# the scan "sees" a car's length when its points in the car's box (grown by SEEN_GROW m, the lowest
# SEEN_GROUND m cut: the road) span at least SEEN_SHARE of the length (1st-99th percentile along it)
SEEN_GROW, SEEN_GROUND, SEEN_SHARE = 0.3, 0.3, 0.8


def seen_length(xyz: np.ndarray, center, size, yaw: float) -> float:
    """Share of the car's length its scan points span (1st-99th percentile along the heading, points in
    the box grown by SEEN_GROW m, above its lowest SEEN_GROUND m); 0 with fewer than 3 points."""
    d = np.asarray(xyz, float)[:, :3] - np.asarray(center, float)
    c, s = np.cos(yaw), np.sin(yaw)
    u, v = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
    L, W, H = size
    sel = (np.abs(u) < L / 2 + SEEN_GROW) & (np.abs(v) < W / 2 + SEEN_GROW) \
        & (d[:, 2] > -H / 2 + SEEN_GROUND) & (d[:, 2] < H / 2 + SEEN_GROW)
    if sel.sum() < 3:
        return 0.0
    return float((np.percentile(u[sel], 99) - np.percentile(u[sel], 1)) / L)


def car_errors(gt_dir: Path, pred_dir: Path, frames) -> list[dict]:
    from autolabel_ros.core.types import wrap_angle
    from autolabel_ros.eval.iou import iou3d_lidar
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d, read_calib, read_label_file
    rows = []
    ds = KittiObjectDataset(gt_dir.parent)
    for fid in frames:
        calib = read_calib(gt_dir.parent / 'calib' / f'{fid}.txt')
        xyz = ds.load_frame(fid).xyz
        gts = [kitti_to_label3d(o, calib) for o in read_label_file(gt_dir / f'{fid}.txt') if o.type == 'Car']
        pf = pred_dir / f'{fid}.txt'
        preds = [kitti_to_label3d(o, calib) for o in read_label_file(pf)] if pf.exists() else []
        for k, g in enumerate(gts):
            if not preds:
                rows.append({'frame': fid, 'k': k, 'iou': 0.0, 'missing': True})
                continue
            d = [np.linalg.norm(p.center[:2] - g.center[:2]) for p in preds]
            p = preds[int(np.argmin(d))]
            c, s = np.cos(g.yaw), np.sin(g.yaw)
            dxy = p.center[:2] - g.center[:2]
            box = lambda lab: np.r_[lab.center, lab.size, lab.yaw]  # noqa: E731
            rows.append({
                'frame': fid, 'k': k, 'range': float(np.linalg.norm(g.center[:2])),
                'd_along': float(dxy @ [c, s]), 'd_across': float(dxy @ [-s, c]),
                'd_bottom': float((p.center[2] - p.size[2] / 2) - (g.center[2] - g.size[2] / 2)),
                'dl': float(p.size[0] - g.size[0]), 'dw': float(p.size[1] - g.size[1]),
                'dh': float(p.size[2] - g.size[2]),
                'dyaw': float(np.degrees(wrap_angle(p.yaw - g.yaw))),
                'iou': float(iou3d_lidar(box(p), box(g))), 'score': float(p.score or 0),
                'gt_l': float(g.size[0]), 'seen': seen_length(xyz, g.center, g.size, g.yaw)})
    return rows


def length_split(rows: list[dict]) -> str:
    """Mean signed length error of the cars whose length the scan sees (seen_length >= SEEN_SHARE) and
    of the others (their far end unseen: the length comes from the prior)."""
    parts = []
    for name, sel in (('length seen', lambda x: x['seen'] >= SEEN_SHARE),
                      ('far end unseen', lambda x: x['seen'] < SEEN_SHARE)):
        xs = [x for x in rows if sel(x)]
        if xs:
            parts.append(f"{name}: {len(xs)} cars, dl {np.mean([x['dl'] for x in xs]):+.3f} m (ground truth "
                         f"{np.mean([x['gt_l'] for x in xs]):.2f} m, fit "
                         f"{np.mean([x['gt_l'] + x['dl'] for x in xs]):.2f} m)")
    return 'signed length error by scan coverage: ' + '; '.join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='kitti', choices=['kitti', 'sim64', 'sim32', 'sim16', 'apollo64'])
    ap.add_argument('--frames', type=int, default=0, help='first N frames (0 = all)')
    ap.add_argument('--masks', default='sam', choices=['sam', 'gt'])
    ap.add_argument('--prompts', default='gt-boxes', choices=['gt-boxes', 'gt-points'])
    ap.add_argument('--config', default='{}', help='config overrides as JSON')
    ap.add_argument('--cars', action='store_true', help='print every car')
    ap.add_argument('--name', default='')
    a = ap.parse_args(argv)
    data = {'kitti': run_all.KITTI, 'apollo64': run_all.apollo_root()}.get(a.dataset) \
        or run_all.sim_root(int(a.dataset[3:]))
    from autolabel_ros.io.kitti import KittiObjectDataset
    frames = KittiObjectDataset(data).frame_ids
    frames = frames[:a.frames] if a.frames else frames
    name = 'per_car_' + (a.name or str(abs(hash((a.dataset, a.config, a.masks, a.prompts)))))
    spec = dict(name=name, dataset=a.dataset, data=str(data), prompts=a.prompts, masks=a.masks,
                frames=frames, config=json.loads(a.config))
    row = run_all.run_one(spec)          # predictions go to the benchmark cache's pred/<name>
    rows = car_errors(data / 'label_2', run_all.CACHE / 'pred' / name, frames)
    r = row['result']
    print(f"{a.name or a.config}: 3D@0.5 mod {r['3D@0.5']['moderate']:.1f}  3D@0.7 mod "
          f"{r['3D@0.7']['moderate']:.1f}  BEV@0.7 mod {r['BEV@0.7']['moderate']:.1f}  mIoU "
          f"{r['mean_iou3d']:.3f}  flip {r['flip_rate']:.3f}  fit {row['median_fit_s_per_instance']:.2f} s")
    ok = [x for x in rows if not x.get('missing')]
    keys = ['d_along', 'd_across', 'd_bottom', 'dl', 'dw', 'dh']
    good = [x for x in ok if abs(x['dyaw']) < 90]
    if good:
        means = '  '.join(f"{k} {np.mean([x[k] for x in good]):+.3f}" for k in keys)
        print('  mean signed (unflipped): ' + means
              + f"  |dyaw| med {np.median([abs(x['dyaw']) for x in good]):.1f}")
    if good:
        print('  ' + length_split(good))
    if a.cars:
        for x in rows:
            if x.get('missing'):
                print(f"  {x['frame']}#{x['k']}: no prediction")
                continue
            print(f"  {x['frame']}#{x['k']} r={x['range']:5.1f} " + ' '.join(f'{k}={x[k]:+.2f}' for k in keys)
                  + f" yaw={x['dyaw']:+6.1f} iou={x['iou']:.2f}" + (' FLIP' if abs(x['dyaw']) > 90 else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
