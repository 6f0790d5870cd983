"""Handing the allocator's free pages back to the system (stdlib only).

A node receives multi-MB messages (1.4 MB images, 2.5 MB clouds) on DDS and executor threads and
frees them on its worker thread; glibc's malloc raises its mmap threshold above the first such
buffer it frees, so the later ones come from per-thread arenas, which keep their freed pages. Over
the first minute of a bag that is ~100-130 MiB of resident memory that holds nothing.
``malloc_trim(0)`` returns the free pages of every arena (``madvise(MADV_DONTNEED)``) without
changing how anything is allocated, unlike a fixed ``MALLOC_MMAP_THRESHOLD_`` (which made every
large torch tensor of the fit fresh pages: +20-35 % fit CPU).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Optional

_trim = None          # the C function, looked up once; False where there is none


def _malloc_trim() -> Optional[object]:
    global _trim
    if _trim is None:
        _trim = False
        name = ctypes.util.find_library('c')
        try:
            fn = ctypes.CDLL(name).malloc_trim if name else None
        except (OSError, AttributeError):      # not glibc (musl, macOS): nothing to trim
            fn = None
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
            _trim = fn
    return _trim or None


def release_free_memory() -> bool:
    """Return the free pages of all malloc arenas to the system; False where the C library has no
    ``malloc_trim`` (nothing done)."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
