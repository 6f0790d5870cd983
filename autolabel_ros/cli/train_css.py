"""autolabel-train-css: train the CSS network (NOCS + proportions) on the project's simulator.

    autolabel-train-css --out css_sim.pt [--frames 200] [--heldout 20] [--minutes 20] [--steps 1500]
                        [--data ~/.cache/autolabel_ros/css_data] [--threads 2] [--seed 0] [--init W.pt]

Renders ``--frames`` simulated frames (scene seeds CSS_SEED_BASE + k, disjoint from the benchmarks')
into NOCS samples cached under ``--data`` (a rerun reuses them), trains for ``--steps`` Adam steps or
``--minutes`` (whichever ends first; a cut run is not the documented one, see docs), evaluates on
``--heldout`` frames of other seeds, writes the weights (``torch.load(..., weights_only=True)``) and
``<out>.json`` with the measurements. Uses the GPU when ``--device cuda`` and one is present.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from autolabel_ros.cli.args import (description, input_error, output_file_problem, replaceable_json,
                                    weights_error)

# the keys of the report this command writes beside the weights: a file of that name without them is
# the user's
REPORT_KEYS = ('frames', 'samples', 'steps_run', 'loss_last50')

DEFAULT_DATA = Path.home() / '.cache' / 'autolabel_ros' / 'css_data'


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='autolabel-train-css', description=description(__doc__))
    ap.add_argument('--out', required=True, help='weights file to write (.pt)')
    ap.add_argument('--frames', type=int, default=200, help='simulated training frames')
    ap.add_argument('--heldout', type=int, default=40, help='simulated held-out frames (other seeds)')
    ap.add_argument('--steps', type=int, default=1500, help='Adam steps (default 1500)')
    ap.add_argument('--minutes', type=float, default=20.0, help='stop training after this wall time')
    ap.add_argument('--batch', type=int, default=32, help='samples per step (default 32)')
    ap.add_argument('--lr', type=float, default=2e-3, help='peak learning rate (default 2e-3)')
    ap.add_argument('--seed', type=int, default=0, help='training seed (default 0)')
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads (default 2)')
    ap.add_argument('--data', default=str(DEFAULT_DATA), help='NOCS sample cache folder')
    ap.add_argument('--init', default='', help='start from these weights (fine-tuning)')
    ap.add_argument('--balance', action='store_true',
                    help='draw fronts, rears and side views equally often (default: uniformly)')
    a = ap.parse_args(argv)
    out = Path(a.out)
    for flag, v, lo in (('--frames', a.frames, 1), ('--steps', a.steps, 1), ('--batch', a.batch, 1),
                        ('--heldout', a.heldout, 0), ('--threads', a.threads, 1)):
        if v < lo:    # 0 frames was a traceback, 0 steps or a batch of 0 wrote untrained weights with exit 0
            return _fail(f'{flag} {v}: must be >= {lo}')
    if not a.lr > 0 or not a.minutes > 0:
        return _fail(f'--lr {a.lr:g} and --minutes {a.minutes:g}: must be > 0')
    # the output and the starting weights are checked here, not after minutes of training
    problem = output_file_problem(out)
    if problem:
        return _fail(f'--out {out}: {problem}')
    if out.suffix == '.json':    # the report <out>.json would overwrite the weights just written
        return _fail(f'--out {out}: the weights and their report (<out>.json) would be one file; '
                     'give a .pt name')
    if not replaceable_json(out.with_suffix('.json'), REPORT_KEYS):
        return _fail(f'--out {out}: its report {out.with_suffix(".json")} exists and was not written by '
                     'autolabel-train-css (nothing was replaced); move it away, or give another --out')
    init_problem = weights_error(a.init) if a.init else None     # loads the weights: once
    if init_problem:
        return _fail(f'--init: {init_problem}')
    import torch

    from autolabel_ros.css.evaluate import evaluate_samples
    from autolabel_ros.css.train import load_chunks, load_net, save_weights, to_tensors, train
    from autolabel_ros.sim.nocs import CSS_SEED_BASE, write_sample_chunks
    torch.set_num_threads(max(1, a.threads))
    data = Path(a.data)
    t0 = time.perf_counter()
    tr = write_sample_chunks([CSS_SEED_BASE + k for k in range(a.frames)], data / 'train')
    ho = write_sample_chunks([CSS_SEED_BASE + 100000 + k for k in range(a.heldout)], data / 'heldout') \
        if a.heldout > 0 else []
    t_data = time.perf_counter() - t0
    train_set = to_tensors(load_chunks(tr))
    print(f'{len(train_set["rgb"])} training samples from {a.frames} frames ({t_data:.0f} s)')
    t1 = time.perf_counter()
    net, losses = train(train_set, a.steps, a.minutes, a.batch, a.lr, a.seed,
                        load_net(a.init) if a.init else None, balance=a.balance)
    t_train = time.perf_counter() - t1
    report = {'frames': a.frames, 'samples': len(train_set['rgb']), 'steps_run': len(losses),
              'steps': a.steps, 'balance': a.balance, 'lr': a.lr, 'data_s': round(t_data, 1),
              'train_s': round(t_train, 1),
              'loss_first50': float(sum(losses[:50]) / max(1, len(losses[:50]))),
              'loss_last50': float(sum(losses[-50:]) / max(1, len(losses[-50:])))}
    if ho:
        report['heldout'] = evaluate_samples(net, to_tensors(load_chunks(ho)))
    try:
        save_weights(net, out, {k: v for k, v in report.items() if k != 'heldout'} | {'seed': a.seed})
        out.with_suffix('.json').write_text(json.dumps(report, indent=1))
    except OSError as e:   # disk full, the folder removed meanwhile
        return _fail(f'--out {out}: cannot write ({e.strerror or e})')
    print(json.dumps(report, indent=1))
    return 0


def _fail(message: str) -> int:
    return input_error('autolabel-train-css', message)


if __name__ == '__main__':
    from autolabel_ros.cli.entry import EXIT_INTERRUPTED
    from autolabel_ros.core.interrupts import run_quietly
    run_quietly(lambda: main, EXIT_INTERRUPTED)
