"""Load car mesh collections and bring every model into the canonical car frame.

Canonical frame (shared by the shape prior, the fitter and the procedural cars): x forward (the
car's front at +x), y left, z up, right-handed, metres, origin at the centre of the model's
axis-aligned 3D bounding box.

Readers:
- OBJ / PLY / STL / OFF / GLB (anything trimesh reads) are assumed to be in the canonical axes
  already (as :func:`autolabel_ros.shape.cars.make_car_mesh` writes them); they are only recentred.
- ApolloCar3D JSON (``vertices`` N x 3 metres, ``faces`` 1-based triangles). Its axes, found by
  rendering several models (side and top views) and looking at them: ``x`` is lateral,
  ``y`` points DOWN (the wheels sit at y ~ +0.5, the roof at y ~ -0.75), ``z`` points to the FRONT
  (grille, headlights and the side mirrors, which sit ahead of the cabin centre, are at +z).
  Apollo's frame is thus a camera-like frame (x right, y down, z forward), and the map to the
  canonical frame is x_c = z_a, y_c = -x_a, z_c = -y_a; its determinant is +1 (a rotation, no
  mirror), see ``APOLLO_TO_CANONICAL``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import trimesh

# rows: canonical axes expressed in Apollo's axes (x_c = z_a, y_c = -x_a, z_c = -y_a)
APOLLO_TO_CANONICAL = np.array([[0.0, 0.0, 1.0],
                                [-1.0, 0.0, 0.0],
                                [0.0, -1.0, 0.0]])
assert abs(np.linalg.det(APOLLO_TO_CANONICAL) - 1.0) < 1e-12  # a rotation: a mirror would flip the car

TRIMESH_EXTENSIONS = ('.obj', '.ply', '.stl', '.off', '.glb', '.gltf')
MESH_EXTENSIONS = TRIMESH_EXTENSIONS + ('.json',)


class MeshLoadError(ValueError):
    """A model file (or a folder of them) could not be read; the message names the path."""


@dataclass
class CarModel:
    """One car model in the canonical frame."""

    name: str
    mesh: trimesh.Trimesh
    source: str = ''           # file it came from ('' for generated models)

    @property
    def size(self) -> np.ndarray:
        """(l, w, h): extents along canonical x, y, z."""
        return np.asarray(self.mesh.extents, dtype=float)


def recenter(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Translate so the axis-aligned bounding box is centred at the origin (in place, returned)."""
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2.0)
    return mesh


def load_apollo_json(path: str | Path) -> trimesh.Trimesh:
    """Read one ApolloCar3D JSON model and return it in the canonical frame."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        verts = np.asarray(data['vertices'], dtype=np.float64)
        faces = np.asarray(data['faces'], dtype=np.int64) - 1      # 1-based in the file
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MeshLoadError(f'{path}: not an ApolloCar3D model ({exc})') from exc
    if verts.ndim != 2 or verts.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise MeshLoadError(f'{path}: vertices must be N x 3 and faces F x 3, '
                            f'got {verts.shape} and {faces.shape}')
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise MeshLoadError(f'{path}: face index out of range (faces must be 1-based)')
    mesh = trimesh.Trimesh(verts @ APOLLO_TO_CANONICAL.T, faces, process=False)
    return recenter(mesh)


def load_mesh_file(path: str | Path) -> trimesh.Trimesh:
    """Read one model file (canonical axes assumed for non-Apollo formats), recentred."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == '.json':
        return load_apollo_json(path)
    if ext not in TRIMESH_EXTENSIONS:
        raise MeshLoadError(f'{path}: unsupported mesh format {ext!r} (known: {", ".join(MESH_EXTENSIONS)})')
    try:
        loaded = trimesh.load(str(path), force='mesh', process=False)
    except Exception as exc:  # trimesh raises many types for broken files
        raise MeshLoadError(f'{path}: could not read mesh ({exc})') from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise MeshLoadError(f'{path}: no triangles found')
    return recenter(loaded)


def find_model_files(folder: str | Path) -> list[Path]:
    """All model files under ``folder`` (recursive, sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MeshLoadError(f'{folder}: not a directory')
    return sorted(p for p in folder.rglob('*') if p.is_file() and p.suffix.lower() in MESH_EXTENSIONS)


def load_collection(folder: str | Path, progress: bool = False) -> list[CarModel]:
    """Load every model file under ``folder`` into the canonical frame.

    Raises :class:`MeshLoadError` when the folder holds no loadable model (the message lists the
    extensions looked for) or when a file is broken (the message names it).
    """
    files = find_model_files(folder)
    if not files:
        raise MeshLoadError(f'{folder}: no car models found (looked for {", ".join(MESH_EXTENSIONS)})')
    it: Iterable[Path] = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc='load models', unit='model')
    return [CarModel(p.stem, load_mesh_file(p), str(p)) for p in it]
