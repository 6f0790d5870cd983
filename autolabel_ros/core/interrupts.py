"""Recognising a Ctrl-C that an extension turned into another error (stdlib only, so it imports
even while the heavy libraries are half loaded)."""
from __future__ import annotations


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
