"""What the scan says about each ground-truth car's size, next to its label: is a set's box
convention tighter than the cars, or are its labels guesses where the scan does not see the car?

Per Car label of a KITTI-layout split: the scan points in its box grown by ``GROW_L`` m in length and
``GROW_W`` m in width (minus the lowest ``GROUND_M`` m: the road), their extent along the car's
length (1st-99th percentile) and how far they reach past the label's ends and sides, whether the
scan covers both ends (>= 3 points within ``END_M`` of each), and the view (end-on: the camera looks
along the car, |cos(alpha)| < 0.3). Summary: the label's length minus the scan's extent where both
ends are seen (the box convention), and the mean label length of the end-on cars whose far end the
scan misses (where the annotator could only guess).

    python benchmarks/size_evidence.py [KITTI-layout training dir] [--frames 000000,000001]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROW_L, GROW_W, GROUND_M, END_M, MIN_POINTS = 0.6, 0.3, 0.3, 0.4, 30


def car_evidence(ds, fid: str) -> list[dict]:
    from autolabel_ros.io.kitti import kitti_to_label3d
    frame, calib = ds.load_frame(fid), ds.calib(fid)
    xyz = frame.xyz[:, :3].astype(float)
    out = []
    for line, o in enumerate(ds.labels(fid)):
        if o.type != 'Car':
            continue
        lab = kitti_to_label3d(o, calib)
        L, W, H = lab.size
        d = xyz - np.asarray(lab.center)
        c, s = np.cos(lab.yaw), np.sin(lab.yaw)
        u, v, z = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c, d[:, 2]
        sel = (np.abs(u) < L / 2 + GROW_L) & (np.abs(v) < W / 2 + GROW_W) & (z > -H / 2 + GROUND_M) \
            & (z < H / 2 + 0.1)
        if sel.sum() < MIN_POINTS:
            continue
        uu, vv = u[sel], v[sel]
        both = (uu > L / 2 - END_M).sum() >= 3 and (uu < -L / 2 + END_M).sum() >= 3
        past_ends = max(np.percentile(uu, 99.5) - L / 2, -L / 2 - np.percentile(uu, 0.5))
        out.append(dict(frame=fid, line=line + 1, points=int(sel.sum()), length=L, width=W,
                        extent=float(np.percentile(uu, 99) - np.percentile(uu, 1)),
                        past_ends=float(past_ends),
                        past_sides=float(np.percentile(np.abs(vv), 99.5) - W / 2),
                        both_ends=bool(both), end_on=bool(abs(np.cos(o.alpha)) < 0.3)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    shared = Path(os.environ.get('AUTOLABEL_SHARED_DATA', ROOT.parent / 'shared' / 'data'))
    p.add_argument('root', nargs='?', default=str(shared / 'kitti_object' / 'training'))
    p.add_argument('--frames', default='', help='comma-separated frame ids (default: all)')
    a = p.parse_args(argv)
    from autolabel_ros.io.kitti import KittiObjectDataset
    root = Path(a.root)
    if not (root / 'label_2').is_dir():
        print(f'{root}: no label_2 folder (a KITTI-layout training dir is needed)', file=sys.stderr)
        return 2
    ds = KittiObjectDataset(root)
    frames = a.frames.split(',') if a.frames else ds.frame_ids
    cars = [r for f in frames for r in car_evidence(ds, f)]
    print('| frame | line | points | label L | scan extent | past ends | past sides | both ends | end-on |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in cars:
        print(f"| {r['frame']} | {r['line']} | {r['points']} | {r['length']:.2f} | {r['extent']:.2f} | "
              f"{r['past_ends']:+.2f} | {r['past_sides']:+.2f} | {'yes' if r['both_ends'] else 'no'} | "
              f"{'yes' if r['end_on'] else 'no'} |")
    both = [r for r in cars if r['both_ends']]
    if both:
        print(f"\nboth ends in the scan: {len(both)} cars, label length - scan extent: mean "
              f"{np.mean([r['length'] - r['extent'] for r in both]):+.2f} m, points past the sides "
              f"{np.mean([r['past_sides'] for r in both]):+.2f} m")
    blind = [r for r in cars if r['end_on'] and not r['both_ends']]
    if blind:
        print(f"end-on, far end unseen: {len(blind)} cars, mean label length "
              f"{np.mean([r['length'] for r in blind]):.2f} m (all cars: "
              f"{np.mean([r['length'] for r in cars]):.2f} m)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
