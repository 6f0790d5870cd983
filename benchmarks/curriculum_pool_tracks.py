"""The curriculum pool's track consistency: how many of the verified / kept `slf` pseudo-labels of a log
point against their track's heading (curriculum/tracks.py), per level, without fine-tuning anything.

    python benchmarks/curriculum_pool_tracks.py --logs ../shared/data/kitti_raw/2011_09_26_excerpt \
        [--max-frames 20] [--levels easy,moderate] [--min-track 3] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--logs', nargs='+', required=True)
    ap.add_argument('--max-frames', type=int, default=20)
    ap.add_argument('--levels', default='easy,moderate')
    ap.add_argument('--min-track', type=int, default=3)
    ap.add_argument('--prompts', default='fused', choices=('fused', 'lidar', 'gt'))
    ap.add_argument('--masks', default='', help='a folder of cached SAM masks (read and written)')
    ap.add_argument('--json', default='')
    ap.add_argument('--mode', default='add', choices=('fix', 'drop', 'add'))
    ap.add_argument('--gt', default='', help="the logs' KITTI object folder with label_2/ (a simulated "
                    "drive's kitti/training): the pool's true flip rate before and after the track fix")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from autolabel_ros.config import load_config
    from autolabel_ros.curriculum.loop import CurriculumSettings, _FrameCache, autolabel_pool, pool_sources
    from autolabel_ros.pipeline import Autolabeler
    st = CurriculumSettings(max_frames=a.max_frames, prompts=a.prompts, track_headings=a.mode,
                            min_track=a.min_track)
    cfg = dataclasses.replace(load_config(None), method=st.label_method)
    sources, detector = pool_sources(a.logs, st, cfg)
    al = Autolabeler(cfg)
    cache = _FrameCache(Path(a.masks) if a.masks else None)
    out = {}
    for level in a.levels.split(','):
        _, n = autolabel_pool(al, sources, cache, st, level, detector, np.random.default_rng(0), print,
                              reuse_key='slf')
        n.pop('mask_agree', None)
        groups = n.pop('groups', [])
        n['samples_per_car'] = sorted((groups.count(g) for g in set(groups)), reverse=True)
        out[level] = n
        print(level, json.dumps(n))
    if a.gt:
        out['gt'] = gt_flips(al, sources, cache, st, detector, Path(a.gt), a.levels.split(','))
        print('gt', json.dumps(out['gt']))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


def gt_flips(al, sources, cache, st, detector, gt_dir: Path, levels) -> dict:
    """Per group of labels (verified; kept at each level; accepted but unverified and tracked): how many
    match a ground-truth car (centre within 2 m), how many of those point the wrong way as labelled and
    after the track fix (turned where the track disagrees)."""
    from autolabel_ros.curriculum.levels import passes
    from autolabel_ros.curriculum.loop import agreement, pool_track_headings, verified
    from autolabel_ros.eval.iou import iou3d_lidar
    from autolabel_ros.curriculum.tracks import disagrees
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d
    ds = KittiObjectDataset(gt_dir)
    n, cpu = {'fit_s': 0.0}, {'prompts': 0.0, 'segment': 0.0, 'label': 0.0}
    heads = pool_track_headings(al, sources, cache, st, detector, n, cpu, print, 'slf')
    agree = []
    groups = {g: [0, 0, 0, 0] for g in ['verified', 'unverified_tracked'] + [f'kept_{lv}' for lv in levels]}
    for li, (src, refs) in enumerate(sources):
        for fi, ref in enumerate(refs):
            key = f'log{li}_{ref.name}'
            res = cache.results.get(('slf', key))
            if res is None:
                continue
            frame = src.load(ref)
            gts = [kitti_to_label3d(o, ds.calib(ref.name)) for o in ds.labels(ref.name) if o.type == 'Car']
            boxes = [p.bounding_box() for p in cache.prompts[key]]
            depth = [float(np.linalg.norm(lab.center[:2])) for lab in res.labels]
            for k, lab in enumerate(res.labels):
                if not lab.accepted or lab.score < st.min_confidence:
                    continue
                th = heads.get((li, fi, k))
                ok = verified(lab, st)
                names = ['verified'] if ok else (['unverified_tracked'] if th is not None else [])
                others = [b for j, b in enumerate(boxes) if j != k and not depth[j] > depth[k]]
                names += [f'kept_{lv}' for lv in levels if ok and passes(
                    boxes[k], others, frame.width, frame.height, lv, max_cover=st.max_cover)]
                d = [np.linalg.norm(g.center[:2] - lab.center[:2]) for g in gts]
                g = gts[int(np.argmin(d))] if d and min(d) < 2.0 else None
                if ok and any(n_.startswith('kept_') for n_ in names):
                    # the kept label's mask / mesh agreement against how right its box is
                    agree.append((round(agreement(frame, res, k, depth), 3),
                                  round(iou3d_lidar(lab.box7, g.box7), 3) if g is not None else 0.0))
                for name in names:
                    c = groups[name]
                    c[0] += 1
                    if g is None:
                        continue
                    c[1] += 1
                    c[2] += int(np.cos(lab.yaw - g.yaw) < 0)
                    after = lab.yaw + (np.pi if th is not None and disagrees(lab.yaw, th.yaw) else 0.0)
                    c[3] += int(np.cos(after - g.yaw) < 0)
    out = {name: dict(zip(('labels', 'matched', 'flipped', 'flipped_after_track_fix'), c))
           for name, c in groups.items()}
    a = np.array(agree).reshape(-1, 2)
    for lo, hi in ((0.0, 0.8), (0.8, 1.01)):
        sel = (a[:, 0] >= lo) & (a[:, 0] < hi)
        out[f'kept_mask_agree_{lo}-{min(hi, 1.0)}'] = {
            'labels': int(sel.sum()), 'mean_iou3d': round(float(a[sel, 1].mean()), 3) if sel.any() else None,
            'iou3d_ge_0.7': int((a[sel, 1] >= 0.7).sum())}
    out['kept_agree_iou'] = a.tolist()
    return out


if __name__ == '__main__':
    raise SystemExit(main())
