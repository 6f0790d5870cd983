"""Ctrl-C at any moment: recognising one that an extension turned into another error, and the
console scripts' quiet exit (stdlib only, so it imports before the heavy libraries and even while
they are half loaded)."""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable, NoReturn, Optional


def caused_by_interrupt(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in ``e``'s cause/context chain (open3d turns a Ctrl-C during
    its import into an ImportError raised from it)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _leave(code: int) -> NoReturn:
    """End the process now: after a Ctrl-C an extension may be half imported (torch, open3d) and the
    interpreter's finalisation can fail under it (seen: exit 1 and a traceback instead of the code)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_quietly(load: Callable[[], Callable[[], Optional[int]]], interrupted_code: int,
                skip_teardown: bool = False) -> NoReturn:
    """The body of a console script: ``load()`` imports the command and returns its main, which runs.
    A Ctrl-C at any moment from here on (libraries loading, a node starting, the work, the
    interpreter's exit) ends the process with ``interrupted_code`` and no traceback; so does a main
    that returns ``interrupted_code`` itself (it handled the Ctrl-C and said what was kept).
    ``skip_teardown``: a command that has closed everything it opened ends without the interpreter's
    teardown (freeing loaded models object by object and unloading torch: a second or more)."""
    try:
        code = load()()
    except KeyboardInterrupt:
        _leave(interrupted_code)
    except Exception as e:
        if caused_by_interrupt(e):
            _leave(interrupted_code)
        raise
    if code == interrupted_code and code != 0:
        _leave(code)
    if skip_teardown:
        import logging

        logging.shutdown()
        _leave(code or 0)
    # a Ctrl-C while the interpreter finalises (atexit, thread joins) ends it at once, without a word
    signal.signal(signal.SIGINT, lambda signum, frame: _leave(interrupted_code))
    sys.exit(code)
