"""Run a :class:`FrameLabeler` over a stream of tasks: in-process, in local worker processes, or on
Ray actors. Each worker/actor loads the models once; at most ``2 x workers`` frames are in flight
(bags can be big). With more than one worker, results come back as they finish (a slow frame never
holds a free worker idle behind it); the job saves each under its frame index, so the order does not
reach the outputs.

Frames (image + cloud) travel to the workers with the task, rather than each worker reading the bag,
so a Ray cluster whose nodes cannot see the input file works too.

Local workers on Linux are forked from this process after it has loaded the models once (with one
thread): they share the weights copy-on-write and start labelling at once, instead of each
importing torch & co. and loading the same models at the same time (the spawned workers' start
cost two workers ~2.5 s of wall clock and a whole model load of CPU more than one worker).
"""
from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing as mp
import os
import sys
import time
from collections import deque
from typing import Callable, Iterable, Iterator, Optional

from autolabel_ros.core.device import POOL_ENV, threads_per_worker
from autolabel_ros.core.interrupts import caused_by_interrupt
from autolabel_ros.offline.readahead import ReadAhead
from autolabel_ros.offline.schedule import dearest_first, dearest_order, prompt_count
from autolabel_ros.offline.worker import FrameLabeler, FrameTask

log = logging.getLogger(__name__)

_WORKER: Optional[FrameLabeler] = None


_BUSY = False       # a worker process labelling a frame (its Ctrl-C then ends that frame)


def _on_ctrl_c(signum, frame):
    """A Ctrl-C at a terminal reaches the workers too: one labelling a frame stops it (the pool
    returns the KeyboardInterrupt to the main process, which stops the run); an idle one, waiting
    for its next frame, ends at once and quietly (else a traceback from the pool's queue). It ends
    through SystemExit, not ``os._exit``: an idle worker waits for its next frame holding the lock
    of the pool's task queue, which an ``os._exit`` would leave held, and a worker that stopped its
    frame would wait on it for ever (the run hung at its shutdown); multiprocessing ends a worker
    quietly on SystemExit(0)."""
    if _BUSY:
        raise KeyboardInterrupt
    raise SystemExit(0)


def _worker_signals():
    import signal

    signal.signal(signal.SIGINT, _on_ctrl_c)


def _init_worker(cfg_dict: dict, torch_threads: int):
    global _WORKER
    _worker_signals()
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


def _adopt_worker(labeler: FrameLabeler):
    """Initializer of a forked worker: the parent's loaded models (copy-on-write), this worker's
    threads set now, the first compute pool of this process (see :func:`fork_start`). A forked
    process ends with ``os._exit`` anyway (multiprocessing), without the interpreter's teardown."""
    global _WORKER
    _worker_signals()
    _WORKER = labeler
    labeler.set_threads()


def _run_task(task: FrameTask):
    global _BUSY
    _BUSY = True
    try:
        return _WORKER(task)
    finally:
        _BUSY = False


def fork_start(cfg_dict: dict, threads: int) -> bool:
    """Whether the workers can be forked from this process once it has loaded the models: Linux (a
    fork elsewhere is unsafe: macOS's system libraries, or there is none: Windows), the CPU (a CUDA
    context does not survive a fork) and one thread per worker (torch, the segmenter, OpenCV: the
    default with as many workers as cores). A forked child must not use a thread pool its parent
    started (GNU OpenMP hangs in it); the parent loads the models on one thread, but a library
    caller's process may have run pools before, which a worker on one thread never touches.
    OpenBLAS sizes its pool when numpy loads, and a forked child keeps that size: so this process
    must have been started with ``OPENBLAS_NUM_THREADS=1`` (``autolabel-bag`` sets it before numpy
    loads when it will run local workers), else two workers of two BLAS threads each oversubscribe
    the cores (measured: frames 5 % dearer in CPU). Otherwise the workers are spawned and load their
    own models, as before."""
    if not sys.platform.startswith('linux') or 'fork' not in mp.get_all_start_methods():
        return False
    if os.environ.get('OPENBLAS_NUM_THREADS') != '1':
        return False
    fit_threads = int((cfg_dict.get('fit') or {}).get('threads') or 0)
    seg_threads = int((cfg_dict.get('segmenter') or {}).get('threads') or 0)
    if threads != 1 or fit_threads > 1 or seg_threads > 1:
        return False
    from autolabel_ros.core.device import resolve_device

    return resolve_device(str(cfg_dict.get('device') or 'auto')).type == 'cpu'


def _cv2_single_threaded():
    """OpenCV on one thread in this process while it loads the models and forks (no pool started for
    the children to inherit; the read-ahead's detector runs with it); returns a function restoring it."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return lambda: cv2.setNumThreads(before)


def _torch_single_threaded():
    """The same for torch (its import is most of the model load: after the read-ahead has started)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return lambda: torch.set_num_threads(before)


def run_inprocess(tasks: Iterable[FrameTask], cfg_dict: dict,
                  threads: Optional[int] = None) -> Iterator[tuple]:
    labeler = FrameLabeler(cfg_dict, torch_threads=threads)
    for task in tasks:
        yield labeler(task)


def run_processes(tasks: Iterable[FrameTask], cfg_dict: dict, workers: int,
                  threads: Optional[int] = None, meanwhile: Optional[Callable[[], None]] = None
                  ) -> Iterator[tuple]:
    """``meanwhile``: the caller's own imports, done while this process loads the models for the
    workers it forks (the second thread warms the segmenter up then, offline/worker.py)."""
    from concurrent.futures import ProcessPoolExecutor

    threads = threads or threads_per_worker(workers)
    tasks = iter(tasks)
    first = next(tasks, None)
    if first is None:
        return
    w, c = time.perf_counter(), time.process_time()    # a forked run's model load: torch's import too
    forked = fork_start(cfg_dict, threads)
    # the workers inherit these at spawn: OpenMP/BLAS/OpenCV pools sized like torch's, so N workers do
    # not oversubscribe the cores (Ray does the same for its actors)
    saved = {k: os.environ.get(k) for k in POOL_ENV}
    os.environ.update({k: str(threads) for k in POOL_ENV})
    pool = None
    restore: list = []      # the thread settings changed for the fork, restored at the end
    inflight: dict = {}     # future -> submission number (finished ones are yielded in that order)
    try:
        load = None
        if forked:
            restore.append(_cv2_single_threaded())
            labeler = FrameLabeler(cfg_dict, torch_threads=threads)
            need_detector = first.prompts is None
            # the frames are read, and with an OpenCV detector detected, on a second thread while the
            # models load (offline/readahead.py); all of them then go dearest first
            early = need_detector and labeler.detects_without_torch()
            reader = ReadAhead(labeler, itertools.chain([first], tasks), detect=early, fused=first.fused,
                               min_frames=2 * workers + 1).start()
            try:
                restore.append(_torch_single_threaded())
                try:
                    labeler.preload(need_detector and not early, first.fused, meanwhile)
                    load = {'models_s': time.perf_counter() - w, 'models_cpu_s': time.process_time() - c}
                except Exception as e:   # noqa: BLE001 - the workers try again and report it per frame
                    if caused_by_interrupt(e):     # a Ctrl-C that an extension's import turned into an error
                        raise
                    log.debug('models not loaded before the fork (%s: %s)', type(e).__name__, e)
            except BaseException:
                reader.stop(raise_error=False)
                raise
            ahead = reader.stop()
            if load is not None:
                load['models_cpu_s'] -= reader.cpu_s     # reading and detecting, not loading
                load.update(read_ahead_frames=len(ahead), read_ahead_cpu_s=reader.cpu_s)
            # then the frames it did not read (the first one too when it read none)
            pending = itertools.chain(dearest_order(ahead, prompt_count), reader.tasks)
            first = next(pending)
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context('fork'),
                                       initializer=_adopt_worker, initargs=(labeler,))
            inflight[pool.submit(_run_task, first)] = 0     # the workers are forked here
            # this process detects the frames it reads after the fork too, to order them
            # (offline/schedule.py), with the workers' threads (the same boxes): its one thread is
            # restored at the end; frames it could not detect during the load (a torch detector) go to
            # the other workers at once, detected by them
            tasks = (t if k < workers - 1 else labeler.detect_ahead(t) for k, t in enumerate(pending))
        else:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context('spawn'),
                                       initializer=_init_worker, initargs=(cfg_dict, threads))
            inflight[pool.submit(_run_task, first)] = 0
        tasks = dearest_first(tasks, prompt_count, lookahead=2 * workers, in_order=workers - 1)

        def finished():
            nonlocal load
            for result in _finished(inflight):
                load = _report_load(result, load)
                yield result
        for k, task in enumerate(tasks, start=1):
            inflight[pool.submit(_run_task, task)] = k
            if len(inflight) >= 2 * workers:
                yield from finished()
        while inflight:
            yield from finished()
    finally:
        for f in inflight:
            f.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for undo in reversed(restore):
            undo()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _report_load(result: tuple, load: Optional[dict]) -> Optional[dict]:
    """The parent's model load goes into the timings of the first frame labelled, where a worker's own
    load is (phases.worker_summary: one load, not one per forked worker); returns what is left."""
    if load is not None and 'timings' in result[0]:
        result[0]['timings'].update(load)
        return None
    return load


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
              ray_address: Optional[str] = None, threads: Optional[int] = None,
              meanwhile: Optional[Callable[[], None]] = None) -> Iterator[tuple]:
    """``threads``: torch threads per worker (default: cpus / workers locally, 1 per Ray actor).
    Results are bit-identical across worker counts and Ray when the threads per worker are equal.
    ``meanwhile``: see :func:`run_processes` (forked local workers only)."""
    if ray_address:
        return run_ray(tasks, cfg_dict, max(1, workers), threads, ray_address)
    if workers > 1:
        return run_processes(tasks, cfg_dict, workers, threads, meanwhile)
    return run_inprocess(tasks, cfg_dict, threads)
