"""Handing the allocator's free pages back to the system, and fixing its thresholds (stdlib only).

A node receives multi-MB messages (1.4 MB images, 2.5 MB clouds) on DDS and executor threads and
frees them on its worker thread; glibc's malloc raises its mmap threshold above the first such
buffer it frees, so the later ones come from per-thread arenas, which keep their freed pages. Over
the first minute of a bag that is ~100-130 MiB of resident memory that holds nothing.
``malloc_trim(0)`` returns the free pages of every arena (``madvise(MADV_DONTNEED)``) without
changing how anything is allocated, unlike a fixed ``MALLOC_MMAP_THRESHOLD_`` (which made every
large torch tensor of the fit fresh pages: +20-35 % fit CPU).

``settle_malloc_thresholds`` fixes the mmap threshold at the other end, glibc's own cap (32 MiB),
so a node's warm-up frame allocates the way every later frame does (see there).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Optional

_funcs: dict = {}     # C functions, looked up once; None where the C library has none

# mallopt parameter numbers (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX) and the trim threshold
# it pairs with it (twice the mmap threshold)
STEADY_MMAP_THRESHOLD = 32 * 1024 * 1024
STEADY_TRIM_THRESHOLD = 2 * STEADY_MMAP_THRESHOLD


def _libc(name: str, argtypes: list) -> Optional[object]:
    if name not in _funcs:
        lib = ctypes.util.find_library('c')
        try:
            fn = getattr(ctypes.CDLL(lib), name) if lib else None
        except (OSError, AttributeError):      # not glibc (musl, macOS): nothing to tune
            fn = None
        if fn is not None:
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
        _funcs[name] = fn
    return _funcs[name]


def _malloc_trim() -> Optional[object]:
    return _libc('malloc_trim', [ctypes.c_size_t])


def settle_malloc_thresholds(mmap_bytes: int = STEADY_MMAP_THRESHOLD,
                             trim_bytes: int = STEADY_TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at its dynamic cap (and the trim threshold at twice that, as glibc
    pairs them), before a node loads its models and warms up.

    glibc starts with a 128 KiB mmap threshold and raises it to the size of each mmap-ed block that
    is freed (up to 32 MiB). A node's warm-up frame runs while the threshold is still low: its large
    buffers are mmap-ed and unmapped at free, so 'ready' held ~20 MiB of the fit's working set; a few
    frames later the threshold is up, the same buffers come from the arenas and stay resident until
    the frame's trim (``release_free_memory``): each fit faults ~90 MiB in again. Fixed from the start,
    the warm-up leaves resident what a real frame uses. Only blocks above 32 MiB are mmap-ed, as
    with the dynamic threshold at its cap: the fit allocates as before (unlike a fixed *low*
    threshold). False (nothing set) where the C library has no ``mallopt``."""
    fn = _libc('mallopt', [ctypes.c_int, ctypes.c_int])
    if fn is None:
        return False
    return bool(fn(_M_MMAP_THRESHOLD, mmap_bytes)) and bool(fn(_M_TRIM_THRESHOLD, trim_bytes))


def release_free_memory() -> bool:
    """Return the free pages of all malloc arenas to the system; False where the C library has no
    ``malloc_trim`` (nothing done)."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
