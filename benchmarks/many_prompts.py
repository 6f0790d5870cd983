"""Time and peak memory of one frame with many prompts, through the offline worker.

    PYTHONPATH=. python benchmarks/many_prompts.py [--prompts 150] [--frame 000008] [--data DIR] [--fast]

Runs one child process per setting (so each peak RSS is its own): all prompts in one batch without
a cap (the behaviour before chunking), the same prompts in chunks of 32 without a cap, and the
defaults (cap ``max_prompts`` 100, chunks of 32). Prompts are the frame's ground-truth car boxes,
jittered by a seeded few pixels and repeated up to the count. Prints one JSON line per setting.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {'one_batch_no_cap': (0, 10 ** 6), 'chunks_no_cap': (0, 32), 'defaults': (100, 32)}


def child(data: str, frame: str, n: int, cap: int, chunk: int, fast: bool = False) -> dict:
    import numpy as np

    from autolabel_ros.config import AutolabelConfig, to_dict
    from autolabel_ros.core.types import Prompt
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.offline.worker import FrameLabeler, FrameTask

    ds = KittiObjectDataset(data)
    f = ds.load_frame(frame)
    gt = ds.prompts(frame)
    rng = np.random.default_rng(0)
    prompts = []
    for k in range(n):
        b = gt[k % len(gt)].box + rng.uniform(-4, 4, 4)
        prompts.append(Prompt(id=k, box=b, score=float(rng.uniform(0.5, 1.0))))
    cfg = AutolabelConfig()
    cfg.max_prompts = cap
    if fast:     # box masks and a short fit: what grows with the prompt count, without SAM's time
        cfg.segmenter.model = 'box'
        cfg.fit.iterations, cfg.fit.prune_after, cfg.fit.mask_from = 12, 6, 6
    labeler = FrameLabeler(to_dict(cfg))
    labeler._models(False)                       # model loading is not part of the frame's time
    t0 = time.perf_counter()
    task = FrameTask(index=0, name=frame, stamp_ns=0, frame=f, prompts=prompts, prompt_chunk=chunk)
    record, _ = labeler(task)
    wall = time.perf_counter() - t0
    return {'prompts': n, 'fast': fast, 'max_prompts': cap, 'prompt_chunk': chunk, 'frame_s': round(wall, 1),
            'labels': len(record.get('labels', [])), 'dropped': len(record.get('dropped_prompts', [])),
            'error': record.get('error'),
            'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--prompts', type=int, default=150)
    ap.add_argument('--frame', default='000008')
    ap.add_argument('--data', default=str(REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training'))
    ap.add_argument('--settings', default=','.join(SETTINGS))
    ap.add_argument('--fast', action='store_true', help='box masks and a 12-step fit instead of SAM and 80')
    ap.add_argument('--child', nargs=2, type=int, metavar=('CAP', 'CHUNK'), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.data, a.frame, a.prompts, *a.child, fast=a.fast)))
        return 0
    for name in a.settings.split(','):
        cap, chunk = SETTINGS[name]
        r = subprocess.run([sys.executable, __file__, '--prompts', str(a.prompts), '--frame', a.frame,
                            '--data', a.data, '--child', str(cap), str(chunk)] + ['--fast'] * a.fast,
                           capture_output=True, text=True)
        out = r.stdout.strip()
        line = out.splitlines()[-1] if out else json.dumps({'error': r.stderr[-500:]})
        print(json.dumps({'setting': name, **json.loads(line)}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
