"""Control for the curriculum's loop 1: fine-tune the starting CSS weights exactly as a loop does (same
steps, learning rate, batch, seeds) but on the run's simulator samples alone, no real pseudo-labels,
and evaluate like a loop. Whatever a loop loses against loop 0 that this control loses too comes
from the fine-tuning itself, not from the real labels.

    python benchmarks/curriculum_control.py --run RUN_DIR [--seeds 0,1,2] [--steps 100] [--lr 1e-3]

RUN_DIR: a multi-seed ``autolabel-curriculum`` folder (its simulator samples and evaluation masks are
reused). Writes RUN_DIR/control/seed<k>.pt and RUN_DIR/control.md (mean +- std, paired vs loop 0).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--run', required=True)
    ap.add_argument('--eval', default=str(ROOT.parent / 'shared/data/kitti_object/training'))
    ap.add_argument('--seeds', default='0,1,2')
    ap.add_argument('--steps', type=int, default=100)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--tune', default='all', help='what the fine-tuning changes (css/train.TUNE_MODES)')
    a = ap.parse_args(argv)
    run = Path(a.run)
    if not (run / 'curriculum.json').is_file() or not (run / 'sim_samples').is_dir():
        print(f'--run: {run}: not an autolabel-curriculum folder with sim_samples/', file=sys.stderr)
        return 2
    import torch

    from autolabel_ros.config import load_config
    from autolabel_ros.css.train import load_chunks, load_net, save_weights, to_tensors, train
    from autolabel_ros.curriculum.loop import MaskCache, evaluate_weights
    from autolabel_ros.curriculum.stats import seeds_table
    torch.set_num_threads(1)
    report = json.loads((run / 'curriculum.json').read_text())
    start_row = report['loops'][0]
    sim = load_chunks(sorted((run / 'sim_samples').glob('*.npz')))
    cfg = dataclasses.replace(load_config(None), method='sdflabel')
    cache = MaskCache(run / 'masks')
    chains = {}
    for s in (int(x) for x in a.seeds.split(',')):
        tag = '' if a.tune == 'all' else f'_{a.tune}'
        w = run / 'control' / f'seed{s}_lr{a.lr:g}_steps{a.steps}{tag}.pt'
        res = w.with_suffix('.json')
        if not res.is_file():
            start = load_net(start_row['weights'])
            net, _ = train(to_tensors(sim), a.steps, 1e9, a.batch, a.lr, s + 1, start, log=None,
                          tune=a.tune)
            save_weights(net, w, {'control': 'simulator only', 'seed': s})
            r = evaluate_weights(cfg, w, Path(a.eval), None, run / 'control' / 'eval_labels', cache)
            res.write_text(json.dumps(r, default=float))
        r = dict(json.loads(res.read_text()), loop=1, level='sim only')
        chains[s] = [start_row, r]
        print(f"seed {s}: 3D@0.7 mod {start_row['3D@0.7_mod']:.1f} -> {r['3D@0.7_mod']:.1f}, BEV@0.7 "
              f"{start_row['BEV@0.7_mod']:.1f} -> {r['BEV@0.7_mod']:.1f}, front/back "
              f"{100 * r['css_frontback']:.1f} %", flush=True)
    text = (f'control: the starting weights fine-tuned on simulator samples only ({a.steps} steps, lr '
            f'{a.lr:g}), loop 1 below = the control\n\n' + seeds_table(chains))
    (run / 'control.md').write_text(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
