"""The CSS network alone on labelled frames: front/back cue flips and the Procrustes initial pose.

    python benchmarks/css_cue.py [--weights W.pt] [--sets kitti,sim64,apollo64] [--json OUT]

Per Car with ground truth: the network reads the patch of its instance mask (SAM masks of the
benchmark cache when cached for that frame and prompt set, else the oracle instance_2 masks of the
simulated sets), the cue decides between the true heading and its flip
(:func:`autolabel_ros.css.cue.css_cue`): ``flip`` = it prefers the flip, ``undecided`` = no
preference (side view or empty mask). ``frontback_acc`` counts the cars whose end is visible
(|facing| > 0.3). The Procrustes pose uses the LiDAR points in the mask's frustum that lie in the
true box grown by 0.3 m (an oracle cluster: this measures the NOCS, not the clustering): its
heading error (deg, and the share within 30 deg) and centre error (m).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run_all import CACHE, KITTI  # noqa: E402

SETS = {'kitti': KITTI, 'sim64': CACHE / 'sim64' / 'training', 'apollo64': CACHE / 'apollo64' / 'training'}


def frame_masks(name: str, root: Path, fid: str, prompts, shape):
    sam = CACHE / 'masks' / f'{name}_gt-boxes_{fid}.npz'
    if sam.exists():
        m = np.load(sam)['masks']
        if len(m) == len(prompts):
            return list(m), 'sam'
    inst = root / 'instance_2' / f'{fid}.png'
    if inst.exists():
        from autolabel_ros.kitti_labeling import read_instance_masks
        return read_instance_masks(inst, prompts, shape), 'gt'
    return None, None


def evaluate_set(name: str, root: Path, css, max_frames: int = 0) -> dict:
    from autolabel_ros.core.geometry import points_in_box, project, transform_points
    from autolabel_ros.css.cue import css_cue, hypothesis_facing
    from autolabel_ros.css.hypotheses import procrustes_pose
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d
    ds = KittiObjectDataset(root)
    fids = ds.frame_ids[:max_frames] if max_frames else ds.frame_ids
    cars, src, times = [], {}, []
    for fid in fids:
        frame = ds.load_frame(fid)
        prompts = ds.prompts(fid, 'gt-boxes')
        if not len(prompts):
            continue
        masks, kind = frame_masks(name, root, fid, prompts, frame.image.shape[:2])
        if masks is None:
            continue
        src[kind] = src.get(kind, 0) + 1
        t0 = time.perf_counter()
        preds = css.predict(frame.image, masks)
        times.append((time.perf_counter() - t0) / len(prompts))
        calib = ds.calib(fid)
        objs = ds.labels(fid)
        xyz = frame.xyz.astype(np.float64)
        uv, z = project(frame.K, transform_points(frame.T_cam_lidar, xyz))
        for p, m, pr in zip(prompts, masks, preds):
            gt = kitti_to_label3d(objs[p.id], calib)
            pose = np.r_[gt.center, gt.yaw]
            ft = hypothesis_facing(pose, frame.T_cam_lidar)
            rec = {'frame': fid, 'id': int(p.id), 'facing_true': ft, 'occlusion': int(gt.occlusion),
                   'height_px': float(p.box[3] - p.box[1])}
            if pr is None:
                rec.update(facing_pred=0.0, cue_true=0.0)
            else:
                rec.update(facing_pred=pr.facing(), cue_true=css_cue(pose, frame.T_cam_lidar, pr.facing()))
                H, W = m.shape
                ui = np.floor(uv).astype(int)
                ok = (z > 0.5) & (ui[:, 0] >= 0) & (ui[:, 0] < W) & (ui[:, 1] >= 0) & (ui[:, 1] < H)
                ok[ok] = m[ui[ok, 1], ui[ok, 0]]
                ok &= points_in_box(xyz, gt.center, gt.size, gt.yaw, margin=0.3)
                sim = procrustes_pose(pr, xyz[ok], frame, np.random.default_rng(0))
                if sim is not None:
                    d = (sim.yaw - gt.yaw + np.pi) % (2 * np.pi) - np.pi
                    rec.update(procrustes_yaw_err_deg=float(np.degrees(abs(d))),
                               procrustes_center_err_m=float(np.linalg.norm(sim.t - gt.center)),
                               procrustes_scale=float(sim.scale), diag=float(np.linalg.norm(gt.size)))
            cars.append(rec)
    return summarise(cars) | {'mask_source_frames': src, 'cars': cars,
                              'css_ms_per_object': 1000 * float(np.median(times)) if times else None}


def summarise(cars: list[dict]) -> dict:
    n = len(cars)
    cue = np.array([c['cue_true'] for c in cars])
    ft = np.array([c['facing_true'] for c in cars])
    fp = np.array([c['facing_pred'] for c in cars])
    ends = np.abs(ft) > 0.3
    py = [c['procrustes_yaw_err_deg'] for c in cars if 'procrustes_yaw_err_deg' in c]
    pc = [c['procrustes_center_err_m'] for c in cars if 'procrustes_center_err_m' in c]
    return {'cars': n, 'flip_rate': float(np.mean(cue > 0)) if n else None,
            'undecided': float(np.mean(cue == 0)) if n else None,
            'frontback_n': int(ends.sum()),
            'frontback_acc': float(np.mean(np.sign(fp[ends]) == np.sign(ft[ends]))) if ends.any() else None,
            'procrustes_n': len(py), 'procrustes_yaw_med_deg': float(np.median(py)) if py else None,
            'procrustes_within30': float(np.mean(np.array(py) < 30)) if py else None,
            'procrustes_flip_share': float(np.mean(np.array(py) > 150)) if py else None,
            'procrustes_center_med_m': float(np.median(pc)) if pc else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--weights', default='')
    ap.add_argument('--sets', default='kitti,sim64,apollo64')
    ap.add_argument('--max-frames', type=int, default=0)
    ap.add_argument('--json', default='')
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from autolabel_ros.css.predict import CssPredictor
    css = CssPredictor(a.weights)
    out = {}
    for name in a.sets.split(','):
        root = SETS[name]
        if not (root / 'label_2').is_dir():
            print(f'{name}: {root} not found, skipped')
            continue
        out[name] = evaluate_set(name, root, css, a.max_frames)
        print(name, json.dumps({k: v for k, v in out[name].items() if k != 'cars'}))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
