"""From a fitted (pose, code) to the label geometry: watertight mesh and its tight box."""
from __future__ import annotations

import numpy as np

from autolabel_ros.core.geometry import rot_z
from autolabel_ros.core.types import Mesh


def canonical_mesh(sdf_grid: np.ndarray, extent: np.ndarray, scales=None) -> Mesh | None:
    """Marching cubes (scikit-image) of an [iz, iy, ix] SDF grid spanning [-extent, extent]; the grid is
    padded with an outside layer so the surface is closed even where the shape touches the border.
    Vertices in the canonical frame (x, y, z) metres, faces oriented outwards. None if empty."""
    from skimage.measure import marching_cubes

    nz, ny, nx = sdf_grid.shape
    spacing = 2 * np.asarray(extent, float) / (np.array([nx, ny, nz]) - 1)
    if not np.any(sdf_grid < 0):
        return None
    pad = np.pad(sdf_grid, 1, mode='constant', constant_values=max(float(sdf_grid.max()), 0.1))
    verts, faces, _, _ = marching_cubes(pad, level=0.0, spacing=tuple(spacing[::-1]))
    v = verts[:, ::-1] - spacing - np.asarray(extent, float)     # (z, y, x) -> (x, y, z), undo pad
    if scales is not None:
        v = v * np.asarray(scales, float)
    faces = np.asarray(faces, dtype=np.int64)
    # orientation from the signed volume (sum of tetrahedra to the origin), flipped to point outwards;
    # marching cubes output is already indexed, no trimesh processing needed
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    if np.einsum('ij,ij->i', a, np.cross(b, c)).sum() < 0:
        faces = faces[:, ::-1].copy()
    return Mesh(vertices=v, faces=faces)


def box_from_fit(pose: np.ndarray, mesh_c: Mesh | None, fallback_size: np.ndarray):
    """Tight box of the canonical mesh moved by pose (x, y, z, yaw): (center, size, yaw) in the LiDAR
    frame, and the mesh in the LiDAR frame."""
    x, y, z, yaw = (float(v) for v in pose)
    R = rot_z(yaw)
    t = np.array([x, y, z])
    if mesh_c is None:
        return t, np.asarray(fallback_size, float), yaw, None
    lo, hi = mesh_c.vertices.min(0), mesh_c.vertices.max(0)
    center = R @ ((lo + hi) / 2) + t
    mesh_l = Mesh(vertices=mesh_c.vertices @ R.T + t, faces=mesh_c.faces)
    return center, hi - lo, yaw, mesh_l
