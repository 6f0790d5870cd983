"""The occupancy export's files: one compressed ``.npz`` per frame, ``occupancy.json``, a figure.

Per frame ``occupancy/<frame>.npz`` holds ``labels`` (uint8 ``[ix, iy, iz]``, codes of
:data:`CLASSES`), ``instance`` (uint16, where the class is car: its label or track id, which may be
0; 0 elsewhere), ``origin`` (the lower corner of voxel (0, 0, 0) in the frame's LiDAR frame,
metres) and ``voxel`` (edge, metres).
``occupancy/occupancy.json`` describes them once (classes, axes, grid, how it was made). The zip
members carry a fixed date, so the same grid always gives the same bytes (a resumed run writes the
same files as an uninterrupted one).
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

UNKNOWN, FREE, CAR, GROUND, OTHER = 0, 1, 2, 3, 4
CLASSES = {UNKNOWN: 'unknown', FREE: 'free', CAR: 'car', GROUND: 'ground', OTHER: 'other'}
COLOURS = {UNKNOWN: (0.25, 0.25, 0.25), FREE: (0.93, 0.93, 0.93), GROUND: (0.62, 0.55, 0.45),
           OTHER: (0.2, 0.45, 0.8)}
FORMAT = 1


def npz_bytes(arrays: dict) -> bytes:
    """A compressed .npz of ``arrays`` with fixed member dates (np.savez stamps the clock time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f'{name}.npy', date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def grid_arrays(labels: np.ndarray, instance: np.ndarray, origin, voxel: float) -> dict:
    return {'labels': np.asarray(labels, np.uint8), 'instance': np.asarray(instance, np.uint16),
            'origin': np.asarray(origin, np.float64).reshape(3), 'voxel': np.float64(voxel)}


def read_grid(path) -> dict:
    """The arrays of one frame's file (``labels``, ``instance``, ``origin``, ``voxel``)."""
    with np.load(Path(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def describe(origin, shape, voxel: float, extra: dict) -> dict:
    """``occupancy.json``: what the per-frame files hold."""
    return {'format': FORMAT, 'classes': {str(k): v for k, v in CLASSES.items()},
            'arrays': {'labels': 'uint8 [ix, iy, iz], a class code', 'instance':
                       'uint16 [ix, iy, iz], where labels is car: that car\'s label id (track id '
                                   'with --tracks; ids may be 0), 0 elsewhere',
                       'origin': 'lower corner of voxel (0, 0, 0), LiDAR frame of the frame, metres',
                       'voxel': 'voxel edge, metres'},
            'axes': 'x forward, y left, z up (the LiDAR frame); voxel (i, j, k) spans origin + voxel * '
                    '[(i, j, k), (i, j, k) + 1]',
            'voxel': float(voxel), 'origin': [float(v) for v in origin], 'shape': [int(n) for n in shape],
            **extra}


def bev_image(labels: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """(nx, ny, 3) RGB of the grid seen from above: per column the highest car / other / ground voxel
    (cars coloured by instance), else free when any voxel of it is free, else unknown."""
    import matplotlib

    lab = np.asarray(labels)
    cmap = matplotlib.colormaps['tab20']
    rgb = np.empty(lab.shape[:2] + (3,))
    rgb[:] = COLOURS[UNKNOWN]
    rgb[(lab == FREE).any(axis=2)] = COLOURS[FREE]
    nz = lab.shape[2]
    for cls in (GROUND, OTHER, CAR):
        has = lab == cls
        col = has.any(axis=2)
        if cls == CAR:
            top = nz - 1 - np.argmax(has[:, :, ::-1], axis=2)
            ids = np.take_along_axis(np.asarray(instance), top[..., None], axis=2)[..., 0]
            rgb[col] = np.array([cmap(int(i) % 20)[:3] for i in ids[col]]) if col.any() else rgb[col]
        else:
            rgb[col] = COLOURS[cls]
    return rgb


def write_figure(path, labels: np.ndarray, instance: np.ndarray, origin, voxel: float, title: str = '',
                 boxes=()) -> None:
    """Bird's-eye figure of one frame's grid (:func:`bev_image`; x forward to the right, y left up),
    ``boxes``: (centre, text) written beside the cars."""
    import matplotlib

    from autolabel_ros.io.report import _plt, save_fig

    plt = _plt()
    rgb = bev_image(labels, instance)
    nx, ny = rgb.shape[:2]
    x0, y0 = float(origin[0]), float(origin[1])
    x1, y1 = x0 + nx * voxel, y0 + ny * voxel
    fig, ax = plt.subplots(figsize=(9, 9 * (y1 - y0) / (x1 - x0) + 0.8))
    # image rows = y (top = +y, left of the car), columns = x
    ax.imshow(np.transpose(rgb, (1, 0, 2))[::-1], extent=(x0, x1, y0, y1), interpolation='nearest')
    for c, text in boxes:
        ax.text(c[0], c[1] + 1.5, text, fontsize=6, color='k', ha='center')
    ax.plot(0, 0, marker='>', color='r', ms=6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in (FREE, GROUND, OTHER, UNKNOWN)]
    handles.append(plt.Rectangle((0, 0), 1, 1, color=matplotlib.colormaps['tab20'](1)))
    ax.legend(handles, ['free', 'ground', 'other', 'unknown', 'car (colour = id)'], fontsize=7,
              loc='upper right')
    ax.set_xlabel('x forward [m]')
    ax.set_ylabel('y left [m]')
    ax.set_title(title or f'occupancy, voxel {voxel:g} m, top view', fontsize=9)
    fig.tight_layout()
    save_fig(fig, Path(path))
    plt.close(fig)


def write_meta(path, doc: dict) -> None:
    Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True) + '\n')
