"""Fit a benchmark set once and keep, per label, what the heading choice and the accept decision
read: the object's evidence (mask crop, fit points, occluded share), every surviving hypothesis
(pose, code, scales, energy, terms) and the ground truth (heading, box).

The heading choice and the accept model are post-hoc steps over these survivors, so
``benchmarks/heading_cues.py`` (the "heading cues" table) and ``benchmarks/calibrate_accept.py`` (the
accept model's coefficients) re-decide from a dump instead of re-running the fit for every cue or
feature set. Dumps go to ``$AUTOLABEL_BENCH_CACHE/fit_dump/<set>/<frame>.pkl`` (one pickle per frame;
a frame already dumped by the same code, i.e. the same content of every file under autolabel_ros/, is
kept unless ``--force``; any change to the package refits it).

    python benchmarks/fit_dump.py --sets kitti,sim,apollo
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run_all import (CACHE, KITTI, CachedSegmenter, apollo_root, heldout_root,  # noqa: E402
                                sim_root)

# bump when what a dump holds changes (older dumps are refitted)
DUMP_VERSION = 1


def code_version() -> str:
    """DUMP_VERSION and a hash of the package's files (the fit, the prior, the config defaults), but
    for the accept and heading models' coefficients, which calibrate_accept.py and calibrate_heading.py
    write from the dumps."""
    h = hashlib.sha1(str(DUMP_VERSION).encode())
    pkg = ROOT / 'autolabel_ros'
    files = [p for p in pkg.rglob('*') if p.suffix in ('.py', '.npz') and '__pycache__' not in p.parts
             and p.name not in ('accept_model.py', 'heading_model.py')]
    for f in sorted(files):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


SETS = {'kitti': ('kitti', KITTI, None), 'sim': ('sim64', sim_root(64), 46),
        'apollo': ('apollo64', apollo_root(), 40),
        # the held-out scenes (run_all.py HELDOUT; exported by its heldout section), every frame there
        'sim_heldout': ('sim64_heldout', heldout_root('sim64_heldout'), None),
        'apollo_heldout': ('apollo64_heldout', heldout_root('apollo64_heldout'), None)}


def dump_dir(name: str) -> Path:
    return CACHE / 'fit_dump' / name


def set_frames(name: str) -> list[str]:
    from autolabel_ros.io.kitti import KittiObjectDataset
    _, data, n = SETS[name]
    return KittiObjectDataset(data).frame_ids if n is None else [f'{i:06d}' for i in range(n)]


def _crop(mask: np.ndarray, box: np.ndarray):
    x0, y0, x1, y1 = (int(v) for v in box)
    return (x0, y0), np.packbits(mask[y0:y1, x0:x1], axis=None), (y1 - y0, x1 - x0)


def uncrop(packed, shape_hw) -> tuple:
    """(offset, H x W bool mask crop) from :func:`_crop`'s output."""
    (x0, y0), bits, (h, w) = packed
    return (x0, y0), np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool)


def _object_record(fid, ev, fit, label, gt, calib) -> dict:
    from autolabel_ros.io.kitti import kitti_to_label3d
    box = np.asarray(ev.box2d, float)
    x0, y0 = np.floor(box[:2]).astype(int)
    x1, y1 = np.ceil(box[2:]).astype(int)
    region = ev.nearer[y0:y1, x0:x1]
    if ev.mask.any():           # the crop keeps the whole mask (SAM can spill over the box)
        ys, xs = np.nonzero(ev.mask)
        cx0, cy0 = min(x0, xs.min()), min(y0, ys.min())
        cx1, cy1 = max(x1, xs.max() + 1), max(y1, ys.max() + 1)
    else:
        cx0, cy0, cx1, cy1 = x0, y0, x1, y1
    alts = fit.alternatives or [fit]
    rec = dict(frame=fid, line=int(label.id), index=ev.index, points=ev.init.points.astype(np.float32),
               n_frustum=int(ev.n_frustum), depth=float(ev.init.depth), reasons=list(label.reasons),
               lift_reasons=list(ev.reasons), accepted=bool(label.accepted), box2d=box,
               occluded_share=float(region.mean()) if region.size else 0.0,
               mask=_crop(ev.mask, [cx0, cy0, cx1, cy1]),
               metrics={k: label.metrics.get(k) for k in ('mask_iou', 'surface_ratio', 'n_near_points',
                                                          'n_points', 'energy')},
               label=dict(center=np.asarray(label.center), size=np.asarray(label.size), yaw=float(label.yaw)),
               chosen=next(i for i, a in enumerate(alts) if a is fit),
               alts=[dict(pose=np.asarray(a.pose), code=np.asarray(a.code), scales=np.asarray(a.scales),
                          energy=float(a.energy), terms=dict(a.terms)) for a in alts])
    if gt is not None:
        g = kitti_to_label3d(gt, calib)
        rec['gt'] = dict(center=g.center, size=g.size, yaw=float(g.yaw), occluded=int(gt.occluded),
                         truncated=float(gt.truncated), height2d=float(gt.height2d), type=gt.type)
    return rec


def dump_frame(al, ds, name: str, fid: str, seg: CachedSegmenter) -> list[dict]:
    """Fit one frame (GT boxes as prompts, cached MobileSAM masks) and return its object records."""
    frame = ds.load_frame(fid)
    calib = ds.calib(fid)
    prompts = ds.prompts(fid, mode='gt-boxes', seed=al.cfg.seed)
    gts = ds.labels(fid)
    seen = {}
    fit0 = al.fitter.fit

    def capture(fr, evidence, *rest):   # keep the evidence and the fits the pipeline computes
        fits, t = fit0(fr, evidence, *rest)
        seen['ev'], seen['fits'] = evidence, fits
        return fits, t

    al.fitter.fit = capture
    seg.fid = fid
    try:
        result = al.label(frame, prompts)
    finally:
        al.fitter.fit = fit0
    if 'ev' not in seen:
        return []
    out = []
    for ev, f in zip(seen['ev'].objects, seen['fits']):
        lab = result.labels[ev.index]
        out.append(_object_record(fid, ev, f, lab, gts[int(lab.id)], calib))
    for r in out:
        r['fit_s'] = result.timings['per_instance_s']
    return out


def run(names, force: bool = False, progress: bool = True, overrides: dict | None = None):
    import torch

    from autolabel_ros.config import from_dict
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.pipeline import Autolabeler
    torch.set_num_threads(1)
    for name in names:
        dataset, data, _ = SETS[name]
        if not Path(data).is_dir():
            print(f'[{name}] skipped: {data} not found')
            continue
        al = Autolabeler(from_dict(overrides or {}))
        seg = CachedSegmenter(al, f'{dataset}_gt-boxes')
        al._segmenter = seg
        ds = KittiObjectDataset(data)
        out = dump_dir(name)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        frames = set_frames(name)
        version = code_version() + (json.dumps(overrides, sort_keys=True) if overrides else '')
        for k, fid in enumerate(frames):
            path = out / f'{fid}.pkl'
            if path.exists() and not force:
                with open(path, 'rb') as fh:
                    if pickle.load(fh).get('version') == version:
                        continue
            recs = dump_frame(al, ds, name, fid, seg)
            with open(path, 'wb') as fh:
                pickle.dump({'version': version, 'objects': recs}, fh)
            if progress:
                print(f'[{name}] {k + 1}/{len(frames)} {fid}: {len(recs)} objects '
                      f'({time.perf_counter() - t0:.0f} s)', flush=True)


def load(name: str) -> list[dict]:
    """Every object record of a dumped set, in frame order."""
    recs = []
    for fid in set_frames(name):
        path = dump_dir(name) / f'{fid}.pkl'
        if not path.exists():
            raise FileNotFoundError(f'{path}: not dumped yet (python benchmarks/fit_dump.py --sets {name})')
        with open(path, 'rb') as fh:
            recs += pickle.load(fh)['objects']
    return recs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sets', default='kitti,sim,apollo')
    p.add_argument('--force', action='store_true', help='refit frames already dumped')
    p.add_argument('--config', default='{}', help='config overrides as JSON (a trial setting; the dump '
                   'records them in its version, so the default config refits it)')
    a = p.parse_args(argv)
    try:
        overrides = json.loads(a.config)
    except json.JSONDecodeError as e:
        p.error(f'--config: not JSON ({e})')
    run([s for s in a.sets.split(',') if s], a.force, overrides=overrides)


if __name__ == '__main__':
    main()
