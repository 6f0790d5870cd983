"""Arguments several commands share, spelt once so their help and behaviour stay the same."""
from __future__ import annotations

import argparse
import sys


def add_output_args(p: argparse.ArgumentParser, what: str, replaced: str) -> None:
    """``--out`` (required) and ``--overwrite``, with the output-folder policy of io/outdir.py.

    ``what`` says what the folder receives, ``replaced`` which of the tool's own files an
    ``--overwrite`` run replaces (only those the tool wrote; nothing else is ever deleted)."""
    p.add_argument('--out', required=True,
                   help=f'{what}; a non-empty folder this tool did not write is refused unless --overwrite')
    p.add_argument('--overwrite', action='store_true',
                   help=f'write into a non-empty folder the tool did not write ({replaced} are '
                        'replaced; a file of yours at one of its paths stops the run; nothing else is '
                        'replaced or deleted)')


def weights_error(path) -> str | None:
    """Why ``path`` cannot be loaded as CSS network weights (checked before the long work starts), or
    None when it loads."""
    from pathlib import Path

    if not Path(path).is_file():
        return f'{path}: no such file'
    from autolabel_ros.css.train import load_net
    try:
        load_net(path)
    except Exception as exc:   # torch.load raises many kinds (pickle, zip, missing keys); its text is long
        return f'{path}: not CSS network weights ({type(exc).__name__})'
    return None


def output_file_problem(path) -> str | None:
    """Why a file cannot be written at ``path`` (a folder there, a file above it, no write permission),
    or None; checked before the work that makes the file."""
    import os
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        return 'is a folder; give a file name'
    for p in path.parents:
        if p.exists():
            if not p.is_dir():
                return f'lies under the file {p}'
            return None if os.access(p, os.W_OK) else f'cannot write in {p}'
    return None


def description(doc: str) -> str:
    """A command's ``--help`` description from its module docstring: the first paragraph as plain text,
    without the usage or name before its first ': ' and without reST markup."""
    import re

    first = ' '.join(doc.strip().split('\n\n')[0].split())
    head, sep, rest = first.partition(': ')
    if sep and (head.startswith('``') or head.startswith('autolabel-')):
        first = rest
    return re.sub(r':\w+:`([^`]*)`', r'\1', first).replace('``', '')


def replaceable_json(path, keys) -> bool:
    """``path`` names no file yet, or a JSON object holding all of ``keys`` (a file of the tool that
    writes those keys): a user's file of that name is never replaced."""
    import json
    from pathlib import Path

    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return True
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and set(keys) <= set(data)


def input_error(tool: str, message: str) -> int:
    """A bad input: one line ``TOOL: error: MESSAGE`` on stderr; returns the exit code, 2."""
    print(f'{tool}: error: {message}', file=sys.stderr)
    return 2
