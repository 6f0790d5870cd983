"""Run a :class:`FrameLabeler` over a stream of tasks: in-process, in local worker processes, or on
Ray actors. Each worker/actor loads the models once; at most ``2 x workers`` frames are in flight
(bags can be big), and results come back in task order.

Frames (image + cloud) travel to the workers with the task, rather than each worker reading the bag,
so a Ray cluster whose nodes cannot see the input file works too.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import deque
from typing import Iterable, Iterator, Optional

from autolabel_ros.offline.worker import FrameLabeler, FrameTask

log = logging.getLogger(__name__)

_WORKER: Optional[FrameLabeler] = None


def _init_worker(cfg_dict: dict, torch_threads: int):
    global _WORKER
    _WORKER = FrameLabeler(cfg_dict, torch_threads=torch_threads)


def _run_task(task: FrameTask):
    return _WORKER(task)


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_inprocess(tasks: Iterable[FrameTask], cfg_dict: dict) -> Iterator[tuple]:
    labeler = FrameLabeler(cfg_dict)
    for task in tasks:
        yield labeler(task)


def run_processes(tasks: Iterable[FrameTask], cfg_dict: dict, workers: int) -> Iterator[tuple]:
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: torch's thread pools do not survive a fork of a process that already used them
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context('spawn'),
                               initializer=_init_worker, initargs=(cfg_dict, threads_per_worker(workers)))
    inflight: deque = deque()
    try:
        for task in tasks:
            inflight.append(pool.submit(_run_task, task))
            if len(inflight) >= 2 * workers:
                yield inflight.popleft().result()
        while inflight:
            yield inflight.popleft().result()
    finally:
        for f in inflight:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def start_ray(address: str, workers: int):
    """``local``: a private Ray instance with ``workers`` CPUs (no dashboard, small object store);
    anything else: the address of a running cluster (``auto``, ``ray://host:10001``, ``host:6379``).
    Returns True when this call started Ray (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if address == 'local':
        ray.init(num_cpus=workers, include_dashboard=False, object_store_memory=256 * 1024 * 1024,
                 log_to_driver=False, configure_logging=False)
    else:
        # the cluster's nodes need this package installed (pip install autolabel_ros) or shipped here
        import autolabel_ros
        ray.init(address=address, log_to_driver=False,
                 runtime_env={'py_modules': [os.path.dirname(autolabel_ros.__file__)]})
    return True


def run_ray(tasks: Iterable[FrameTask], cfg_dict: dict, workers: int,
            address: str = 'local') -> Iterator[tuple]:
    import ray

    started = start_ray(address, workers)
    try:
        Actor = ray.remote(num_cpus=1)(FrameLabeler)
        actors = [Actor.remote(cfg_dict, torch_threads=1) for _ in range(workers)]
        inflight: deque = deque()
        k = 0
        for task in tasks:
            inflight.append(actors[k % workers].__call__.remote(task))
            k += 1
            if len(inflight) >= 2 * workers:
                yield ray.get(inflight.popleft())
        while inflight:
            yield ray.get(inflight.popleft())
    finally:
        if started:
            ray.shutdown()


def run_tasks(tasks: Iterable[FrameTask], cfg_dict: dict, workers: int = 1,
              ray_address: Optional[str] = None) -> Iterator[tuple]:
    if ray_address:
        return run_ray(tasks, cfg_dict, max(1, workers), ray_address)
    if workers > 1:
        return run_processes(tasks, cfg_dict, workers)
    return run_inprocess(tasks, cfg_dict)
