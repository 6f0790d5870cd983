"""Curriculum settings side by side: several multi-seed ``autolabel-curriculum`` folders (same pools'
logs, same evaluation frames, the same fine-tuning seeds), per seed the loop 0/1/2 AP, per folder the
loop-to-loop paired tests (curriculum/stats.py), and each folder's loops against the first folder's
same loop and seed.

    python benchmarks/curriculum_compare.py NAME=RUN_DIR[+RUN_DIR] [NAME=RUN_DIR ...] [--md OUT.md]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def chains_of(run: Path) -> dict:
    rep = json.loads((run / 'curriculum.json').read_text())
    seeds = rep.get('seeds') or {'0': rep['loops']}
    return {int(s): rows for s, rows in seeds.items()}


def per_seed_table(runs: dict) -> str:
    lines = ['| setting | seed | loop 0 3D@0.5 / 0.7 mod | loop 1 | loop 2 | loop 1 / 2 real samples |',
             '| --- | --- | --- | --- | --- | --- |']
    for name, chains in runs.items():
        for s, rows in sorted(chains.items()):
            cells = [f"{r['3D@0.5_mod']:.1f} / {r['3D@0.7_mod']:.1f}" if '3D@0.5_mod' in r else 'n/a'
                     for r in rows[:3]] + ['-'] * (3 - len(rows[:3]))
            n = ' / '.join(str(r.get('samples', '-')) for r in rows[1:3])
            lines.append(f'| {name} | {s} | ' + ' | '.join(cells) + f' | {n} |')
    return '\n'.join(lines)


def across(runs: dict, base: str) -> str:
    """Each setting's loop k minus the base setting's loop k, same seed (paired over the seeds)."""
    from autolabel_ros.curriculum.stats import sign_test
    keys = ('3D@0.5_mod', '3D@0.7_mod', 'BEV@0.7_mod', 'mean_iou3d_all', 'flips_all', 'css_frontback')
    lines = [f'| setting - {base} | loop | ' + ' | '.join(keys) + ' |', '| --- ' * (2 + len(keys)) + '|']
    for name, chains in runs.items():
        if name == base:
            continue
        for k in (1, 2):
            cells = []
            for key in keys:
                d = [chains[s][k][key] - runs[base][s][k][key] for s in chains
                     if s in runs[base] and len(chains[s]) > k and len(runs[base][s]) > k]
                scale = 1.0 if key.endswith('_mod') else 100.0
                cells.append(f'{scale * np.mean(d):+.1f} ({sum(x > 0 for x in d)}/{sum(x < 0 for x in d)}, '
                             f'p {sign_test(d):.2f})' if d else 'n/a')
            lines.append(f'| {name} | {k} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('runs', nargs='+', help='NAME=RUN_DIR')
    ap.add_argument('--md', default='')
    a = ap.parse_args(argv)
    from autolabel_ros.curriculum.stats import seeds_table
    runs = {}
    for item in a.runs:
        name, _, paths = item.partition('=')
        runs[name] = {}
        for path in paths.split('+'):       # one setting's seeds run in several folders
            if not (Path(path) / 'curriculum.json').is_file():
                print(f'{item}: no curriculum.json in {path}', file=sys.stderr)
                return 2
            runs[name].update(chains_of(Path(path)))
    parts = [per_seed_table(runs)]
    for name, chains in runs.items():
        parts.append(f'### {name}\n\n' + seeds_table(chains))
    parts.append(across(runs, next(iter(runs))))
    text = '\n\n'.join(parts) + '\n'
    if a.md:
        Path(a.md).write_text(text)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
