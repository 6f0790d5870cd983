"""Does the curriculum help ``method: hybrid``? The 12 KITTI development frames labelled by ``hybrid``
with the starting CSS weights and with each seed's last-loop weights of a multi-seed
``autolabel-curriculum --train-seeds`` run: AP, and flips over ALL 37 cars (the heading table's
measure), per seed and paired against the starting weights.

    python benchmarks/curriculum_hybrid.py --run RUN_DIR [--method hybrid] [--eval KITTI_OBJECT_DIR]

RUN_DIR: the curriculum folder (its SAM masks of the evaluation frames are reused). Writes
RUN_DIR/<method>_weights.md / .json. The weights stay in RUN_DIR (fine-tuned on KITTI raw frames:
non-commercial, never into the repo).
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
    ap.add_argument('--run', required=True, help='a multi-seed autolabel-curriculum folder')
    ap.add_argument('--method', default='hybrid', choices=('hybrid', 'sdflabel'))
    ap.add_argument('--eval', default=str(ROOT.parent / 'shared/data/kitti_object/training'))
    ap.add_argument('--seeds', default='', help='seeds to evaluate (default: every seed of the run)')
    a = ap.parse_args(argv)
    run = Path(a.run)
    rep_path = run / 'curriculum.json'
    if not rep_path.is_file():
        print(f'--run: {run}: no curriculum.json (not an autolabel-curriculum folder)', file=sys.stderr)
        return 2
    if not (Path(a.eval) / 'label_2').is_dir():
        print(f'--eval: {a.eval}: no label_2/ folder', file=sys.stderr)
        return 2
    import torch

    from autolabel_ros.config import load_config
    from autolabel_ros.curriculum.loop import MaskCache, evaluate_weights, run_key
    from autolabel_ros.curriculum.stats import seeds_table
    torch.set_num_threads(1)
    report = json.loads(rep_path.read_text())
    seeds = report.get('seeds') or {'0': report['loops']}
    if a.seeds:
        seeds = {s: seeds[s] for s in a.seeds.split(',') if s in seeds}
    cfg = load_config(None)
    cfg = dataclasses.replace(cfg, method=a.method)
    cache = MaskCache(run / 'masks')
    results = run / 'results'
    results.mkdir(exist_ok=True)

    def score(w: str) -> dict:
        key = run_key(w, cfg, what='method_eval', eval_dir=a.eval)
        p = results / f'method_{key}.json'
        if p.is_file():
            return json.loads(p.read_text())
        r = evaluate_weights(cfg, w, Path(a.eval), None, run / f'{a.method}_eval', cache)
        p.write_text(json.dumps(r, default=float))
        return r

    start = score(seeds[next(iter(seeds))][0]['weights'])
    start.update(loop=0, level='-')
    chains = {}
    for s, rows in seeds.items():
        last = rows[-1]
        r = score(last['weights'])
        r.update(loop=1, level=f"loop {last['loop']}")
        chains[int(s)] = [start, r]
        print(f"seed {s}: start flips {100 * start['flips_all']:.1f} % -> {100 * r['flips_all']:.1f} % of "
              f"{r['n_cars']} cars, 3D@0.7 mod {start['3D@0.7_mod']:.1f} -> {r['3D@0.7_mod']:.1f}",
              flush=True)
    text = (f'method {a.method} on {a.eval} with the starting CSS weights (loop 0) and each seed\'s last '
            f'curriculum loop (loop 1 below = that last loop)\n\n' + seeds_table(chains))
    (run / f'{a.method}_weights.md').write_text(text + '\n')
    (run / f'{a.method}_weights.json').write_text(json.dumps({str(k): v for k, v in chains.items()},
                                                             indent=1, default=float))
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
