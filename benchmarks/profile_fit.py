"""Where the fit's time goes, per stage, on a benchmark set's frames (one torch thread, CPU).

The evidence of each frame (masks from the benchmark's mask cache, lifting, occlusion) is captured
once through the pipeline's own steps; then the fit (:meth:`Fitter.fit`) and the label building
(mesh, verification, accept decision: the pipeline's "post" step) are timed on it ``--repeats``
times. Reported: the median per-instance time (per frame (fit + post) / instances, the figure of the
timing row) in wall-clock and thread CPU seconds, and the per-stage table (the stages of
:mod:`autolabel_ros.core.stage_clock`; CPU seconds per instance, summed over the frames).

``--compare DIR`` times another checkout of the package (e.g. ``git worktree add /tmp/base main``)
on the same captured evidence, alternating the two in fresh processes so the machine's load hits
both alike, and prints both tables and the ratio of the medians.

    python benchmarks/profile_fit.py --set kitti --repeats 3
    python benchmarks/profile_fit.py --set apollo --frames 10 --compare /tmp/base --rounds 4
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETS = {'kitti': 'kitti', 'sim': 'sim64', 'apollo': 'apollo64'}


def capture(set_name: str, n_frames: int | None) -> list[tuple]:
    """(frame id, frame, prompts, evidence, fit arguments) of each frame with objects: the pipeline
    runs up to the fit (cached MobileSAM masks), the fit's inputs are kept."""
    from autolabel_ros.config import from_dict
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.pipeline import Autolabeler
    from benchmarks.run_all import KITTI, CachedSegmenter, apollo_root, sim_root
    data = {'kitti': KITTI, 'sim': sim_root(64), 'apollo': apollo_root()}[set_name]
    if not Path(data).is_dir():
        sys.exit(f'profile_fit: {data} not found (set {set_name})')
    al = Autolabeler(from_dict({}))
    seg = CachedSegmenter(al, f'{SETS[set_name]}_gt-boxes')
    al._segmenter = seg
    ds = KittiObjectDataset(data)
    fids = ds.frame_ids[:n_frames] if n_frames else ds.frame_ids
    out = []
    fit0 = al.fitter.fit
    seen = {}

    def skip_fit(fr, evidence, *rest):      # keep the fit's inputs, skip the fit itself
        seen['ev'], seen['rest'] = evidence, rest
        raise _Captured

    for fid in fids:
        al.fitter.fit = skip_fit
        seg.fid = fid
        frame = ds.load_frame(fid)
        try:
            al.label(frame, ds.prompts(fid, mode='gt-boxes', seed=al.cfg.seed))
        except _Captured:
            out.append((fid, frame, ds.prompts(fid, mode='gt-boxes', seed=al.cfg.seed), seen['ev'],
                        seen['rest']))
        finally:
            al.fitter.fit = fit0
    return out


class _Captured(Exception):
    pass


def time_fits(frames: list[tuple], repeats: int) -> dict:
    """Per frame and repeat: wall and CPU seconds of fit and post, and the fit's stage clock."""
    import torch

    import autolabel_ros.fit.result as result
    from autolabel_ros.config import from_dict
    from autolabel_ros.pipeline import Autolabeler
    torch.set_num_threads(1)
    al = Autolabeler(from_dict({}))
    post_stages = {'post.mesh': 0.0, 'post.surface_ratio': 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            c = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                post_stages[name] += time.thread_time() - c
        return wrapper

    mesh0, ratio0 = result.canonical_mesh, result.surface_ratio
    result.canonical_mesh = timed('post.mesh', mesh0)
    result.surface_ratio = timed('post.surface_ratio', ratio0)
    rows = []
    try:
        for rep in range(repeats + 1):                 # rep 0 warms up on the first frame (not kept)
            for fid, frame, prompts, ev, rest in (frames[:1] if rep == 0 else frames):
                for k in post_stages:
                    post_stages[k] = 0.0
                w0, c0 = time.perf_counter(), time.thread_time()
                fits, ft = al.fitter.fit(frame, ev, *rest)
                w1, c1 = time.perf_counter(), time.thread_time()
                for o, f in zip(ev.objects, fits):
                    result.make_label(prompts[o.index], o, f, al.sdf, al.cfg, ev.scan_nonground)
                w2, c2 = time.perf_counter(), time.thread_time()
                if rep == 0:
                    continue
                stages = dict(ft.stages.cpu) if hasattr(ft, 'stages') else {}   # older checkouts: none
                stages.update(post_stages)
                rows.append(dict(frame=fid, n=len(ev.objects), fit_wall=w1 - w0, fit_cpu=c1 - c0,
                                 post_wall=w2 - w1, post_cpu=c2 - c1, stages=stages))
    finally:
        result.canonical_mesh, result.surface_ratio = mesh0, ratio0
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    """Median per-instance times over (frame, repeat) and the per-stage CPU seconds per instance."""
    n = sum(r['n'] for r in rows)
    per_wall = [(r['fit_wall'] + r['post_wall']) / r['n'] for r in rows]
    per_cpu = [(r['fit_cpu'] + r['post_cpu']) / r['n'] for r in rows]
    stages: dict[str, float] = {}
    for r in rows:
        for k, v in r['stages'].items():
            stages[k] = stages.get(k, 0.0) + v
    total_fit = sum(r['fit_cpu'] for r in rows)
    fit_stages = sum(v for k, v in stages.items() if not k.startswith('post.'))
    stages['other (fit)'] = total_fit - fit_stages
    stages['post (rest)'] = sum(r['post_cpu'] for r in rows) - stages.get('post.mesh', 0.0) \
        - stages.get('post.surface_ratio', 0.0)
    return dict(median_wall_s_per_instance=float(np.median(per_wall)),
                median_cpu_s_per_instance=float(np.median(per_cpu)),
                mean_cpu_s_per_instance=float(sum(c * r['n'] for c, r in zip(per_cpu, rows)) / n),
                stages_cpu_s_per_instance={k: v / n for k, v in stages.items()}, n_instances=n,
                runs=len(rows))


STAGE_NOTES = {
    'prep': 'crops, rays, the batch', 'fwd.decode': 'per-hypothesis SDF volumes',
    'fwd.mask': 'silhouette render + Dice (forward)', 'fwd.lidar': 'LiDAR + free-space lookups (forward)',
    'fwd.ground': 'ground contact (forward)', 'backward.no_mask': 'backward, steps before the silhouette',
    'backward': 'backward, steps with the silhouette', 'adam': 'optimiser steps',
    'prune': 'scoring all hypotheses (full energy)', 'final_energy': 'final energy of the survivors',
    'verify': 'fine hard render, mask IoU', 'heading_cues': 'front/back cues + choice',
    'other (fit)': 'the rest of the fit (Python, bookkeeping)', 'post.mesh': 'marching cubes (label mesh)',
    'post.surface_ratio': 'LiDAR surface agreement', 'post (rest)': 'accept decision, label'}


def table(res: dict, other: dict | None = None, names=('this', 'other')) -> str:
    s = res['stages_cpu_s_per_instance']
    keys = sorted(set(s) | set(other['stages_cpu_s_per_instance'] if other else ()),
                  key=lambda k: -s.get(k, 0.0))
    tot = sum(s.values())
    if other is None:
        lines = ['| stage | what | CPU ms / instance | share % |', '|---|---|---|---|']
        for k in keys:
            lines.append(f'| {k} | {STAGE_NOTES.get(k, "")} | {1e3 * s[k]:.1f} | '
                         f'{100 * s[k] / tot:.1f} |')
        lines.append(f'| total | | {1e3 * tot:.1f} | 100 |')
        return '\n'.join(lines)
    o = other['stages_cpu_s_per_instance']
    lines = [f'| stage | what | {names[1]} CPU ms / inst | {names[0]} CPU ms / inst | ratio |',
             '|---|---|---|---|---|']
    for k in keys:
        a, b = s.get(k, 0.0), o.get(k, 0.0)
        lines.append(f'| {k} | {STAGE_NOTES.get(k, "")} | {1e3 * b:.1f} | {1e3 * a:.1f} | '
                     f'{a / b if b > 0 else float("nan"):.2f} |')
    ot = sum(o.values())
    lines.append(f'| total | | {1e3 * ot:.1f} | {1e3 * tot:.1f} | {tot / ot:.2f} |')
    return '\n'.join(lines)


def start_child(checkout: Path, evidence: Path, repeats: int):
    """Time a checkout's fit on the captured evidence in a fresh process: (process, its JSON path)."""
    with tempfile.NamedTemporaryFile(suffix='.json', delete=False) as fh:
        out = Path(fh.name)
    env = dict(os.environ, PYTHONPATH=str(checkout))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), '--evidence', str(evidence),
                             '--repeats', str(repeats), '--json', str(out), '--quiet', '--package',
                             str(checkout)], env=env, cwd=checkout)
    return proc, out


def child_result(proc, out: Path) -> dict:
    if proc.wait() != 0:
        sys.exit(f'profile_fit: the timing of {proc.args[-1]} failed')
    res = json.loads(out.read_text())
    out.unlink()
    return res


def merge(results: list[dict]) -> dict:
    """Rounds of one checkout: the median of the rounds' medians, stages averaged."""
    keys = set().union(*(r['stages_cpu_s_per_instance'] for r in results))
    def med(key):
        return float(np.median([r[key] for r in results]))

    return dict(median_wall_s_per_instance=med('median_wall_s_per_instance'),
                median_cpu_s_per_instance=med('median_cpu_s_per_instance'),
                rounds_cpu=[r['median_cpu_s_per_instance'] for r in results],
                rounds_wall=[r['median_wall_s_per_instance'] for r in results],
                stages_cpu_s_per_instance={k: float(np.mean([r['stages_cpu_s_per_instance'].get(k, 0.0)
                                                             for r in results])) for k in keys},
                n_instances=results[0]['n_instances'])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--set', default='kitti', choices=sorted(SETS))
    p.add_argument('--frames', type=int, default=None, help='the first N frames of the set (default: all)')
    p.add_argument('--repeats', type=int, default=2,
                   help='timed passes over the frames (after a warm-up fit)')
    p.add_argument('--evidence', default=None, help='captured evidence (pickle) to time instead of capturing')
    p.add_argument('--save-evidence', default=None, help='write the captured evidence here (pickle)')
    p.add_argument('--compare', default=None, help='another checkout of the repository to time A/B')
    p.add_argument('--rounds', type=int, default=3, help='alternating rounds with --compare')
    p.add_argument('--together', action='store_true',
                   help='with --compare: run the two checkouts at the same time (a loaded machine)')
    p.add_argument('--json', default=None, help='write the result here')
    p.add_argument('--quiet', action='store_true')
    p.add_argument('--package', default=None, help=argparse.SUPPRESS)   # the checkout a --compare child times
    a = p.parse_args(argv)
    if a.package:
        sys.path.insert(0, str(Path(a.package).resolve()))     # before any autolabel_ros import
    if a.evidence:
        path = Path(a.evidence)
        if not path.is_file():
            sys.exit(f'profile_fit: {path} not found')
        with open(path, 'rb') as fh:
            frames = pickle.load(fh)
    else:
        frames = capture(a.set, a.frames)
    if a.save_evidence or (a.compare and not a.evidence):
        path = Path(a.save_evidence or tempfile.mkstemp(suffix='.pkl')[1])
        with open(path, 'wb') as fh:
            pickle.dump(frames, fh)
    if a.compare:
        other = Path(a.compare).resolve()
        mine, theirs = [], []
        for k in range(a.rounds):
            order = [(ROOT, mine), (other, theirs)] if k % 2 == 0 else [(other, theirs), (ROOT, mine)]
            if a.together:      # both at once: the same load on both
                started = [(start_child(ck, path, a.repeats), ck, acc) for ck, acc in order]
                done = [(child_result(*st), ck, acc) for st, ck, acc in started]
            else:
                done = [(child_result(*start_child(ck, path, a.repeats)), ck, acc) for ck, acc in order]
            for r, ck, acc in done:
                acc.append(r)
                if not a.quiet:
                    print(f'round {k + 1}: {ck}: median {r["median_cpu_s_per_instance"]:.3f} s CPU, '
                          f'{r["median_wall_s_per_instance"]:.3f} s wall per instance', flush=True)
        res, base = merge(mine), merge(theirs)
        print(table(res, base, names=(ROOT.name, other.name)))
        print(f'median per instance: {other.name} {base["median_cpu_s_per_instance"]:.3f} s CPU '
              f'({base["median_wall_s_per_instance"]:.3f} s wall), {ROOT.name} '
              f'{res["median_cpu_s_per_instance"]:.3f} s CPU '
              f'({res["median_wall_s_per_instance"]:.3f} s wall); '
              f'ratio {res["median_cpu_s_per_instance"] / base["median_cpu_s_per_instance"]:.2f} CPU, '
              f'{res["median_wall_s_per_instance"] / base["median_wall_s_per_instance"]:.2f} '
              'wall '
              f'({res["n_instances"]} instances, {a.rounds} rounds x {a.repeats} repeats)')
        res = dict(this=res, other=base)
    else:
        res = time_fits(frames, a.repeats)
        if not a.quiet:
            print(table(res))
            print(f'median per instance: {res["median_cpu_s_per_instance"]:.3f} s CPU, '
                  f'{res["median_wall_s_per_instance"]:.3f} s wall ({res["n_instances"]} instances, '
                  f'{a.repeats} repeats)')
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == '__main__':
    main()
