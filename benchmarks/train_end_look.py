"""Fit the end-look model (fit/end_look.py: is the visible end of a car its front?) on the project's
own procedural simulator, and check it on the benchmark sets.

    python benchmarks/train_end_look.py [--scenes 200] [--dry-run]

Renders ``--scenes`` procedural scenes (camera and modal instance masks only matter; seeds from
``SEED0``, disjoint from the benchmark's scenes, cached in $AUTOLABEL_BENCH_CACHE/end_look_masks/), takes
the end face of every car whose end faces the camera (|facing| >= 0.3, KITTI occlusion <=
``MAX_OCCLUSION``) from its ground-truth box, read through the car's own mask as the fit reads it
through the segmenter's (fit/end_look.py end_patch), with ``AUGMENT`` randomised copies each (box
jitter, mask grown or shrunk by up to 2 px, colour gain and offset, downsampling as a far car gets:
the simulator's cars are cleaner than real ones), fits an L2 logistic regression and writes
autolabel_ros/fit/end_look_model.py. No ../shared data goes into the model: the ApolloCar3D set and
the KITTI frames are only scored, printed beside the training accuracy (ground-truth boxes without a
mask; and, where the fit dumps of benchmarks/fit_dump.py exist, at the fitted boxes through the
segmenter's masks, by occluded share).
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.calibrate_heading import coef_rows, fit_logistic  # noqa: E402
from benchmarks.run_all import CACHE, KITTI, apollo_root, sim_root  # noqa: E402

MODEL_FILE = ROOT / 'autolabel_ros' / 'fit' / 'end_look_model.py'
SEED0 = 700000          # the benchmark's simulator scenes start at 300000 (run_all.SIM_SEED0), 46 of them
MIN_FACING = 0.3
AUGMENT = 4
MAX_OCCLUSION = 2     # KITTI occlusion level of the training cars (2: largely hidden, read through the mask)
L2 = 3e-2


def render(seed: int) -> dict:
    """One procedural scene's camera image (PNG bytes), calibration and ground-truth boxes (cached)."""
    import cv2
    path = CACHE / 'end_look_masks' / f'{seed}.pkl'
    if path.exists():
        with open(path, 'rb') as fh:
            return pickle.load(fh)
    from autolabel_ros.sim.drive import Simulator
    sf = Simulator(seed, beams=16).frame(0)
    rec = dict(seed=seed, png=cv2.imencode('.png', sf.frame.image)[1], K=sf.frame.K, T=sf.frame.T_cam_lidar,
               masks=cv2.imencode('.png', sf.masks.astype(np.uint16))[1],
               gt=[dict(center=np.asarray(g.center), size=np.asarray(g.size), yaw=float(g.yaw),
                        occ=int(g.occlusion), id=int(g.id)) for g in sf.gt])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as fh:
        pickle.dump(rec, fh)
    return rec


def jittered(image: np.ndarray, rect, rng, mask: np.ndarray | None = None) -> np.ndarray:
    """An end patch as a different camera / a farther car would give it (``mask``: the car's own mask,
    H x W bool, grown or shrunk by a pixel or two as a segmenter's would be)."""
    import cv2

    from autolabel_ros.fit.end_look import end_patch
    u0, v0, u1, v1 = rect
    crop = image[v0:v1, u0:u1].astype(np.float32)
    f = rng.uniform(1.0, 3.0)
    if rng.random() < 0.5 and min(crop.shape[:2]) / f >= 3:
        small = cv2.resize(crop, (max(1, int(crop.shape[1] / f)), max(1, int(crop.shape[0] / f))),
                           interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    crop = crop * rng.uniform(0.8, 1.2, 3) * rng.uniform(0.6, 1.3) + rng.uniform(-20, 20)
    crop += rng.normal(0, 3.0, crop.shape)
    own = None
    if mask is not None:
        own = mask[v0:v1, u0:u1].astype(np.uint8)
        k = int(rng.integers(-2, 3))
        if k:
            op = cv2.dilate if k > 0 else cv2.erode
            own = op(own, np.ones((3, 3), np.uint8), iterations=abs(k))
        own = own.astype(bool)
    return end_patch(np.clip(crop, 0, 255), (0, 0, crop.shape[1], crop.shape[0]), own)


def scene_samples(rec: dict, rng, augment: int, masked: bool = True) -> tuple[list, list]:
    """(features, visible end is the front) of every usable car of a rendered scene (``masked``: the
    patches read through each car's own modal mask, as the fit reads them through its segmenter's)."""
    import cv2

    from autolabel_ros.fit.end_look import end_features, end_rect, facing_of
    image = cv2.imdecode(rec['png'], cv2.IMREAD_UNCHANGED)
    ids = cv2.imdecode(rec['masks'], cv2.IMREAD_UNCHANGED) if masked else None
    cam = (np.linalg.inv(rec['T']) @ [0.0, 0.0, 0.0, 1.0])[:3]
    X, y = [], []
    for g in rec['gt']:
        pose = np.r_[g['center'], g['yaw']]
        facing = facing_of(pose, cam)
        if abs(facing) < MIN_FACING or g['occ'] > MAX_OCCLUSION:
            continue
        mask = ids == g['id'] if masked else None
        for _ in range(augment):
            p = pose + np.r_[rng.normal(0, 0.15, 2), 0.0, rng.normal(0, np.radians(4))]
            rect = end_rect(p, g['size'] * rng.normal(1, 0.04, 3), rec['K'], rec['T'], image.shape[:2], cam)
            if rect is not None:
                X.append(end_features(jittered(image, rect, rng, mask)))
                y.append(facing > 0)
    return X, y


def gt_samples(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, front visible, distance) of the ground-truth cars of a KITTI-layout set (not
    randomised)."""
    from autolabel_ros.fit.end_look import end_features, end_patch, end_rect, facing_of
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d, read_image
    ds = KittiObjectDataset(data)
    X, y, d = [], [], []
    for fid in ds.frame_ids:
        calib = ds.calib(fid)
        image = read_image(Path(data) / 'image_2' / f'{fid}.png')
        cam = (np.linalg.inv(calib.T_cam_lidar) @ [0.0, 0.0, 0.0, 1.0])[:3]
        for o in ds.labels(fid):
            if o.type != 'Car':
                continue
            g = kitti_to_label3d(o, calib)
            pose = np.r_[g.center, g.yaw]
            facing = facing_of(pose, cam)
            rect = end_rect(pose, g.size, calib.K, calib.T_cam_lidar, image.shape[:2], cam)
            if abs(facing) < MIN_FACING or rect is None:
                continue
            X.append(end_features(end_patch(image, rect)))
            y.append(facing > 0)
            d.append(float(np.linalg.norm(g.center[:2])))
    return np.array(X), np.array(y, float), np.array(d)


def write_model(coef, intercept, n_cars: int, n_scenes: int):
    rows = coef_rows(coef)
    head = (f'End-look model of fit/end_look.py. GENERATED by benchmarks/train_end_look.py -- do not edit\n'
            f'by hand. Fitted on {n_cars} car ends ({AUGMENT} randomised copies each, read through their\n'
            f'masks) of {n_scenes} procedural simulator scenes (seeds {SEED0}-{SEED0 + n_scenes - 1}) at '
            f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.\n\n'
            f'logit(the visible end is the front) = END_INTERCEPT + END_COEF . end_features(patch)\n')
    MODEL_FILE.write_text(f'"""{head}"""\nEND_COEF = (\n{rows})\nEND_INTERCEPT = {intercept:.4f}\n')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--scenes', type=int, default=200)
    p.add_argument('--dry-run', action='store_true', help='print, do not write fit/end_look_model.py')
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    X, y = [], []
    t = time.perf_counter()
    for k in range(a.scenes):
        xs, ys = scene_samples(render(SEED0 + k), rng, AUGMENT)
        X += xs
        y += ys
        if (k + 1) % 20 == 0:
            print(f'[end_look] {k + 1}/{a.scenes} scenes, {len(y)} samples ({time.perf_counter() - t:.0f} s)',
                  flush=True)
    X, y = np.array(X), np.array(y, float)
    coef, intercept = fit_logistic(X, y, L2)
    if not a.dry_run:
        write_model(coef, intercept, len(y) // AUGMENT, a.scenes)
    print('| set | cars (end seen) | visible end read right | beyond 35 m |\n|---|---|---|---|')
    ok = (X @ coef + intercept > 0) == (y > 0.5)
    print(f'| procedural training scenes (randomised copies) | {len(y)} | {100 * ok.mean():.1f} % | |')
    for name, data in (('procedural sim 46 (benchmark)', sim_root(64)), ('ApolloCar3D sim 40', apollo_root()),
                       ('KITTI 12', KITTI)):
        if not Path(data).is_dir():
            continue
        Xs, ys, d = gt_samples(Path(data))
        ok = (Xs @ coef + intercept > 0) == (ys > 0.5)
        far = d > 35
        print(f'| {name} | {len(ys)} | {100 * ok.mean():.1f} % | '
              f'{100 * ok[far].mean():.1f} % of {far.sum()} |')
    dump_check()


def dump_check():
    """The visible end read right where the fit uses it: at the first hypothesis of each fitted car
    (benchmarks/fit_dump.py dumps, when there), through the segmenter's mask, by the occluded share of
    the 2D box (the cue fades out between fit/end_look.py OCC_FULL and OCC_NONE)."""
    import importlib

    from autolabel_ros.fit import end_look, end_look_model
    from benchmarks.fit_dump import dump_dir
    from benchmarks.heading_cues import cue_records
    importlib.reload(end_look_model)         # the model just written
    gate = end_look.OCC_FULL, end_look.OCC_NONE
    end_look.OCC_FULL, end_look.OCC_NONE = 1.0, 1.01      # read every car, however hidden
    names = {'sim': 'procedural sim 46', 'apollo': 'ApolloCar3D sim 40', 'kitti': 'KITTI 12'}
    bins = ((0.0, 0.3), (0.3, 0.7), (0.7, 1.01))
    print('\nAt the fitted box, through the mask (fit dumps), by occluded share of the 2D box:\n'
          '| set | ' + ' | '.join(f'{lo:g}-{min(hi, 1):g}' for lo, hi in bins) + ' |\n' + '|---' * 4 + '|')
    for s, name in names.items():
        if not (dump_dir(s) / 'cues.pkl').exists():
            continue
        cells, recs = [], cue_records(s)
        for lo, hi in bins:
            ok = n = 0
            for r in recs:
                a = r['alts'][0]
                v = a['terms']['cue_end_look']
                if len(r['alts']) < 2 or v == 0 or not lo <= r['occluded_share'] < hi:
                    continue
                ok += (v < 0) == (np.cos(a['pose'][3] - r['gt']['yaw']) >= 0)
                n += 1
            cells.append(f'{ok} / {n} ({100 * ok / max(n, 1):.0f} %)')
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    end_look.OCC_FULL, end_look.OCC_NONE = gate


if __name__ == '__main__':
    main()
