"""Per-frame results on disk, written atomically, so a crashed or interrupted run can resume.

Layout under ``OUTDIR/.frames/``: ``manifest.json`` (the run key: input, topics, prompt source, config;
results of another key are discarded) and per frame ``<index>.npz`` (arrays: meshes, bird's-eye
points) then ``<index>.json`` (everything else). Each file is written to a temporary name and moved
into place with ``os.replace``; the JSON goes last and marks the frame as done, so a kill at any
moment leaves either a complete frame or none.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np


def canonical_json(obj) -> str:
    """JSON with sorted keys and plain Python numbers: same content, same bytes."""
    return json.dumps(to_jsonable(obj), sort_keys=True, indent=1)


def to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    return obj


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # disk full, interrupted: no half-written temporary is left behind (a kill -9 can still leave
        # one; the next save of the same file replaces it and the frame store ignores it)
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode('utf-8'))


def run_key(parts: dict) -> str:
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


class FrameStore:
    def __init__(self, root, key_parts: dict, resume: bool = True):
        self.root = Path(root)
        self.key = run_key(key_parts)
        manifest = self.root / 'manifest.json'
        keep = False
        if resume and manifest.is_file():
            try:
                keep = json.loads(manifest.read_text()).get('key') == self.key
            except ValueError:
                keep = False
        self.discarded = 0
        if not keep and self.root.exists():
            self.discarded = len(list(self.root.glob('*.json'))) - int(manifest.is_file())
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob('.*.tmp*'):    # left by a run killed while writing
            tmp.unlink(missing_ok=True)
        if not keep:
            atomic_write_text(manifest, canonical_json({'key': self.key, 'parts': key_parts}))

    def _json(self, index: int) -> Path:
        return self.root / f'{index:08d}.json'

    def _npz(self, index: int) -> Path:
        return self.root / f'{index:08d}.npz'

    def has(self, index: int) -> bool:
        return self._json(index).is_file()

    def done(self) -> set[int]:
        return {int(p.stem) for p in self.root.glob('[0-9]*.json')}

    def save(self, record: dict, arrays: dict) -> str:
        """Returns the record's JSON as saved (what :meth:`load` reads back)."""
        index = int(record['index'])
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self._npz(index), buf.getvalue())
        text = canonical_json(record)
        atomic_write_text(self._json(index), text)
        return text

    def load(self, index: int) -> tuple[dict, dict]:
        record = json.loads(self._json(index).read_text())
        with np.load(self._npz(index)) as z:
            arrays = {k: z[k] for k in z.files}
        return record, arrays
