"""Sensor models: a KITTI-like pinhole camera, spinning LiDARs (HDL-64E / HDL-32E / VLP-16) and
the rig extrinsic, plus ray casting of a posed scene with open3d's ``RaycastingScene``.

The LiDAR sits ~0.27 m behind and ~0.08 m above the camera, as on KITTI's car (whose
``Tr_velo_to_cam`` translation is about (0, -0.08, -0.27) m in the camera frame); a small random
mounting rotation (< 0.5 deg) is added per drive.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from autolabel_ros.core.geometry import invert_transform

# KITTI's image_2 intrinsics (2011_09_26 calibration), image 1242 x 375.
KITTI_K = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
KITTI_SIZE = (1242, 375)
LIDAR_HEIGHT = 1.73                     # above the road, metres (KITTI)

# LiDAR axes (x fwd, y left, z up) -> camera optical axes (x right, y down, z fwd).
R_CAM_LIDAR = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def beam_elevations(beams: int) -> np.ndarray:
    """Vertical beam angles in degrees, top beam first.

    64: Velodyne HDL-64E (upper block +2.0 .. -8.33 deg in 1/3 deg steps, lower block -8.83 ..
    -24.33 deg in 1/2 deg steps); 32: HDL-32E (+10.67 .. -30.67 deg, 1.33 deg); 16: VLP-16
    (+15 .. -15 deg, 2 deg)."""
    if beams == 64:
        return np.concatenate([2.0 - np.arange(32) / 3.0, -8.83 - 0.5 * np.arange(32)])
    if beams == 32:
        return 10.67 - (41.34 / 31) * np.arange(32)
    if beams == 16:
        return 15.0 - 2.0 * np.arange(16)
    raise ValueError(f'beams must be 64, 32 or 16, got {beams}')


@dataclass
class Camera:
    K: np.ndarray
    width: int
    height: int

    @classmethod
    def kitti(cls, scale: float = 1.0) -> 'Camera':
        """KITTI's camera, optionally scaled (e.g. 0.5 for fast tests)."""
        K = KITTI_K.copy()
        K[:2] *= scale
        return cls(K=K, width=int(round(KITTI_SIZE[0] * scale)), height=int(round(KITTI_SIZE[1] * scale)))

    def ray_directions(self) -> np.ndarray:
        """H x W x 3 unit ray directions in the camera frame (through pixel centres)."""
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        d = np.stack([(u - self.K[0, 2]) / self.K[0, 0], (v - self.K[1, 2]) / self.K[1, 1],
                      np.ones_like(u)], axis=-1)
        return d / np.linalg.norm(d, axis=-1, keepdims=True)


@dataclass
class Lidar:
    beams: int = 64
    azimuth_step_deg: float = 0.17      # HDL-64E at 10 Hz
    max_range: float = 120.0
    min_range: float = 2.5              # returns closer than this are dropped (own car, housing)
    range_noise: float = 0.02           # 1 sigma, metres
    dropout: float = 0.05               # random missing returns

    def __post_init__(self):
        if not 0.08 <= self.azimuth_step_deg <= 0.2:   # what spinning LiDARs do at 5-20 Hz
            raise ValueError(f'azimuth_step_deg must lie in [0.08, 0.2], got {self.azimuth_step_deg}')
        self.elevations = beam_elevations(self.beams)

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """(N x 3 unit directions in the LiDAR frame, N ring indices), ring 0 = top beam."""
        az = np.radians(np.arange(0.0, 360.0, self.azimuth_step_deg))
        el = np.radians(self.elevations)
        A, E = np.meshgrid(az, el)
        d = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1).reshape(-1, 3)
        ring = np.repeat(np.arange(len(el), dtype=np.uint16), len(az))
        return d, ring


def rig_extrinsic(rng: np.random.Generator | None = None) -> np.ndarray:
    """T_cam_lidar (4 x 4): LiDAR 0.27 m behind and 0.08 m above the camera, axes aligned up to a
    small random mounting rotation when ``rng`` is given."""
    R = R_CAM_LIDAR.copy()
    t = np.array([0.0, -0.08, -0.27])
    if rng is not None:
        ang = np.radians(rng.uniform(-0.5, 0.5, 3))
        rv = o3d.geometry.get_rotation_matrix_from_xyz(ang)
        R = rv @ R
        t = t + rng.uniform(-0.02, 0.02, 3)
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


class RayScene:
    """An open3d raycasting scene of posed triangle meshes; ``geometry_ids[k]`` is the id open3d
    assigned to the k-th added mesh, so hits map back to what was added."""

    def __init__(self):
        self.scene = o3d.t.geometry.RaycastingScene()
        self.geometry_ids: list[int] = []

    def add(self, vertices: np.ndarray, faces: np.ndarray) -> int:
        gid = self.scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                                       o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
        self.geometry_ids.append(int(gid))
        return int(gid)

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> dict:
        """Cast rays; returns numpy arrays t_hit (inf = miss), geometry_ids (INVALID_ID = miss),
        primitive_ids, primitive_normals."""
        rays = np.concatenate([np.broadcast_to(origins, directions.shape), directions], axis=1)
        ans = self.scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays, np.float32)))
        return {k: ans[k].numpy() for k in ('t_hit', 'geometry_ids', 'primitive_ids', 'primitive_normals')}


def camera_pose_world(T_cam_lidar: np.ndarray, T_world_lidar: np.ndarray) -> np.ndarray:
    """T_world_cam from the rig extrinsic and the LiDAR pose."""
    return T_world_lidar @ invert_transform(T_cam_lidar)
