"""autolabel-curriculum: SDFLabel's curriculum on your own logs (autolabel -> keep verified labels of the
current difficulty -> render NOCS targets -> fine-tune the CSS network -> evaluate -> loop).

    autolabel-curriculum --logs DRIVE_OR_BAG [...] --out RUN_DIR [--eval KITTI_OBJECT_DIR]
        [--eval-frames 000001,000003] [--loops 2] [--levels easy,moderate] [--steps 150]
        [--sim-frames 40] [--max-frames 0] [--prompts fused|lidar|gt] [--init css.pt] [--threads 1]
        [--label-method slf|hybrid|sdflabel] [--min-right 0.8] [--min-heading-logit 1.0] [--train-seed N]
        [--train-seeds 0-5] [--real-share 0.5] [--lr 1e-4] [--tune all|frozen-bn|decoder|head]
        [--max-cover 0.5] [--min-mask-agree 0.0] [--track-headings off|fix|drop|add] [--min-track 3]
        [--balance none|track] [--start init|previous]

``--logs``: KITTI raw drives, KITTI object folders or rosbag2 recordings (what ``autolabel-bag`` reads;
simulator drives from ``autolabel-sim`` included). ``--out`` must be empty or a previous run of this
command: it receives ``loop<k>/css.pt`` (weights fine-tuned on YOUR data: keep them out of any
package whose data licence forbids it), ``curriculum.json`` / ``.md`` (per-loop table) and ``.png``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from autolabel_ros.cli.args import description, input_error, weights_error


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='autolabel-curriculum', description=description(__doc__))
    ap.add_argument('--logs', nargs='+', required=True,
                    help='unlabeled logs: KITTI raw / object folders, bags')
    ap.add_argument('--out', required=True, help='run folder (new, or one this command wrote)')
    ap.add_argument('--eval', default='', help='labelled frames (KITTI object layout with label_2/) to score '
                    'each loop on')
    ap.add_argument('--eval-frames', default='', help='comma-separated frame ids of --eval (default: all)')
    ap.add_argument('--loops', type=int, default=2, help='autolabel + fine-tune loops (default 2)')
    ap.add_argument('--levels', default='easy,moderate', help='difficulty per loop, the last one repeating')
    ap.add_argument('--steps', type=int, default=150, help='fine-tuning steps per loop')
    ap.add_argument('--lr', type=float, default=1e-4,
                    help='fine-tuning learning rate (1e-3 lost ~11 points AP3D@0.7 at loop 1; 1e-4 beat 3e-4 '
                    'at both loops)')
    ap.add_argument('--batch', type=int, default=32, help='samples per fine-tuning step (default 32)')
    ap.add_argument('--sim-frames', type=int, default=40,
                    help='simulator frames of ground-truth NOCS mixed in')
    ap.add_argument('--max-frames', type=int, default=0, help='frames per log (0 = all)')
    ap.add_argument('--prompts', choices=('fused', 'lidar', 'gt'), default='fused',
                    help="fused: detector + LiDAR proposals (default); lidar: LiDAR proposals; gt: the log's "
                    'ground-truth boxes (KITTI object folders, simulator bags)')
    ap.add_argument('--min-confidence', type=float, default=0.5,
                    help='verified = accepted with this confidence')
    ap.add_argument('--min-right', type=float, default=0.8,
                    help="verified = also this calibrated P(right) (the label's metrics['confidence'])")
    ap.add_argument('--min-heading-logit', type=float, default=1.0,
                    help='verified = also this front/back confidence (heading_logit; 1.0 = decided)')
    ap.add_argument('--max-cover', type=float, default=0.5,
                    help='keep a label only when no nearer box covers more than this share of its box, at '
                    'every level (easy has its own 0.1; 1.0 = the IoU rules alone)')
    ap.add_argument('--min-mask-agree', type=float, default=0.0,
                    help="keep a label only when its SAM mask and its fitted mesh's silhouette agree (IoU "
                    'over the pixels nearer masks leave visible) at least this much (0 = off)')
    ap.add_argument('--label-method', choices=('slf', 'hybrid', 'sdflabel'), default='slf',
                    help='the pseudo-labeler (slf: headings that do not come from the network being trained)')
    ap.add_argument('--init', default='', help='starting weights (default: the packaged simulator weights)')
    ap.add_argument('--config', default='', help='pipeline YAML (as autolabel-bag --config)')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    ap.add_argument('--seed', type=int, default=0,
                    help='seed of the sample draws and of the fine-tuning unless --train-seed (default 0)')
    ap.add_argument('--train-seed', type=int, default=None,
                    help='fine-tuning seed (default: --seed); rerun a folder with another to measure '
                    'its noise')
    ap.add_argument('--train-seeds', default='',
                    help='several fine-tuning seeds (e.g. 0,1,2,3 or 0-5): one chain of loops each under '
                    'seed<k>/, on the same pools; the table adds mean +- std per loop and paired '
                    'loop-to-loop tests')
    ap.add_argument('--real-share', type=float, default=0.5,
                    help='share of real samples in the fine-tuning set (the rest: simulator samples)')
    ap.add_argument('--tune', choices=('all', 'frozen-bn', 'decoder', 'head'), default='all',
                    help='what the fine-tuning changes: all weights; all but the batch-norm statistics; the '
                    'decoder and heads; the output heads only')
    ap.add_argument('--track-headings', choices=('off', 'fix', 'drop', 'add'), default='off',
                    help="track consistency of the pool's labels over a log's consecutive frames: turn (fix) "
                    "or leave out (drop) a kept label whose heading points against its track's; add: fix, "
                    "and keep accepted labels whose front/back was undecided at their track's heading")
    ap.add_argument('--min-track', type=int, default=3,
                    help='frames a track needs before its heading overrules a label (--track-headings)')
    ap.add_argument('--balance', choices=('none', 'track'), default='none',
                    help="track: a car's (its track's over the log's frames) share of the real samples grows "
                    'as the square root of its samples, not linearly')
    ap.add_argument('--start', choices=('init', 'previous'), default='init',
                    help="what each loop fine-tunes from: the starting weights again, on that loop's pool "
                    "(the labeller still uses the previous loop's network), or the previous loop's weights "
                    '(continuing drifted: loop 2 -6.9 AP3D@0.5 mod, docs/SDFLABEL.md)')
    a = ap.parse_args(argv)
    out = Path(a.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / 'curriculum.json').is_file()
                                             and not (out / 'sim_samples').is_dir())):
        return _fail(f'--out: {out} exists and is not a curriculum run folder (nothing is overwritten)')
    for p in a.logs:
        if not Path(p).exists():
            return _fail(f'--logs: {p}: no such file or folder')
    if a.eval_frames and not a.eval:     # it was ignored without a word
        return _fail(f'--eval-frames {a.eval_frames}: needs --eval (the labelled frames to score on)')
    if a.eval and not (Path(a.eval) / 'label_2').is_dir():
        return _fail(f'--eval: {a.eval}: no label_2/ folder (KITTI object layout expected)')
    try:
        seeds = parse_seeds(a.train_seeds)
    except ValueError:
        return _fail(f'--train-seeds: {a.train_seeds!r} is not a list of integers (e.g. 0,1,2 or 0-5)')
    if not 0.0 < a.real_share < 1.0:
        return _fail(f'--real-share: {a.real_share} must lie strictly between 0 and 1')
    for name, v in (('--max-cover', a.max_cover), ('--min-mask-agree', a.min_mask_agree)):
        if not 0.0 <= v <= 1.0:
            return _fail(f'{name}: {v} must lie in [0, 1]')
    if a.loops < 1 or a.steps < 1 or a.min_track < 2:
        return _fail('--loops and --steps must be >= 1, --min-track >= 2')
    for flag, v, lo in (('--batch', a.batch, 1), ('--threads', a.threads, 1),
                        ('--sim-frames', a.sim_frames, 0), ('--max-frames', a.max_frames, 0)):
        if v < lo:    # --batch 0 fine-tuned on nothing: NaN losses, weights written, exit 0
            return _fail(f'{flag} {v}: must be >= {lo}')
    if not a.lr > 0:
        return _fail(f'--lr {a.lr:g}: must be > 0')
    import torch

    from autolabel_ros.cli.kitti import preflight
    from autolabel_ros.config import ConfigError, load_config
    from autolabel_ros.curriculum.loop import CurriculumError, CurriculumSettings, run
    from autolabel_ros.io.bags import BagError
    from autolabel_ros.io.kitti import KittiFormatError
    torch.set_num_threads(max(1, a.threads))
    frames = [f.strip() for f in a.eval_frames.split(',') if f.strip()] or None
    if a.eval:
        try:      # the frames to score on, their calibration and labels read before any labelling
            preflight(a.eval, frames)
        except (KittiFormatError, FileNotFoundError) as exc:
            return _fail(f'--eval: {exc}')
    init_problem = weights_error(a.init) if a.init else None     # here, not after the first loop's labelling
    if init_problem:
        return _fail(f'--init: {init_problem}')
    try:
        cfg = load_config(a.config) if a.config else load_config(None)
    except (ConfigError, OSError) as exc:
        return _fail(f'--config: {exc}')
    st = CurriculumSettings(loops=a.loops, levels=tuple(s.strip() for s in a.levels.split(',') if s.strip()),
                            steps=a.steps, lr=a.lr, batch=a.batch, sim_frames=a.sim_frames,
                            max_frames=a.max_frames, prompts=a.prompts, min_confidence=a.min_confidence,
                            min_right=a.min_right, min_heading_logit=a.min_heading_logit,
                            max_cover=a.max_cover, min_mask_agree=a.min_mask_agree,
                            label_method=a.label_method, seed=a.seed,
                            train_seed=a.train_seed, train_seeds=tuple(seeds), real_share=a.real_share,
                            tune=a.tune, track_headings=a.track_headings, min_track=a.min_track,
                            balance=a.balance, start=a.start)
    out.mkdir(parents=True, exist_ok=True)
    try:
        run([Path(p) for p in a.logs], out, Path(a.eval) if a.eval else None, frames, st, cfg,
            a.init)
    except (CurriculumError, BagError, KittiFormatError) as exc:   # a log's frame that cannot be read
        return _fail(str(exc))
    print((out / 'curriculum.md').read_text() if (out / 'curriculum.md').is_file() else '')
    return 0


def _fail(message: str) -> int:
    return input_error('autolabel-curriculum', message)


def parse_seeds(text: str) -> list[int]:
    """'0,2,5' or '0-3' or a mix -> the seeds in order, each once."""
    seeds = []
    for part in (p.strip() for p in text.split(',') if p.strip()):
        lo, _, hi = part.partition('-')
        for s in (range(int(lo), int(hi) + 1) if hi else [int(lo)]):
            if s not in seeds:
                seeds.append(s)
    return seeds


if __name__ == '__main__':
    from autolabel_ros.cli.entry import EXIT_INTERRUPTED
    from autolabel_ros.core.interrupts import run_quietly
    run_quietly(lambda: main, EXIT_INTERRUPTED)
