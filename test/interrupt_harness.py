"""Shared by the Ctrl-C tests: start a command, send it SIGINT at a moment read from its memory map
(once it has loaded a given shared library), and collect its exit code and output."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def loaded(pid: int, library: str) -> bool:
    """Whether process ``pid`` has mapped a shared library whose path contains ``library``."""
    try:
        return library in Path(f'/proc/{pid}/maps').read_text()
    except OSError:
        return False


def interrupt_once_loaded(cmd: list, library: str, env: dict, cwd=None,
                          wait_s: float = 60.0) -> tuple[int, str]:
    """Run ``cmd``; SIGINT once it has loaded ``library`` (fails if it ends first or never loads it
    within ``wait_s``); return its exit code and stdout + stderr."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        end = time.monotonic() + wait_s
        while not loaded(proc.pid, library) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.002)
        assert proc.poll() is None, f'{cmd[0]} ended before loading {library}: {proc.communicate()}'
        assert loaded(proc.pid, library), f'{library} not loaded within {wait_s:.0f} s'
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, (out + err).decode(errors='replace')
