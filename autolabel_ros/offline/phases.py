"""Where an ``autolabel-bag`` run's time goes, for ``report/summary.json`` -> ``run`` and the benchmark.

Per phase of the main process its wall and CPU seconds (``time.process_time``: every thread of the
process, so the pool's feeder thread pickling frames counts too); after the run the CPU seconds of
the process and of its finished children (the workers, the figure process) from ``getrusage``. On a
machine shared with other jobs the CPU seconds stay comparable where the wall clock does not, and
they give the serial share that bounds the speed-up of more workers.
"""
from __future__ import annotations

import resource
import threading
import time

from autolabel_ros.core.stage_clock import StageClock


def _process_or_thread_time() -> float:
    """The process' CPU seconds on the main thread; on another one (the frames read while the models
    load, offline/readahead.py) that thread's own, so a phase timed there holds only its work."""
    if threading.current_thread() is threading.main_thread():
        return time.process_time()
    return time.thread_time()


class PhaseClock(StageClock):
    """The fit's stage clock counting the CPU seconds of the whole process (of a thread's own phases)."""
    cpu_time = staticmethod(_process_or_thread_time)

    def as_dict(self) -> dict:
        return {k: {'wall_s': self.wall[k], 'cpu_s': self.cpu[k]} for k in self.wall}


def process_usage() -> dict:
    """CPU seconds and peak RSS (MB) of this process and of its children that have exited."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {'main_cpu_s': me.ru_utime + me.ru_stime, 'children_cpu_s': kids.ru_utime + kids.ru_stime,
            'main_rss_mb': me.ru_maxrss / 1024, 'children_rss_mb': kids.ru_maxrss / 1024}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_summary(records: list) -> dict:
    """The workers' side of the run from the frames labelled in it (``timings`` of their records):
    CPU seconds spent on frames, model loading (per worker that loaded them), peak RSS per worker."""
    t = [r.get('timings', {}) for r in records]
    loads = [x for x in t if 'models_s' in x]
    return {'frames': len(t),
            'frame_cpu_s': sum(x.get('worker_cpu_s', 0.0) for x in t),
            'model_loads': len(loads),
            'models_s': [x['models_s'] for x in loads],
            'models_cpu_s': [x.get('models_cpu_s', 0.0) for x in loads],
            'rss_mb': max((x.get('worker_rss_mb', 0.0) for x in t), default=0.0),
            'task_mb': sum(x.get('task_mb', 0.0) for x in t) / max(1, len(t)),
            'result_mb': sum(x.get('result_mb', 0.0) for x in t) / max(1, len(t))}


def schedule_summary(spans: list, origin: float, workers: int) -> dict:
    """How busy the workers were while labelling, from each frame's ``span`` (worker id, monotonic
    start and end of the call, its first frame's model load included) and ``origin`` (the labelling's
    start). ``span_s``: origin to the last frame's end; per worker: ``start_s`` (origin to its first
    frame: process start and imports), ``busy_s`` (in frames), ``gap_s`` (waiting between frames for
    a task) and ``tail_s`` (idle after its last frame until the last worker ended); ``idle_share``:
    the share of ``workers x span_s`` not spent in frames, what more workers cannot split."""
    if not spans:
        return {}
    end = max(s['end'] for s in spans)
    span = end - origin
    per: dict = {}
    for s in sorted(spans, key=lambda s: s['start']):
        per.setdefault(s['worker'], []).append(s)
    rows = []
    for mine in per.values():
        busy = sum(s['end'] - s['start'] for s in mine)
        rows.append({'frames': len(mine), 'start_s': mine[0]['start'] - origin,
                     'start_cpu_s': mine[0].get('cpu', 0.0), 'busy_s': busy,
                     'gap_s': mine[-1]['end'] - mine[0]['start'] - busy, 'tail_s': end - mine[-1]['end']})
    n = max(workers, len(rows))
    busy = sum(r['busy_s'] for r in rows)
    return {'span_s': span, 'workers': rows,
            'idle_share': 1.0 - busy / (n * span) if span > 0 else None}
