"""Run a :class:`FrameLabeler` over a stream of tasks: in-process, in local worker processes, or on
Ray actors. Each worker/actor loads the models once; at most ``2 x workers`` frames are in flight
(bags can be big). With more than one worker, results come back as they finish (a slow frame never
holds a free worker idle behind it); the job saves each under its frame index, so the order does not
reach the outputs.

Frames (image + cloud) travel to the workers with the task, rather than each worker reading the bag,
so a Ray cluster whose nodes cannot see the input file works too.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import sys
from collections import deque
from typing import Iterable, Iterator, Optional

from autolabel_ros.offline.worker import FrameLabeler, FrameTask

log = logging.getLogger(__name__)

_WORKER: Optional[FrameLabeler] = None
THREAD_ENV = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENCV_FOR_THREADS_NUM')


def _init_worker(cfg_dict: dict, torch_threads: int):
    global _WORKER
    _WORKER = FrameLabeler(cfg_dict, torch_threads=torch_threads)
    atexit.register(_exit_without_teardown)


def _exit_without_teardown():
    """A worker process ends here rather than through the interpreter's teardown: freeing the models
    object by object and unloading torch takes a second or more, which the job would wait for
    between the last frame and its outputs. Its results are all returned by then, and the pool
    treats any exit before it is shut down as a crash whatever the code, so 0 loses nothing."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):    # closed or gone with the terminal
            pass
    os._exit(0)


def _run_task(task: FrameTask):
    return _WORKER(task)


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_inprocess(tasks: Iterable[FrameTask], cfg_dict: dict,
                  threads: Optional[int] = None) -> Iterator[tuple]:
    labeler = FrameLabeler(cfg_dict, torch_threads=threads)
    for task in tasks:
        yield labeler(task)


def run_processes(tasks: Iterable[FrameTask], cfg_dict: dict, workers: int,
                  threads: Optional[int] = None) -> Iterator[tuple]:
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: torch's thread pools do not survive a fork of a process that already used them
    threads = threads or threads_per_worker(workers)
    # the workers inherit these at spawn: OpenMP/BLAS/OpenCV pools sized like torch's, so N workers do
    # not oversubscribe the cores (Ray does the same for its actors)
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: str(threads) for k in THREAD_ENV})
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context('spawn'),
                               initializer=_init_worker, initargs=(cfg_dict, threads))
    inflight: dict = {}     # future -> submission number (finished ones are yielded in that order)
    try:
        for k, task in enumerate(tasks):
            inflight[pool.submit(_run_task, task)] = k
            if len(inflight) >= 2 * workers:
                yield from _finished(inflight)
        while inflight:
            yield from _finished(inflight)
    finally:
        for f in inflight:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _finished(inflight: dict) -> Iterator[tuple]:
    """Wait for at least one of the futures; yield the results of all finished ones (removed)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
    for f in sorted(done, key=inflight.get):
        del inflight[f]
        yield f.result()


def check_ray_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, with one line, when Ray is missing or a cluster address cannot be reached
    (``ray.init`` retries for tens of seconds, then raises a ConnectionError traceback)."""
    import socket

    from autolabel_ros.io.bags import BagError

    try:
        import ray  # noqa: F401
    except ImportError:
        raise BagError('--ray: Ray is not installed (pip install autolabel_ros[ray])') from None
    if address == 'local':
        return
    if address == 'auto':
        if os.environ.get('RAY_ADDRESS'):
            return check_ray_address(os.environ['RAY_ADDRESS'], timeout_s)
        if not os.path.exists('/tmp/ray/ray_current_cluster'):
            raise BagError("--ray auto: no running Ray cluster found on this machine (start one with "
                           "'ray start --head', or use --ray local)")
        return
    hostport = address.split('://', 1)[-1].rstrip('/')
    host, sep, port = hostport.rpartition(':')
    if not sep or not port.isdigit() or not host:
        raise BagError(f"--ray {address}: expected 'local', 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    try:
        with socket.create_connection((host.strip('[]'), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise BagError(f'--ray {address}: cannot reach the Ray cluster ({e.strerror or e}); is it '
                       f'running, and is the address right?') from None


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


def run_ray(tasks: Iterable[FrameTask], cfg_dict: dict, workers: int, threads: Optional[int] = None,
            address: str = 'local') -> Iterator[tuple]:
    import ray

    started = start_ray(address, workers * (threads or 1))
    try:
        # one CPU and one torch thread per actor unless told otherwise
        Actor = ray.remote(num_cpus=threads or 1)(FrameLabeler)
        actors = [Actor.remote(cfg_dict, torch_threads=threads or 1) for _ in range(workers)]
        # each actor keeps two frames queued and gets its next one when it returns one, so a slow
        # frame delays only its own actor (round-robin would queue frames behind it)
        owner: dict = {}
        free = deque(a for _ in range(2) for a in actors)
        tasks = iter(tasks)
        exhausted = False
        while True:
            while free and not exhausted:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                actor = free.popleft()
                owner[actor.__call__.remote(task)] = actor
            if not owner:
                break
            ready, _ = ray.wait(list(owner), num_returns=1)
            for ref in ready:
                free.append(owner.pop(ref))
                yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()


def run_tasks(tasks: Iterable[FrameTask], cfg_dict: dict, workers: int = 1,
              ray_address: Optional[str] = None, threads: Optional[int] = None) -> Iterator[tuple]:
    """``threads``: torch threads per worker (default: cpus / workers locally, 1 per Ray actor).
    Results are bit-identical across worker counts and Ray when the threads per worker are equal."""
    if ray_address:
        return run_ray(tasks, cfg_dict, max(1, workers), threads, ray_address)
    if workers > 1:
        return run_processes(tasks, cfg_dict, workers, threads)
    return run_inprocess(tasks, cfg_dict, threads)
