"""Ground-truth occupancy of a simulated frame, voxel by voxel, in the layout of track/occupancy.py.

From the scene posed at the frame's time (the geometry the sensors were cast against), per voxel
centre: **car** when it lies inside a car's mesh (``instance`` = the car id, the id of its ground
truth label), **ground** when it lies within half a voxel of the road plane, **other** when it lies
within half a voxel diagonal of another surface (walls, poles, bushes), **under** (below the road),
else **free**; the codes are the export's (io/occupancy.py), under the road is ``UNKNOWN``. It
knows nothing of what the sensors saw: the comparison decides which voxels count.
"""
from __future__ import annotations

import numpy as np

from autolabel_ros.io.occupancy import CAR, FREE, GROUND, OTHER, UNKNOWN


def gt_occupancy(sim, index: int, origin: np.ndarray, shape: tuple, voxel: float):
    """(classes uint8, car ids int64) over the grid (``origin``, ``shape``, ``voxel``) of frame
    ``index`` of a :class:`autolabel_ros.sim.drive.Simulator`."""
    import open3d as o3d

    from autolabel_ros.sim.drive import FRAME_PERIOD_NS, _Posed

    t = index * FRAME_PERIOD_NS * 1e-9
    ego = sim.scene.ego_position(t)
    posed = _Posed(sim.scene, t, ego, sim.wall_rgb)
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in shape], indexing='ij')
    c = origin + (np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1) + 0.5) * voxel
    g = sim.scene.ground
    ground_z = g.height(c[:, 0] + ego[0], c[:, 1] + ego[1]) - ego[2]
    cls = np.full(len(c), FREE, np.uint8)
    ids = np.zeros(len(c), np.int64)
    # other surfaces: the unsigned distance to the nearest non-car, non-ground geometry
    others = o3d.t.geometry.RaycastingScene()
    n_other = 0
    for cl in sim.scene.clutter:
        others.add_triangles(o3d.core.Tensor(np.asarray(cl.mesh.vertices - ego, np.float32)),
                             o3d.core.Tensor(np.asarray(cl.mesh.faces, np.uint32)))
        n_other += 1
    if n_other:
        d = others.compute_distance(o3d.core.Tensor(c.astype(np.float32))).numpy()
        cls[d <= 0.5 * np.sqrt(3) * voxel] = OTHER
    dz = c[:, 2] - ground_z
    cls[dz < -0.5 * voxel] = UNKNOWN
    cls[np.abs(dz) <= 0.5 * voxel] = GROUND
    # cars: centres inside their closed meshes
    near = np.zeros(len(c), bool)
    for car in sim.scene.cars:
        v = posed.car_verts[car.id]
        lo, hi = v.min(0) - voxel, v.max(0) + voxel
        near = np.all((c >= lo) & (c <= hi), axis=1)
        if not near.any():
            continue
        sc = o3d.t.geometry.RaycastingScene()
        sc.add_triangles(o3d.core.Tensor(np.asarray(v, np.float32)),
                         o3d.core.Tensor(np.asarray(car.mesh.faces, np.uint32)))
        occ = sc.compute_occupancy(o3d.core.Tensor(c[near].astype(np.float32))).numpy() > 0.5
        w = np.nonzero(near)[0][occ]
        cls[w] = CAR
        ids[w] = car.id
    return cls.reshape(shape), ids.reshape(shape)
