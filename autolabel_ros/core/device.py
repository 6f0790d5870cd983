"""Pick the torch device from a config string (auto | cpu | cuda | cuda:N), failing loudly."""
from __future__ import annotations

import os
from contextlib import contextmanager


# thread pools that take their size from the environment when their library loads (OpenMP, OpenBLAS,
# MKL, OpenCV): a worker process gets its share of the cores through these
POOL_ENV = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENCV_FOR_THREADS_NUM')


def threads_per_worker(workers: int) -> int:
    """A local worker's share of the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class DeviceError(RuntimeError):
    """The requested compute device is not available."""


def resolve_device(name: str = 'auto'):
    import torch  # imported here so core/ stays importable without torch

    name = (name or 'auto').strip().lower()
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cpu':
        return torch.device('cpu')
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            raise DeviceError(f'device {name!r} requested but CUDA is not available '
                              f'(use device: cpu or auto)')
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f'device {name!r} requested but only {torch.cuda.device_count()} '
                              f'CUDA device(s) exist')
        return dev
    raise DeviceError(f'unknown device {name!r} (expected auto, cpu, cuda or cuda:N)')


def set_torch_threads(n: int) -> None:
    """Process-wide torch CPU threads, for entry points (CLIs, nodes, worker start-up) only: the
    library never changes them inside a call. ``n <= 0`` leaves torch's setting. The fit's tensors
    are small, so 1 thread (``fit.threads``'s default) is fastest and stays fast under CPU load."""
    if n and n > 0:
        import torch

        torch.set_num_threads(int(n))


def process_threads(fit_threads: int, share: int | None = None) -> int:
    """The compute threads of a labelling process, set once at its start by every face (the fitter
    node, ``autolabel-bag``'s workers, ``autolabel-kitti``) through this one function, so that one
    config gives the same thread counts, hence the same bits, whichever face labels a frame: torch
    runs ``fit.threads`` (0: the worker's ``share`` of the cores, else torch's default); OpenCV (the
    SSD detector) runs ``share`` when a worker has one and keeps its default otherwise. Returns the
    torch threads in effect (for the faces' start-up lines)."""
    set_torch_threads(fit_threads or share or 0)
    if share:
        import cv2

        cv2.setNumThreads(int(share))
    import torch

    return torch.get_num_threads()


@contextmanager
def torch_threads(n: int | None):
    """Torch CPU threads set to ``n`` inside the block and restored after it (a segmenter's own
    setting, a test's single thread); ``None`` leaves them as they are."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
