"""``autolabel-kitti --data KITTI_TRAINING_DIR --out PRED_DIR [--prompts gt-boxes|gt-points|fused|detector]
[--frames a,b] [--config YAML] [--stats stats.json] [--masks sam|gt] [--prior PATH]``: auto-label the
Cars of a KITTI object split from prompts made from its ``label_2`` 2D boxes (or 3 seeded random
clicks inside each), or, for a split without labels, from the 2D detector's boxes fused with the LiDAR
object proposals (``fused``; ``detector``: the detector alone), and write KITTI label files (with
scores) to PRED_DIR.

The work is :func:`autolabel_ros.kitti_labeling.label_frames` (output policy described there);
``--stats`` writes per-frame and per-instance timings and verification metrics as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

from autolabel_ros.cli.args import add_output_args, description, output_file_problem, replaceable_json
from autolabel_ros.kitti_labeling import GT_MODES, PROMPT_MODES
from pathlib import Path

TOOL = 'autolabel-kitti'


def preflight(data, frames=None, masks: str = 'sam', prompts: str = 'gt-boxes') -> list[str]:
    """The frame ids to label, after reading every calibration and label file and, for ``masks='gt'``,
    finding every oracle mask (cheap, and a bad one fails here, naming the file and line, rather than
    after the models have loaded). Prompts from the ground truth need ``label_2``."""
    from autolabel_ros.io.kitti import KittiFormatError, KittiObjectDataset

    ds = KittiObjectDataset(data)
    fids = ds.frame_ids if not frames else [f.strip() for f in frames if f.strip()]
    missing = [f for f in fids if f not in ds.frame_ids]
    if missing:
        raise FileNotFoundError(f'{ds.root}: frames not found: {", ".join(missing[:5])}')
    if prompts in GT_MODES and not (ds.root / 'label_2').is_dir():
        raise KittiFormatError(f'{ds.root / "label_2"}: not found; --prompts {prompts} makes the prompts '
                               'from its 2D boxes (--prompts fused labels a split without labels)')
    if masks == 'gt' and prompts not in GT_MODES:
        raise ValueError(f'--masks gt reads the oracle mask of each label_2 line: it needs --prompts '
                         f'gt-boxes or gt-points, not {prompts}')
    for fid in fids:
        ds.calib(fid)
        if (ds.root / 'label_2').is_dir():
            ds.labels(fid)
        for path, what in ((ds.root / 'image_2' / f'{fid}.png', 'image'),
                           (ds.root / 'velodyne' / f'{fid}.bin', 'velodyne file')):
            if not path.is_file():     # found here, not after hours of labelling the frames before it
                raise KittiFormatError(f'{path}: {what} not found')
        mask = ds.root / 'instance_2' / f'{fid}.png'
        if masks == 'gt' and not mask.is_file():
            raise FileNotFoundError(f'{mask}: oracle instance mask not found (needed by --masks gt; '
                                    'benchmarks/run_all.py writes them for its simulated sets)')
    return fids


# the keys of the stats file this tool writes: a --stats file without them is the user's
STATS_KEYS = ('frames', 'instances', 'summary')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='autolabel-kitti', description=description(__doc__))
    p.add_argument('--data', required=True,
                   help='KITTI object split folder (image_2, velodyne, calib; label_2 for the gt prompts)')
    add_output_args(p, 'output folder for the predicted label_2 files',
                    'only <frame>.txt files of the frames labelled')
    p.add_argument('--prompts', default='gt-boxes', choices=PROMPT_MODES,
                   help="label_2's 2D boxes (default) or 3 seeded random clicks inside each; without "
                        "label_2: 'fused' (the 2D detector's boxes fused with LiDAR object proposals, "
                        "as autolabel-bag's default) or 'detector' (the detector alone)")
    p.add_argument('--frames', default='', help='comma-separated frame ids (default: all)')
    p.add_argument('--config', default=None, help='YAML config (same schema as the ROS parameters)')
    p.add_argument('--stats', default=None, help='write timings and per-instance metrics as JSON here')
    p.add_argument('--masks', default='sam', choices=('sam', 'gt'),
                   help='sam: promptable segmenter; gt: oracle masks from DATA/instance_2/ (the benchmarks\' '
                   'simulator export; autolabel-sim does not write them)')
    p.add_argument('--prior', default=None, help='shape prior .npz (overrides the config)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    args = p.parse_args(argv)

    from autolabel_ros.config import ConfigError, load_config
    from autolabel_ros.core.device import DeviceError, process_threads
    from autolabel_ros.io.kitti import KittiFormatError
    from autolabel_ros.kitti_labeling import label_frames
    try:
        from autolabel_ros.shape.prior import PriorError
    except ImportError:          # pragma: no cover - prior module missing
        PriorError = ValueError
    try:
        from autolabel_ros.segment import SegmenterUnavailable
    except ImportError:          # pragma: no cover
        SegmenterUnavailable = RuntimeError
    from autolabel_ros.detect import DetectorUnavailable
    from autolabel_ros.io.outdir import OutputDirError, prepare_output_dir, record_files
    try:
        cfg = load_config(args.config)
        if args.prior:
            cfg.prior = args.prior
        # each frame once ('a,a' labelled it twice and counted it twice)
        frames = list(dict.fromkeys(f.strip() for f in args.frames.split(',') if f.strip())) or None
        # the inputs and the output folder are checked before the models load (tens of seconds)
        fids = preflight(args.data, frames, args.masks, args.prompts)
        stats_problem = output_file_problem(args.stats) if args.stats else None
        if stats_problem:
            raise OutputDirError(f'--stats {args.stats}: {stats_problem}')
        if args.stats and not replaceable_json(args.stats, STATS_KEYS):
            raise OutputDirError(f'--stats {args.stats}: exists and is not a stats file of {TOOL} (nothing '
                                 'was replaced); move it away, or give another path')
        # a label file the tool did not write (DATA/label_2 given as --out) stops the run here
        names = [f'{fid}.txt' for fid in fids]
        prepare_output_dir(args.out, TOOL, overwrite=args.overwrite, outputs=names)
        # listed before they are written: a run stopped half-way leaves none the next run would refuse
        record_files(args.out, TOOL, names)
        process_threads(cfg.fit.threads)
        stats = label_frames(args.data, args.out, args.prompts, frames, cfg, args.masks, not args.quiet)
    except ConfigError as e:
        print(f'autolabel-kitti: config error: {e}', file=sys.stderr)
        return 2
    except (DeviceError, KittiFormatError, PriorError, SegmenterUnavailable, DetectorUnavailable,
            OutputDirError, FileNotFoundError, ValueError) as e:
        print(f'autolabel-kitti: error: {e}', file=sys.stderr)
        return 2
    except OSError as e:   # disk full, read-only file system while writing
        print(f'autolabel-kitti: error: writing {args.out}: {e.strerror or e}'
              + (f' ({e.filename})' if e.filename else '') + '; the label files written so far are kept',
              file=sys.stderr)
        return 2
    if args.stats:
        try:
            Path(args.stats).parent.mkdir(parents=True, exist_ok=True)
            Path(args.stats).write_text(json.dumps(stats, indent=1, default=float))
        except OSError as e:
            print(f'autolabel-kitti: error: --stats {args.stats}: {e.strerror or e}; the label files are '
                  'written', file=sys.stderr)
            return 2
    s = stats['summary']

    def secs(v):
        return 'n/a' if v is None else f'{v:.2f}'
    print(f'autolabel-kitti: {s["n_instances"]} labels ({s["n_accepted"]} accepted) '
          f'in {s["n_frames"]} frames '
          f'-> {args.out}; median fit {secs(s["median_fit_s_per_instance"])} s/instance, '
          f'median frame {secs(s["median_frame_s"])} s')
    if stats.get('fleet'):
        from autolabel_ros.fit.fleet import FleetLength
        print(f'autolabel-kitti: {FleetLength(**stats["fleet"]).summary()}')
    return 0


if __name__ == '__main__':
    from autolabel_ros.cli.entry import EXIT_INTERRUPTED
    from autolabel_ros.core.interrupts import run_quietly
    run_quietly(lambda: main, EXIT_INTERRUPTED)
