"""``autolabel-kitti --data KITTI_TRAINING_DIR --out PRED_DIR [--prompts gt-boxes|gt-points]
[--frames a,b] [--config YAML] [--stats stats.json] [--masks sam|gt] [--prior PATH]``: auto-label the
Cars of a KITTI object split from prompts made from its ``label_2`` 2D boxes (or 3 seeded random
clicks inside each) and write KITTI label files (with scores) to PRED_DIR.

Every prompt gives one output line, rejected labels included: their score is the confidence (mask
IoU) halved, so that they rank below every accepted label in an AP evaluation. Prompts whose box is
empty after clipping to the image produce no line. ``--masks gt`` reads oracle instance masks from
``DATA/instance_2/NNNNNN.png`` (uint16, value k = the object on line k-1 of label_2, 0 = none), as
written by the benchmarks' simulator export; ``--stats`` writes per-frame and per-instance timings
and verification metrics as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REJECTED_SCORE_FACTOR = 0.5
TOOL = 'autolabel-kitti'


def preflight(data, frames=None) -> list[str]:
    """The frame ids to label, after reading every calibration and label file (cheap, and a bad one
    fails here, naming the file and line, rather than after the models have loaded)."""
    from autolabel_ros.io.kitti import KittiObjectDataset

    ds = KittiObjectDataset(data)
    fids = ds.frame_ids if not frames else [f.strip() for f in frames if f.strip()]
    missing = [f for f in fids if f not in ds.frame_ids]
    if missing:
        raise FileNotFoundError(f'{ds.root}: frames not found: {", ".join(missing[:5])}')
    for fid in fids:
        ds.calib(fid)
        if (ds.root / 'label_2').is_dir():
            ds.labels(fid)
    return fids


def read_instance_masks(path: Path, prompts, shape) -> list[np.ndarray]:
    import cv2
    inst = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if inst is None:
        raise FileNotFoundError(f'{path}: oracle instance mask not found (needed by --masks gt)')
    if inst.shape[:2] != tuple(shape):
        raise ValueError(f'{path}: mask size {inst.shape[:2]} differs from the image {tuple(shape)}')
    return [inst == (p.id + 1) for p in prompts]


def label_frames(data, out, prompts_mode='gt-boxes', frames=None, config=None, masks='sam',
                 progress=True, autolabeler=None) -> dict:
    """Label the frames of a KITTI split; returns the stats dict (also used by the benchmarks)."""
    from tqdm import tqdm

    from autolabel_ros.io.kitti import KittiObjectDataset, label3d_to_kitti, write_label_file
    from autolabel_ros.pipeline import Autolabeler

    ds = KittiObjectDataset(data)
    fids = ds.frame_ids if not frames else [f.strip() for f in frames if f.strip()]
    missing = [f for f in fids if f not in ds.frame_ids]
    if missing:
        raise FileNotFoundError(f'{ds.root}: frames not found: {", ".join(missing[:5])}')
    al = autolabeler or Autolabeler(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats = {'frames': [], 'instances': [], 'config': {'prompts': prompts_mode, 'masks': masks}}
    for fid in tqdm(fids, desc='autolabel-kitti', unit='frame', disable=not progress):
        tl = time.perf_counter()
        frame = ds.load_frame(fid)
        calib = ds.calib(fid)
        prompts = ds.prompts(fid, mode=prompts_mode, seed=al.cfg.seed)
        given = None
        if masks == 'gt':
            given = read_instance_masks(ds.root / 'instance_2' / f'{fid}.png', prompts,
                                        frame.image.shape[:2])
        load_s = time.perf_counter() - tl
        labels = al.label(frame, prompts, given)
        objs = []
        for lab in labels:
            if not np.all(np.isfinite(lab.center)):
                continue
            score = lab.score if lab.accepted else lab.score * REJECTED_SCORE_FACTOR
            lab.score = float(np.clip(score, 0.0, 1.0))
            objs.append(label3d_to_kitti(lab, calib, frame.width, frame.height))
            m = lab.metrics
            stats['instances'].append({
                'frame': fid, 'id': int(lab.id), 'accepted': bool(lab.accepted), 'reasons': lab.reasons,
                'score': lab.score, 'mask_iou': m.get('mask_iou'), 'surface_ratio': m.get('surface_ratio'),
                'n_points': m.get('n_points'), 'energy': m.get('energy'),
                'fit_s': al.timings['per_instance_s']})
        write_label_file(out / f'{fid}.txt', objs)
        t = dict(al.timings)
        t.update(frame=fid, load_s=load_s, n_prompts=len(prompts), n_labels=len(objs))
        stats['frames'].append(t)
    fr = stats['frames']
    per_inst = [f['per_instance_s'] for f in fr if f['n'] > 0]
    stats['summary'] = {
        'n_frames': len(fr), 'n_instances': len(stats['instances']),
        'n_accepted': int(sum(i['accepted'] for i in stats['instances'])),
        'median_fit_s_per_instance': float(np.median(per_inst)) if per_inst else None,
        'median_frame_s': float(np.median([f['total_s'] for f in fr])) if fr else None,
        'median_segment_s': float(np.median([f['segment_s'] for f in fr])) if fr else None,
    }
    return stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='autolabel-kitti', description=__doc__.split(':', 1)[-1].strip())
    p.add_argument('--data', required=True,
                   help='KITTI object split folder (image_2, velodyne, calib, label_2)')
    p.add_argument('--out', required=True,
                   help='output folder for the predicted label_2 files; a non-empty folder this tool did '
                        'not write is refused unless --overwrite')
    p.add_argument('--overwrite', action='store_true',
                   help='write into a non-empty folder the tool did not write (only <frame>.txt files '
                        'of the frames labelled are replaced)')
    p.add_argument('--prompts', default='gt-boxes', choices=('gt-boxes', 'gt-points'))
    p.add_argument('--frames', default='', help='comma-separated frame ids (default: all)')
    p.add_argument('--config', default=None, help='YAML config (same schema as the ROS parameters)')
    p.add_argument('--stats', default=None, help='write timings and per-instance metrics as JSON here')
    p.add_argument('--masks', default='sam', choices=('sam', 'gt'),
                   help='sam: promptable segmenter; gt: oracle masks from DATA/instance_2 (simulator export)')
    p.add_argument('--prior', default=None, help='shape prior .npz (overrides the config)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    args = p.parse_args(argv)

    from autolabel_ros.config import ConfigError, load_config
    from autolabel_ros.core.device import DeviceError
    from autolabel_ros.io.kitti import KittiFormatError
    try:
        from autolabel_ros.shape.prior import PriorError
    except ImportError:          # pragma: no cover - prior module missing
        PriorError = ValueError
    try:
        from autolabel_ros.segment import SegmenterUnavailable
    except ImportError:          # pragma: no cover
        SegmenterUnavailable = RuntimeError
    from autolabel_ros.io.outdir import OutputDirError, prepare_output_dir, record_files
    try:
        cfg = load_config(args.config)
        if args.prior:
            cfg.prior = args.prior
        frames = [f for f in args.frames.split(',') if f.strip()] if args.frames else None
        # the inputs and the output folder are checked before the models load (tens of seconds)
        fids = preflight(args.data, frames)
        prepare_output_dir(args.out, TOOL, overwrite=args.overwrite)
        stats = label_frames(args.data, args.out, args.prompts, frames, cfg, args.masks, not args.quiet)
        record_files(args.out, TOOL, [f'{fid}.txt' for fid in fids])
    except (ConfigError, DeviceError, KittiFormatError, PriorError, SegmenterUnavailable, OutputDirError,
            FileNotFoundError, ValueError) as e:
        print(f'autolabel-kitti: error: {e}', file=sys.stderr)
        return 2
    except OSError as e:   # disk full, read-only file system while writing
        print(f'autolabel-kitti: error: writing {args.out}: {e.strerror or e}'
              + (f' ({e.filename})' if e.filename else '') + '; the label files written so far are kept',
              file=sys.stderr)
        return 2
    if args.stats:
        Path(args.stats).parent.mkdir(parents=True, exist_ok=True)
        Path(args.stats).write_text(json.dumps(stats, indent=1, default=float))
    s = stats['summary']
    print(f'autolabel-kitti: {s["n_instances"]} labels ({s["n_accepted"]} accepted) '
          f'in {s["n_frames"]} frames '
          f'-> {args.out}; median fit {s["median_fit_s_per_instance"]} s/instance, '
          f'median frame {s["median_frame_s"]} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
