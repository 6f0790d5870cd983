"""Chunked, resumable .npz generation: long data generations (the CSS network's simulator samples, the
embedding-head experiment's features) write one file per chunk of inputs, so a killed run resumes at
the first missing chunk."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


def write_npz_chunks(items: Sequence, out_dir, chunk: int, name: Callable[[list], str],
                     build: Callable[[list], dict], compress: bool = True, unit: str = 'samples',
                     log: Callable | None = print) -> list[Path]:
    """For each run of ``chunk`` items: ``out_dir/name(part)`` holds ``build(part)`` (arrays by key, all
    with one row per sample; empty: no file). A file already there is kept (never rebuilt); a new
    one is written under a temporary name and renamed, so a killed write leaves no partial chunk.
    Returns the chunk files that exist, in order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(0, len(items), chunk):
        part = list(items[i:i + chunk])
        path = out_dir / name(part)
        paths.append(path)
        if path.exists():
            continue
        t0 = time.perf_counter()
        arrays = build(part)
        n = len(next(iter(arrays.values()))) if arrays else 0
        if n:
            tmp = path.with_name(path.stem + '.tmp.npz')
            (np.savez_compressed if compress else np.savez)(tmp, **arrays)
            tmp.rename(path)
        if log:
            log(f'{path.name}: {n} {unit}, {time.perf_counter() - t0:.0f} s')
    return [p for p in paths if p.exists()]
