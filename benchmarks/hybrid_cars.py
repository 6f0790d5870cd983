"""Which cars make ``hybrid`` differ from ``slf``, and through which of its two CSS parts: the
Procrustes hypothesis (did it win the fit?) or the CSS tie-break cue (did the heading turn?).

    python benchmarks/hybrid_cars.py --dataset kitti|sim64|apollo64 [--frames N]
        [--variants slf,hybrid,hybrid-no-procrustes,hybrid-no-cue] [--tag NAME]

Labels the split like a run_all.py row (ground-truth box prompts, SAM masks of the run_all cache,
predictions under CACHE/pred/hybrid_cars <tag> <variant>), prints each variant's AP and, per car where
the variants' 3D IoU differ, the IoU, heading error and winning hypothesis of each (P = the Procrustes
hypothesis, the last of hybrid's), and the cars whose IoU crosses 0.7 between slf and another variant.
Variants: slf, hybrid, hybrid-no-procrustes (the CSS cue alone: slf's hypotheses, css in the cues, tie-
breaking and voting on hidden cars, css.hidden_vote), hybrid-no-cue (the Procrustes hypothesis alone:
w_css 0, hidden_vote 0), hybrid-every-procrustes (no
lifted-hypothesis gate, css.procrustes_min_offset 0), or ``METHOD:sec.key=JSON;...``. The dump
(CACHE/pred/hybrid_cars TAG.json) keeps per car the Procrustes diagnostics (css/hypotheses.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'benchmarks'))
import run_all  # noqa: E402  (benchmarks/ is not a package)

VARIANTS = {
    'slf': {'method': 'slf'},
    'hybrid': {'method': 'hybrid'},
    'hybrid-no-procrustes': {'method': 'slf', 'css': {'cue_tiebreak': ['slf']},
                             'fit': {'heading_cues': '+css'}},
    'hybrid-no-cue': {'method': 'hybrid', 'fit': {'w_css': 0.0}, 'css': {'hidden_vote': 0.0}},
    # every Procrustes pose found becomes a hypothesis (no lifted-hypothesis gate): for the offline
    # sweeps of benchmarks/hybrid_prune_sweep.py
    'hybrid-every-procrustes': {'method': 'hybrid', 'css': {'procrustes_min_offset': 0.0}},
}


def variant_config(name: str) -> dict:
    """The config overrides (run_all spec form) of a variant name."""
    from autolabel_ros.config import load_config, to_dict
    if name in VARIANTS:
        over = json.loads(json.dumps(VARIANTS[name]))
    else:
        method, _, rest = name.partition(':')
        over = {'method': method}
        for kv in filter(None, rest.split(';')):
            k, _, v = kv.partition('=')
            sec, _, key = k.partition('.')
            over.setdefault(sec, {})[key] = json.loads(v)
    if over.get('fit', {}).get('heading_cues') == '+css':
        over['fit']['heading_cues'] = list(to_dict(load_config(None))['fit']['heading_cues']) + ['css']
    return over


def label_variant(data: Path, dataset: str, frames: list, name: str, tag: str) -> tuple[dict, list]:
    import torch

    from autolabel_ros.config import from_dict
    from autolabel_ros.eval import evaluate
    from autolabel_ros.kitti_labeling import label_frames
    from autolabel_ros.pipeline import Autolabeler
    from benchmarks.car_records import car_records
    torch.set_num_threads(1)
    al = Autolabeler(from_dict(variant_config(name)))
    out = run_all.CACHE / 'pred' / f'hybrid_cars {tag} {name}'
    seg = run_all.CachedSegmenter(al, f'{dataset}_gt-boxes')
    al._segmenter = seg
    import autolabel_ros.css.hypotheses as css_hyp
    from autolabel_ros.io.kitti import KittiObjectDataset
    ds, css_evidence, seen = KittiObjectDataset(data), css_hyp.css_evidence, []

    def recording(evidence, *args, **kw):      # keeps the Procrustes diagnostics of each object
        ev, cues, info = css_evidence(evidence, *args, **kw)
        seen.extend(zip([o.index for o in evidence.objects], info))
        return ev, cues, info
    insts = []
    css_hyp.css_evidence = recording
    try:
        for fid in frames:
            seg.fid = fid
            seen.clear()
            got = label_frames(data, out, 'gt-boxes', [fid], None, 'sam', False, al)['instances']
            ids = [int(p.id) for p in ds.prompts(fid, mode='gt-boxes', seed=al.cfg.seed)]
            info = {ids[k]: d for k, d in seen}
            for i in got:
                i['procrustes'] = info.get(int(i['id']))
            insts += got
    finally:
        css_hyp.css_evidence = css_evidence
    res = evaluate(data / 'label_2', out, frames)
    cars = car_records(data / 'label_2', out, frames, insts)
    by, n_in = {}, {}
    for i in insts:            # the j-th instance of a frame is line j of its prediction file
        i['pred_line'] = n_in[i['frame']] = n_in.get(i['frame'], -1) + 1
        by[(i['frame'], int(i['id']))] = i
    for c in cars:
        i = by.get((c['frame'], int(c.get('line', 0)) - 1), {})
        hyps = i.get('hypotheses') or []
        c['hyp'], c['n_hyp'], c['pred_line'] = i.get('hypothesis'), len(hyps), i.get('pred_line')
        c['hyp_energies'] = hyps        # per initial hypothesis: yaw0, energy_pruning, energy_final
        c['procrustes'] = i.get('procrustes')      # css_evidence's diagnostics (methods with CSS)
    return res, cars


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='kitti', choices=['kitti', 'sim64', 'apollo64'])
    ap.add_argument('--frames', type=int, default=0, help='first N frames (0 = all)')
    ap.add_argument('--variants', default='slf,hybrid,hybrid-no-procrustes,hybrid-no-cue')
    ap.add_argument('--tag', default='', help='name part of the prediction folders (default: dataset)')
    a = ap.parse_args(argv)
    from autolabel_ros.io.kitti import KittiObjectDataset
    data = {'kitti': run_all.KITTI, 'apollo64': run_all.apollo_root()}.get(a.dataset) or run_all.sim_root(64)
    frames = KittiObjectDataset(data).frame_ids
    frames = frames[:a.frames] if a.frames else frames
    names = [v for v in a.variants.split(',') if v]
    runs = {}
    for v in names:
        res, cars = label_variant(data, a.dataset, frames, v, a.tag or a.dataset)
        runs[v] = cars
        f = res.get('flip_rate', float('nan'))
        print(f"{v}: 3D@0.5 mod {res['3D@0.5']['moderate']:.1f}, 3D@0.7 mod {res['3D@0.7']['moderate']:.1f}, "
              f"BEV@0.7 mod {res['BEV@0.7']['moderate']:.1f}, flips (matched) {100 * f:.1f} %, "
              f"flips (all cars) {sum(bool(c.get('flipped')) for c in cars)} / {len(cars)}, "
              f"IoU3D >= 0.7 {np.mean([c.get('iou3d', 0) >= 0.7 for c in cars]):.3f} of {len(cars)}",
              flush=True)
    dump = run_all.CACHE / 'pred' / f'hybrid_cars {a.tag or a.dataset}.json'     # for offline rules
    dump.write_text(json.dumps(runs, default=float))
    key = [(c['frame'], c.get('line')) for c in runs[names[0]]]
    for v in names[1:]:     # the last hypothesis is the Procrustes one where there is one more than slf's
        for c, c0 in zip(runs[v], runs[names[0]]):
            if c.get('n_hyp') and c0.get('n_hyp') and c['n_hyp'] > c0['n_hyp'] and c['hyp'] == c['n_hyp'] - 1:
                c['hyp'] = 'P'
    print('\ncar | ' + ' | '.join(f'{v}: IoU3D, yaw err, hyp' for v in names))
    for j, k in enumerate(key):
        rows = [runs[v][j] for v in names]
        ious = [r.get('iou3d', 0.0) for r in rows]
        if max(ious) - min(ious) > 0.01 or len({r.get('flipped') for r in rows}) > 1:
            cells = [f"{r.get('iou3d', 0):.3f} {r.get('dyaw_deg', 180):.1f} {r['hyp']}" for r in rows]
            print(f'{k[0]}/{k[1]} ' + ' | '.join(cells))
    for v in names[1:]:
        up = [f'{k[0]}/{k[1]}' for k, a_, b_ in zip(key, runs[names[0]], runs[v])
              if a_.get('iou3d', 0) < 0.7 <= b_.get('iou3d', 0)]
        down = [f'{k[0]}/{k[1]}' for k, a_, b_ in zip(key, runs[names[0]], runs[v])
                if b_.get('iou3d', 0) < 0.7 <= a_.get('iou3d', 0)]
        wins = sum(1 for c in runs[v] if c['hyp'] == 'P')
        print(f'{v} vs {names[0]}: crosses IoU 0.7 upwards {len(up)} {up}, downwards {len(down)} {down}; '
              f'Procrustes hypothesis won {wins} of {len(runs[v])}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
