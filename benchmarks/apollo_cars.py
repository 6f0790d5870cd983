"""ApolloCar3D car models as simulator cars, for the benchmark only (non-commercial data: read from
../shared/data at run time, never copied into the repository or shipped; the fit's shape prior
stays the project's own).

Frame: the package's reader (:func:`autolabel_ros.shape.mesh_io.load_apollo_json`) maps the JSON's
camera-like axes (x lateral, y DOWN, z to the FRONT) to the car frame (x forward, y left, z up);
checked here by rendering models side and top on: wheels at the bottom, the bonnet, windscreen and
side mirrors towards +x. Sizes stay the real ones of the models (mean 4.61 x 1.83 x 1.61 m without
mirrors), which are larger than the KITTI box convention the procedural cars follow (mean 3.9 x
1.66 x 1.53 m): a fit that only reproduces its prior's sizes shows up here as short boxes.

Ground-truth box: the tight axis-aligned box of the mesh *without its side mirrors* (KITTI boxes
leave the mirrors out too; with them the models are 0.2-0.35 m wider than their bodies). The
mirrors are cut off the mesh (faces outside the body's half-width in the mirror height band), so
the simulator's rule "GT box = tight box of the car mesh" holds unchanged.

Paint: per-face part ids from the geometry (glass above the belt line except the roof, head and tail
lamps at the corners of the ends, tyres inside the wheel circles), so the images show windows,
lamps and dark wheels as the procedural cars do.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import trimesh

from autolabel_ros.shape.cars import PART_IDS
from autolabel_ros.shape.mesh_io import find_model_files, load_apollo_json

# ../shared/data next to the project root; AUTOLABEL_SHARED_DATA points elsewhere (e.g. from a git worktree)
SHARED = Path(os.environ.get('AUTOLABEL_SHARED_DATA',
                             Path(__file__).resolve().parents[2] / 'shared' / 'data'))
MODELS = SHARED / 'cars' / 'apollocar3d' / 'car_models_json'
BODY_BELOW = 0.5            # the body's width is measured below this fraction of the height
MIRROR_BAND = (BODY_BELOW, 0.92)   # mirrors sit in this height band (fractions of the height)
BELT = 0.6                  # glass above this fraction of the height ...
ROOF_NZ = 0.95              # ... unless the face is this flat (the roof)


def body_half_width(mesh: trimesh.Trimesh) -> float:
    v = mesh.vertices
    zr = (v[:, 2] - v[:, 2].min()) / np.ptp(v[:, 2])
    return float(np.abs(v[zr < BODY_BELOW, 1]).max())


def strip_mirrors(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh without the faces that stick out sideways beyond the body in the mirror band."""
    half = body_half_width(mesh) + 0.005
    v = mesh.vertices
    zr = (v[:, 2] - v[:, 2].min()) / np.ptp(v[:, 2])
    out = (np.abs(v[:, 1]) > half) & (zr > MIRROR_BAND[0]) & (zr < MIRROR_BAND[1])
    keep = ~out[mesh.faces].any(axis=1)
    m = trimesh.Trimesh(v, mesh.faces[keep], process=False)
    m.remove_unreferenced_vertices()
    lo, hi = m.bounds
    m.apply_translation(-(lo + hi) / 2.0)
    return m


def face_parts(mesh: trimesh.Trimesh) -> np.ndarray:
    """Per-face part ids (see :data:`autolabel_ros.shape.cars.PART_NAMES`) from the geometry."""
    v, f = mesh.vertices, mesh.faces
    L, W, H = mesh.extents
    c = v[f].mean(axis=1)
    n = np.abs(mesh.face_normals)            # CAD normals are not consistently oriented
    zr = (c[:, 2] - v[:, 2].min()) / H
    parts = np.full(len(f), PART_IDS['paint'], np.int8)
    parts[(zr > BELT) & (n[:, 2] < ROOF_NZ)] = PART_IDS['glass']
    lamp = (np.abs(c[:, 0]) > L / 2 - 0.3) & (zr > 0.42) & (zr < 0.65) & (np.abs(c[:, 1]) > 0.22 * W) \
        & (n[:, 0] > 0.3)
    parts[lamp & (c[:, 0] > 0)] = PART_IDS['headlight']
    parts[lamp & (c[:, 0] < 0)] = PART_IDS['taillight']
    # wheels: circles around the axles, found from the lowest vertices of each half of the car
    low = v[v[:, 2] < v[:, 2].min() + 0.03]
    r = float(np.clip(0.21 * H, 0.29, 0.4))
    for sign in (1, -1):
        side = low[low[:, 0] * sign > 0]
        if len(side) == 0:
            continue
        ax = float(np.median(side[:, 0]))
        d = np.hypot(c[:, 0] - ax, c[:, 2] - (v[:, 2].min() + r))
        parts[(d < r) & (np.abs(c[:, 1]) > W / 2 - 0.4)] = PART_IDS['tyre']
    return parts


@lru_cache(maxsize=2)
def load_models(folder: str = str(MODELS)) -> tuple:
    """All models of the folder, sorted by name, mirrors cut off, with parts and metadata."""
    import json
    out = []
    for p in find_model_files(folder):
        m = strip_mirrors(load_apollo_json(p))
        m.metadata['face_part'] = face_parts(m)
        m.metadata['body_type'] = 'apollo:' + str(json.loads(p.read_text()).get('car_type', '?'))
        m.metadata['name'] = p.stem
        out.append(m)
    if not out:
        raise FileNotFoundError(f'{folder}: no ApolloCar3D models')
    return tuple(out)


class SceneCars:
    """``car_source`` for one scene: its k-th car is model ``(offset + k) % n`` (picklable; the
    models load once per process). Scene i of a set uses ``offset = i * stride``, so a set of a
    few dozen scenes cycles through every model several times."""

    def __init__(self, offset: int, folder: str = str(MODELS)):
        self.offset, self.folder = int(offset), str(folder)

    def __call__(self, k: int) -> trimesh.Trimesh:
        models = load_models(self.folder)
        return models[(self.offset + int(k)) % len(models)]
