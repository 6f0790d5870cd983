"""Fit the fused prompts (detector + LiDAR proposals, no ground-truth boxes) of simulator scenes and keep,
per label, what the accept model reads and what the label is: on no car at all (clutter -- a wall,
a bush, a pole, a fragment of the background), or on a car, with its 3D IoU and heading.

The accept model calibrated on ground-truth-box prompts never sees a prompt that is on no car;
``benchmarks/calibrate_accept.py`` adds these labels to its training set so that the accept decision
learns to reject them. Only training scenes are dumped (procedural simulator scenes 0..N-1,
ApolloCar3D simulator scenes 0..11), never KITTI. Dumps go to
``$AUTOLABEL_BENCH_CACHE/clutter_dump/<set>/<frame>.pkl`` and are refitted when the package changes
(the same version stamp as benchmarks/fit_dump.py, plus the heading model, whose logit is a feature).

    python benchmarks/clutter_dump.py --sets sim,apollo [--frames 20]
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fit_dump import code_version  # noqa: E402
from benchmarks.run_all import CACHE, CachedSegmenter, apollo_root, sim_root  # noqa: E402

SETS = {'sim': ('sim64', sim_root(64)), 'apollo': ('apollo64', apollo_root()),
        'kitti': ('kitti', ROOT.parent / 'shared' / 'data' / 'kitti_object' / 'training')}
# KITTI is dumped to check the accept decision on real clutter (calibrate_accept.py holds it out), never
# to train on
FRAMES = 12                # scenes 0..11 of each set (training scenes of calibrate_accept.py)
# the fused prompts (default config) and, besides, every LiDAR proposal they do not cover: the
# simulator's detector rarely fires on its clutter, the LiDAR proposals do (walls, bushes, poles), and
# these are the negatives wanted
CONFIG: dict = {}
# detector-like false prompts on the simulator sets: the shipped SSD rarely fires on the simulator's
# clutter, while a real detector's false boxes are car-sized boxes on the background beside cars (KITTI:
# on a fence, a cyclist, a dark gap between parked cars). Each car's box (>= MIN_SHIFT_HEIGHT px tall)
# moved sideways by SHIFT times its width, kept when it overlaps no car, no DontCare region and no
# other prompt (2D IoU < MAX_SHIFT_OVERLAP); one per car, the side drawn per frame. Not on KITTI.
SHIFT, MIN_SHIFT_HEIGHT, MAX_SHIFT_OVERLAP = 1.25, 25.0, 0.1


def version(name: str = 'sim') -> str:
    h = hashlib.sha1(code_version().encode())
    h.update((ROOT / 'autolabel_ros' / 'fit' / 'heading_model.py').read_bytes())
    h.update(repr(CONFIG).encode())
    if name != 'kitti':
        h.update(repr((SHIFT, MIN_SHIFT_HEIGHT, MAX_SHIFT_OVERLAP)).encode())
    return h.hexdigest()[:16]


def shifted_boxes(cars: list, others: list, width: int, height: int, seed: int) -> list[np.ndarray]:
    """Detector-like false boxes: each car box in ``cars`` moved sideways by SHIFT of its width (inside
    the image), kept when its 2D IoU with every box of ``cars`` + ``others`` (DontCare, prompts) and with
    the boxes kept so far stays below MAX_SHIFT_OVERLAP."""
    from autolabel_ros.proposals.fusion import iou_matrix
    rng = np.random.default_rng(seed)
    out: list = []
    for b in cars:
        b = np.asarray(b, float)
        w = b[2] - b[0]
        if b[3] - b[1] < MIN_SHIFT_HEIGHT:
            continue
        for side in rng.permutation([-1.0, 1.0]):
            c = b + side * SHIFT * w * np.array([1.0, 0.0, 1.0, 0.0])
            if c[0] < 0 or c[2] > width or c[3] > height:
                continue
            ref = [np.asarray(x, float) for x in list(cars) + list(others)] + out
            if iou_matrix(c[None], np.array(ref))[0].max() < MAX_SHIFT_OVERLAP:
                out.append(c)
                break
    return out


def frame_ids(name: str, n_frames: int) -> list[str]:
    """Scenes 0..n_frames-1 of a simulator set; every labelled frame of KITTI."""
    if name == 'kitti':
        data = Path(SETS[name][1])
        return sorted(p.stem for p in (data / 'label_2').glob('*.txt')) if data.is_dir() else []
    return [f'{k:06d}' for k in range(n_frames)]


def dump_dir(name: str) -> Path:
    return CACHE / 'clutter_dump' / name


class _PromptKeyedMasks(CachedSegmenter):
    """Cached masks keyed by the prompt boxes too (the fused prompts change with the proposals)."""

    def segment(self, image, prompts):
        boxes = np.array([p.box for p in prompts if p.box is not None], np.float32)
        self.key = f'{self.base}_{hashlib.sha1(boxes.round(1).tobytes()).hexdigest()[:10]}'
        return super().segment(image, prompts)


def _gt_cars(ds, fid: str, calib) -> list:
    """(2D box, 3D box (7,)) of every Car/Van/Truck of the frame."""
    from autolabel_ros.io.kitti import kitti_to_label3d
    out = []
    for o in ds.labels(fid):
        if o.type in ('Car', 'Van', 'Truck'):
            g = kitti_to_label3d(o, calib)
            out.append((np.asarray(o.bbox, float), np.concatenate([g.center, g.size, [g.yaw]])))
    return out


def label_record(fid, ev, fit, label, image_hw, gts, dontcare) -> dict:
    """What the accept model reads of one label (the raw inputs of fit/verify.py accept_inputs) and
    what it is: ``on_car`` (2D IoU >= 0.5 with a Car/Van/Truck, or mostly inside DontCare: then
    neither right nor wrong), its best 3D IoU and whether that car's heading is flipped."""
    from autolabel_ros.eval.iou import iou3d_lidar
    from autolabel_ros.proposals.fusion import iou_matrix
    m = label.metrics
    box7 = np.concatenate([label.center, label.size, [label.yaw]])
    alts = fit.alternatives or [fit]
    rec = dict(frame=fid, reasons=list(label.reasons), lift_reasons=list(ev.reasons),
               accepted=bool(label.accepted), sources=list(label.sources or ()),
               points=ev.init.points.astype(np.float32), box=box7, box2d=np.asarray(ev.box2d, float),
               image_hw=tuple(image_hw), n_frustum=int(ev.n_frustum), terms=dict(fit.terms),
               scales=np.asarray(fit.scales, float), pose=np.asarray(fit.pose, float),
               hyps=[(np.asarray(a.pose, float), float(a.energy)) for a in alts],
               **{k: m[k] for k in ('mask_iou', 'surface_ratio', 'heading_logit', 'occluded_share', 'energy',
                                    'confidence', 'p_tight')})
    iou2d = iou_matrix(rec['box2d'][None], np.array([g[0] for g in gts]))[0][0] if gts else np.zeros(0)
    in_dc = (iou_matrix(rec['box2d'][None], np.array(dontcare))[1][0] >= 0.5).any() if dontcare else False
    rec['on_car'] = bool((iou2d >= 0.5).any())
    rec['ignored'] = bool(not rec['on_car'] and in_dc)
    ious = [iou3d_lidar(box7, g[1]) for g in gts]
    j = int(np.argmax(ious)) if ious else -1
    rec['iou3d'] = float(ious[j]) if ious else 0.0
    rec['flipped'] = bool(np.cos(label.yaw - gts[j][1][6]) < 0) if ious else False
    return rec


def dump_frame(al, ds, fid: str, detector, seg, name: str = 'sim') -> list[dict]:
    from autolabel_ros.core.types import Prompt
    from autolabel_ros.proposals import fused_prompts, lidar_prompts, reject_duplicates
    from autolabel_ros.proposals.fusion import iou_matrix
    frame = ds.load_frame(fid)
    calib = ds.calib(fid)
    prompts, _ = fused_prompts(frame, detector.detect(frame.image), al.cfg)
    extra = lidar_prompts(frame, al.cfg)
    if extra and prompts:
        iou = iou_matrix(np.array([p.box for p in extra]), np.array([p.box for p in prompts]))[0]
        extra = [p for p, i in zip(extra, iou.max(1)) if i < 0.5]
    prompts = prompts + [Prompt(id=len(prompts) + k, box=p.box, cls=p.cls, score=p.score, sources=('lidar',))
                         for k, p in enumerate(extra)]
    if name != 'kitti':
        cars = [g[0] for g in _gt_cars(ds, fid, calib)]
        dc = [np.asarray(o.bbox, float) for o in ds.labels(fid) if o.type == 'DontCare']
        h, w = frame.image.shape[:2]
        fake = shifted_boxes(cars, dc + [p.box for p in prompts], w, h, int(fid))
        # tagged 'detector' (a detector's box: not amodal, fit/lift.py) and 'shifted'
        prompts = prompts + [Prompt(id=len(prompts) + k, box=b, cls='Car', score=0.5,
                                    sources=('detector', 'shifted')) for k, b in enumerate(fake)]
    if not prompts:
        return []
    seen = {}
    fit0 = al.fitter.fit

    def capture(fr, evidence, *rest):
        fits, t = fit0(fr, evidence, *rest)
        seen['ev'], seen['fits'] = evidence, fits
        return fits, t

    al.fitter.fit = capture
    seg.fid = fid
    try:
        labels = al.label(frame, prompts).labels
    finally:
        al.fitter.fit = fit0
    reject_duplicates(labels, al.cfg.proposals.duplicate_iou)     # as autolabel-bag --prompts fused
    if 'ev' not in seen:
        return []
    gts = _gt_cars(ds, fid, calib)
    dontcare = [np.asarray(o.bbox, float) for o in ds.labels(fid) if o.type == 'DontCare']
    return [label_record(fid, ev, f, labels[ev.index], frame.image.shape[:2], gts, dontcare)
            for ev, f in zip(seen['ev'].objects, seen['fits'])]


def run(names, n_frames: int = FRAMES, force: bool = False, progress: bool = True):
    import torch

    from autolabel_ros.config import from_dict
    from autolabel_ros.detect import make_detector
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.proposals import fused_detector_config
    torch.set_num_threads(1)
    for name in names:
        v = version(name)
        dataset, data = SETS[name]
        if not Path(data).is_dir():
            print(f'[clutter {name}] skipped: {data} not found')
            continue
        cfg = from_dict(CONFIG)
        al = Autolabeler(cfg)
        seg = _PromptKeyedMasks(al, '')
        seg.base = f'{dataset}_fused'
        al._segmenter = seg
        detector = None
        ds = KittiObjectDataset(data)
        out = dump_dir(name)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        fids = frame_ids(name, n_frames)
        for k, fid in enumerate(fids):
            path = out / f'{fid}.pkl'
            if path.exists() and not force:
                with open(path, 'rb') as fh:
                    if pickle.load(fh).get('version') == v:
                        continue
            if detector is None:
                detector = make_detector(fused_detector_config(cfg), 'cpu')
            recs = dump_frame(al, ds, fid, detector, seg, name)
            with open(path, 'wb') as fh:
                pickle.dump({'version': v, 'objects': recs}, fh)
            if progress:
                print(f'[clutter {name}] {k + 1}/{len(fids)} {fid}: {len(recs)} labels, '
                      f'{sum(not r["on_car"] and not r["ignored"] for r in recs)} on no car '
                      f'({time.perf_counter() - t0:.0f} s)', flush=True)


def load(name: str, n_frames: int = FRAMES) -> list[dict]:
    """Every label record of a dumped set (the frames dumped so far)."""
    recs = []
    for fid in frame_ids(name, n_frames):
        path = dump_dir(name) / f'{fid}.pkl'
        if path.exists():
            with open(path, 'rb') as fh:
                recs += pickle.load(fh)['objects']
    return recs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sets', default='apollo,sim')
    p.add_argument('--frames', type=int, default=FRAMES, help='scenes 0..N-1 of each set')
    p.add_argument('--force', action='store_true', help='refit frames already dumped')
    a = p.parse_args(argv)
    run([s for s in a.sets.split(',') if s], a.frames, a.force)


if __name__ == '__main__':
    main()
