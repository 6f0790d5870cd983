"""``autolabel-eval GT_DIR PRED_DIR [--frames a,b] [--json]``: KITTI Car AP R40 of label_2 files."""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from autolabel_ros.cli.args import description


def _jsonable(v):
    """NaN (no ground truth / nothing matched) -> null, so the output stays valid JSON."""
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='autolabel-eval', description=description(__doc__))
    p.add_argument('gt_dir', help='ground-truth label_2 directory')
    p.add_argument('pred_dir', help='predicted label_2 directory (16th column = score)')
    p.add_argument('--frames', default=None, help='comma-separated frame ids (default: all in GT_DIR)')
    p.add_argument('--json', action='store_true', help='print one JSON object instead of the table')
    args = p.parse_args(argv)

    from autolabel_ros.eval import evaluate, format_table
    from autolabel_ros.io.kitti import KittiFormatError

    pred = Path(args.pred_dir)
    if pred.is_dir() and not any(pred.glob('*.txt')):   # a wrong folder would score 0 AP, not an error
        print(f'autolabel-eval: error: {pred}: no prediction files (*.txt); give the folder of label files '
              '(autolabel-bag: OUT/kitti/label_2, autolabel-kitti: its --out)', file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            result = evaluate(args.gt_dir, args.pred_dir, frames=args.frames)
    except (KittiFormatError, OSError) as e:
        print(f'autolabel-eval: error: {e}', file=sys.stderr)
        return 2
    for w in caught:     # one line each, not Python's file:line and source echo
        print(f'autolabel-eval: warning: {w.message}', file=sys.stderr)
    if args.json:
        print(json.dumps(_jsonable(result)))
    else:
        print(format_table(result))
    return 0


if __name__ == '__main__':
    from autolabel_ros.cli.entry import EXIT_INTERRUPTED
    from autolabel_ros.core.interrupts import run_quietly
    run_quietly(lambda: main, EXIT_INTERRUPTED)
