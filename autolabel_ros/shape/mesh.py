"""Meshes from SDF grids (marching cubes, the one wrapper of the package) and their placement in the
LiDAR frame."""
from __future__ import annotations

import numpy as np

from autolabel_ros.core.geometry import rot_z
from autolabel_ros.core.types import Mesh


def _grid_bounds(sdf_shape, prior_or_bounds) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) corners (x, y, z) of a grid given a ShapePrior, an extent (3,) or bounds (2, 3)."""
    if hasattr(prior_or_bounds, 'extent'):
        ext = np.asarray(prior_or_bounds.extent, float)
        return -ext, ext
    b = np.asarray(prior_or_bounds, float)
    if b.shape == (3,):
        return -b, b
    if b.shape == (2, 3):
        return b[0], b[1]
    raise ValueError('prior_or_bounds must be a ShapePrior, an extent (3,) or bounds (2, 3); '
                     f'got shape {b.shape}')


def sdf_to_mesh(sdf_grid: np.ndarray, prior_or_bounds, level: float = 0.0) -> Mesh:
    """Watertight triangle mesh of ``{phi = level}`` in canonical metres.

    ``sdf_grid`` is (nz, ny, nx) (the prior's layout, phi > 0 outside) with samples spanning the
    bounds exactly (``linspace(lo, hi, n)`` per axis). The grid is padded with one layer of
    outside values so surfaces touching the border close. Faces are oriented outwards.
    Returns an empty mesh (0 vertices) when the level set is empty.
    """
    from skimage.measure import marching_cubes

    grid = np.asarray(sdf_grid, dtype=np.float32)
    if grid.ndim != 3:
        raise ValueError(f'sdf_grid must be 3-D (nz, ny, nx), got shape {grid.shape}')
    lo, hi = _grid_bounds(grid.shape, prior_or_bounds)
    n_xyz = np.array(grid.shape[::-1], float)
    spacing = (hi - lo) / (n_xyz - 1.0)
    if not grid.min() < level:                              # nothing inside
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    outside = max(float(grid.max()), level + 1e-3)
    padded = np.pad(grid, 1, mode='constant', constant_values=outside)
    verts_zyx, faces, _, _ = marching_cubes(padded, level=level, spacing=tuple(spacing[::-1]))
    verts = (verts_zyx[:, ::-1] - spacing + lo).astype(np.float64)   # back to (x, y, z), undo the padding
    faces = np.asarray(faces, dtype=np.int64)
    # swapping the axis order mirrors the index space, which flips the winding: orient outwards by the
    # signed volume (sum of the tetrahedra to the origin), so a mesh is right whatever the grid layout
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    if np.einsum('ij,ij->i', a, np.cross(b, c)).sum() < 0:
        faces = faces[:, ::-1].copy()
    return Mesh(verts, faces)


def transform_mesh(mesh: Mesh, center, yaw: float) -> Mesh:
    """Canonical-frame mesh -> LiDAR frame: rotate by ``yaw`` about +z, then translate by ``center``."""
    v = np.asarray(mesh.vertices, float) @ rot_z(float(yaw)).T + np.asarray(center, float).reshape(1, 3)
    return Mesh(v, np.asarray(mesh.faces).copy())


def tight_extent(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """(center, size) of the mesh's axis-aligned bounding box in its own frame; size = (l, w, h)
    for a canonical-frame mesh. Zeros for an empty mesh."""
    v = np.asarray(mesh.vertices, float)
    if len(v) == 0:
        return np.zeros(3), np.zeros(3)
    lo, hi = v.min(axis=0), v.max(axis=0)
    return (lo + hi) / 2.0, hi - lo


def decimate_mesh(mesh: Mesh, max_triangles: int) -> Mesh:
    """At most ``max_triangles`` faces, for display (RViz draws every triangle sent); the mesh itself
    when it is already small enough or ``max_triangles`` <= 0 (no limit).

    open3d's vertex clustering on a voxel grid sized from the surface area (a closed surface of area A
    on voxels of size v keeps about 2.3 A / v^2 triangles), coarsened until the limit holds. It takes
    ~20 ms on a 12 000-triangle car where quadric decimation takes ~400 ms (the node decimates every
    car of every frame), and on those cars it stays within 7 mm on average (7 cm at most) of the
    full mesh at 2000 triangles.
    """
    faces = np.asarray(mesh.faces)
    if max_triangles <= 0 or len(faces) <= max_triangles:
        return mesh
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(mesh.vertices, np.float64)),
                                  o3d.utility.Vector3iVector(faces.astype(np.int32)))
    voxel = max(float(np.sqrt(2.3 * m.get_surface_area() / max_triangles)), 1e-6)
    for _ in range(40):
        small = m.simplify_vertex_clustering(voxel_size=voxel)
        small.remove_degenerate_triangles()
        if len(small.triangles) <= max_triangles:
            return Mesh(np.asarray(small.vertices, np.float64), np.asarray(small.triangles, np.int64))
        voxel *= 1.15
    # a surface that will not cluster down (e.g. a huge flat fan): quadric decimation caps it
    small = m.simplify_quadric_decimation(target_number_of_triangles=int(max_triangles))
    return Mesh(np.asarray(small.vertices, np.float64), np.asarray(small.triangles, np.int64))
