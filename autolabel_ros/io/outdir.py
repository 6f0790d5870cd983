"""Output folders the command-line tools may write into, and writing into them without touching
anything the tool did not write.

A folder a tool writes gets a marker file, ``.autolabel_ros_output.json``, naming the tool and
listing the files of its last complete output. Rules:

- ``--out`` must be a folder, or a path that can be created, on a writable file system; this is
  checked before any model is loaded, so a typo costs a second, not a minute;
- an existing non-empty folder without the marker (the user's data) is refused unless the user
  passes ``--overwrite``; even then only the tool's own files are replaced;
- :func:`install_tree` moves freshly assembled files into place one by one and deletes only files
  the marker lists from an earlier run that this run did not write again;
- a file at a path the tool would write that the marker does not list (the user's) is never
  replaced, ``--overwrite`` or not: the run stops with :class:`ForeignFileError` naming it, before
  the long work where the names are known up front (:func:`check_outputs`) and in any case before
  anything is moved;
- the tool's hidden work folders (``.frames``, ``.assemble``) are listed in the marker's ``work``
  entry before they are created (:func:`claim_work_dir`); a folder of that name the tool did not
  create is never removed.

Errors are :class:`OutputDirError`, one line naming the path.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional

MARKER = '.autolabel_ros_output.json'


class OutputDirError(ValueError):
    """The output path cannot be used; the message names it and says what to do."""


class ForeignFileError(OutputDirError):
    """Something the tool did not write is where it would write one of its outputs."""


def read_marker(folder) -> Optional[dict]:
    """The marker of a folder written by one of the tools, or None."""
    p = Path(folder) / MARKER
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and 'tool' in data else None


def _write_marker(folder: Path, tool: str, files: Iterable[str],
                  work: Optional[Iterable[str]] = None) -> None:
    """``work``: the tool's work folders (None: those the marker lists now, if it is the tool's)."""
    if work is None:
        marker = read_marker(folder)
        work = marker.get('work', []) if marker is not None and marker['tool'] == tool else []
    data = {'tool': tool, 'files': sorted(set(files))}
    if work:
        data['work'] = sorted(set(work))
    write_text_atomic(folder / MARKER, json.dumps(data, indent=1, sort_keys=True) + '\n')


def write_text_atomic(path, text: str) -> None:
    """Write through a temporary file moved into place: a full disk or a kill never leaves a half
    file under the real name, and the temporary is removed when the write fails."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _file_in_the_way(path: Path) -> Optional[Path]:
    """The path itself or an ancestor that exists and is not a folder."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path('.')


def _probe_writable(folder: Path, flag: str, path: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix='.autolabel_probe', dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise OutputDirError(f'{flag} {path}: cannot write in {folder} ({e.strerror})') from None


def legacy_own(folder: Path, tool: str) -> bool:
    """Runs of autolabel-bag from before the marker existed are recognised by their frame store."""
    return tool == 'autolabel-bag' and (folder / '.frames' / 'manifest.json').is_file()


# the outputs of autolabel-bag as runs from before the marker wrote them
_LEGACY_BAG_OUTPUTS = re.compile(r'openlabel\.json|labels\.bag/.+|kitti/(label_2|calib)/[^/]+\.txt|'
                                 r'kitti/label_02/0000\.txt|meshes/[^/]+\.ply|report/[^/]+\.(png|json)|'
                                 r'occupancy/[^/]+\.(npz|json)')


def legacy_files(folder: Path, tool: str) -> list[str]:
    """The files of a folder :func:`legacy_own` recognises that have the names of the tool's outputs."""
    if not legacy_own(folder, tool):
        return []
    return sorted(rel for p in folder.rglob('*') if p.is_file()
                  and _LEGACY_BAG_OUTPUTS.fullmatch(rel := p.relative_to(folder).as_posix()))


def prepare_output_dir(path, tool: str, overwrite: bool = False, flag: str = '--out',
                       outputs: Iterable[str] = ()) -> Path:
    """Check that ``path`` may receive ``tool``'s outputs, create it and mark it as the tool's.

    Returns the folder. Raises :class:`OutputDirError` when it is a file or lies under one, cannot
    be written, or is a non-empty folder the tool did not write (unless ``overwrite``);
    :class:`ForeignFileError` when one of ``outputs`` (paths relative to it that the run will
    write) is taken by something the tool did not write (nothing is written then, not even the
    marker).
    """
    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        where = 'is a file' if blocker == path else f'lies under the file {blocker}'
        raise OutputDirError(f'{flag} {path}: {where}; give a folder')
    marker = read_marker(path) if path.is_dir() else None
    if path.is_dir() and marker is None and not overwrite and not legacy_own(path, tool):
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            shown = ', '.join(entries[:5]) + (', ...' if len(entries) > 5 else '')
            n = f'{len(entries)} entry' if len(entries) == 1 else f'{len(entries)} entries'
            raise OutputDirError(
                f'{flag} {path}: folder is not empty ({n}: {shown}) and was not written '
                f'by {tool}; choose a new or empty folder, or pass --overwrite to write beside its '
                f'content (only {tool} files are replaced)')
    if marker is not None and marker['tool'] != tool and not overwrite:
        raise OutputDirError(f'{flag} {path}: folder holds the output of {marker["tool"]}, not {tool}; '
                             f'choose another folder, or pass --overwrite')
    same = marker is not None and marker['tool'] == tool
    files = marker['files'] if same else legacy_files(path, tool) if marker is None and path.is_dir() else []
    check_outputs(path, tool, outputs, own=set(files), flag=flag)
    _probe_writable(_nearest_existing(path), flag, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f'{flag} {path}: cannot create the folder ({e.strerror})') from None
    _probe_writable(path, flag, path)
    for tmp in path.glob(f'.{MARKER}.tmp*'):      # a marker update cut short by a kill
        tmp.unlink(missing_ok=True)
    try:
        _write_marker(path, tool, files, work=marker.get('work', []) if same else [])
    except OSError as e:
        raise OutputDirError(f'{flag} {path}: cannot write there ({e.strerror})') from None
    return path


def foreign_output(out, rels: Iterable[str], own: set, tool: str, units: Iterable[str] = ()) -> Optional[str]:
    """Why one of ``rels`` (files relative to ``out`` the tool is about to write) cannot be written
    without replacing something the tool did not write (``own``: the files it did), or None.
    ``units``: folders written as a whole (a rosbag2 folder): any file in them not in ``own`` counts."""
    out = Path(out)
    what = 'move it away, or choose another --out'
    for unit in units:
        u = out / unit
        if (u.exists() or u.is_symlink()) and not u.is_dir() and unit not in own:
            return f'{u}: a file {tool} did not write is where it writes the folder {unit}/; {what}'
        if u.is_dir():
            for f in sorted(u.rglob('*')):
                if not f.is_dir() and f.relative_to(out).as_posix() not in own:
                    return (f'{f}: exists and was not written by {tool} (it writes the folder {unit}/ as a '
                            f'whole; nothing was replaced); {what}')
    for rel in rels:
        parts = Path(rel).parts
        for k in range(1, len(parts)):
            anc = out.joinpath(*parts[:k])
            if (anc.is_symlink() and not anc.exists()) or (anc.exists() and not anc.is_dir()):
                return (f'{anc}: a file {tool} did not write is where it writes the folder '
                        f'{Path(*parts[:k]).as_posix()}/; {what}')
        dst = out / rel
        if dst.is_dir():
            return f'{dst}: a folder is where {tool} writes the file {rel} (nothing was replaced); {what}'
        if (dst.exists() or dst.is_symlink()) and rel not in own:
            return f'{dst}: exists and was not written by {tool} (nothing was replaced); {what}'
    return None


def check_outputs(out, tool: str, rels: Iterable[str], own: Optional[set] = None, units: Iterable[str] = (),
                  flag: str = '--out') -> None:
    """Raise :class:`ForeignFileError` when one of ``rels`` would replace a file the tool did not write
    (``own``: default the files ``out``'s marker lists as the tool's). Called with the names a run
    knows before its long work."""
    out = Path(out)
    if not out.is_dir():
        return
    if own is None:
        marker = read_marker(out)
        own = set(marker['files']) if marker is not None and marker['tool'] == tool else set()
    problem = foreign_output(out, rels, own, tool, units)
    if problem is not None:
        raise ForeignFileError(problem)


def claim_work_dir(folder, tool: str, name: str, looks_own=None, record: bool = True) -> Path:
    """The tool's work folder ``folder/name``, listed in the marker before it is created; an existing
    folder of that name that the marker does not list (and ``looks_own(path)`` does not recognise) is
    the user's: :class:`ForeignFileError`, nothing removed. ``record=False``: only the check."""
    folder = Path(folder)
    d = folder / name
    marker = read_marker(folder)
    work = set(marker.get('work', [])) if marker is not None and marker['tool'] == tool else set()
    if name not in work:
        if (d.exists() or d.is_symlink()) and not (looks_own is not None and looks_own(d)):
            raise ForeignFileError(f'{d}: {tool} keeps its work in a folder of this name and did not create '
                                   f'this one (nothing was deleted); move it away, or choose another --out')
        if record:
            _write_marker(folder, tool, own_files(folder), work=work | {name})
    return d


def release_work_dir(folder, tool: str, name: str) -> None:
    """Unlist a work folder the tool has removed (a folder of that name made later is not the tool's)."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is not None and marker['tool'] == tool and name in marker.get('work', []) \
            and not (folder / name).exists():
        _write_marker(folder, tool, marker['files'], work=set(marker['work']) - {name})


def undo_prepare(folder, tool: str, created: bool) -> None:
    """After a run that failed before writing anything: remove the marker :func:`prepare_output_dir`
    wrote (when it lists no file and no work folder of the tool) and, when ``created`` (the run made
    the folder), the then empty folder. Nothing else is removed."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None or marker['tool'] != tool or marker['files'] or marker.get('work'):
        return
    try:
        (folder / MARKER).unlink(missing_ok=True)
        if created:
            folder.rmdir()          # only when empty
    except OSError:                 # not empty, or the file system went away: left as it is
        pass


def check_new_path(path, flag: str = '--out') -> Path:
    """A path the caller will create (a rosbag2 folder): it must not exist and its parent must be a
    writable folder (created when missing)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise OutputDirError(f'{flag} {path}: exists; choose a new path')
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise OutputDirError(f'{flag} {path}: {blocker} is a file; give a path in a folder')
    _probe_writable(_nearest_existing(path.parent), flag, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f'{flag} {path}: cannot create {path.parent} ({e.strerror})') from None
    return path


def own_files(folder) -> set[str]:
    marker = read_marker(folder)
    return set(marker['files']) if marker else set()


def record_files(folder, tool: str, files: Iterable[str]) -> None:
    """Add files (relative paths) to the ones the marker says the tool wrote."""
    folder = Path(folder)
    _write_marker(folder, tool, own_files(folder) | set(files))


def install_tree(stage, out, tool: str) -> list[str]:
    """Move every file under ``stage`` to the same place under ``out`` (replacing only the tool's own
    files), delete the files of the tool's previous output that this one lacks, update the marker;
    returns the new file list. A destination taken by anything the tool did not write raises
    :class:`ForeignFileError` before any file moves (``stage`` is left as it is).

    The marker lists old and new files while files move, so a kill in between leaves nothing the
    next run does not know to be its own.
    """
    stage, out = Path(stage), Path(out)
    new = sorted(p.relative_to(stage).as_posix() for p in stage.rglob('*') if p.is_file())
    old = own_files(out)
    # every destination is checked before the first file moves: a file the tool did not write stops
    # the install with nothing replaced and the staged outputs kept
    problem = foreign_output(out, new, old, tool)
    if problem is not None:
        raise ForeignFileError(f"{problem}; this run's outputs are kept in {stage}")
    _write_marker(out, tool, old | set(new))
    for rel in new:
        dst = out / rel
        if dst.is_dir() and not dst.is_symlink():
            raise OutputDirError(f'{dst}: a folder is in the place of the output file {rel}')
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, dst)
    stale = sorted(old - set(new))
    for rel in stale:
        (out / rel).unlink(missing_ok=True)
    # folders that only held stale files of the tool go too (never one with anything else in it)
    for d in sorted({(out / rel).parent for rel in stale}, key=lambda p: -len(p.parts)):
        while d != out and d.is_dir() and not any(d.iterdir()):
            d.rmdir()
            d = d.parent
    _write_marker(out, tool, new)
    shutil.rmtree(stage, ignore_errors=True)
    return new
