"""Ego motion of a drive: ``T_world_lidar`` per frame, world = the LiDAR frame of the first frame.

Three sources, in the order the offline tool tries them:

- **TF** (:func:`poses_from_tf`): the bag's dynamic ``/tf`` (e.g. odom -> base_link) chained with the
  static tree to the LiDAR frame, each dynamic edge interpolated at the frame stamp (linear in
  translation, slerp in rotation);
- **OXTS** (:func:`poses_from_oxts`): KITTI raw GPS/IMU packets and the calib's ``Tr_imu_to_velo``;
- **ICP** (:func:`poses_from_icp`): scan-to-scan registration with open3d (point-to-plane ICP on
  voxel-downsampled sweeps, coarse then fine, started from the previous step's motion), chained, so
  it drifts; the simulator measures how much (benchmarks/tracks.py, test/test_track.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from autolabel_ros.core.geometry import invert_transform
from autolabel_ros.io.bags import BagError, TfTree

log = logging.getLogger(__name__)

FIXED_FRAMES = ('map', 'odom', 'world')


@dataclass
class EgoMotion:
    poses: list[np.ndarray]             # T_world_lidar per frame (4 x 4)
    source: str                         # 'tf', 'oxts', 'icp' or 'given'
    notes: dict = field(default_factory=dict)

    def positions(self) -> np.ndarray:
        return np.array([T[:3, 3] for T in self.poses]).reshape(-1, 3)


def relative_to_first(poses: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Poses re-expressed so the first one is the identity."""
    if not len(poses):
        return []
    inv0 = invert_transform(np.asarray(poses[0], dtype=np.float64))
    return [inv0 @ np.asarray(T, dtype=np.float64) for T in poses]


def interpolate_pose(history: Sequence[tuple[int, np.ndarray]], stamp_ns: int) -> tuple[np.ndarray, bool]:
    """The transform of a stamped series at ``stamp_ns`` and whether the stamp lay inside it (outside,
    the nearest end is returned)."""
    stamps = np.array([s for s, _ in history], dtype=np.int64)
    order = np.argsort(stamps, kind='stable')
    stamps = stamps[order]
    mats = [history[i][1] for i in order]
    if stamp_ns <= stamps[0] or len(stamps) == 1:
        return mats[0], stamp_ns == stamps[0]
    if stamp_ns >= stamps[-1]:
        return mats[-1], stamp_ns == stamps[-1]
    k = int(np.searchsorted(stamps, stamp_ns, side='right'))
    t0, t1 = stamps[k - 1], stamps[k]
    a = (stamp_ns - t0) / max(1, t1 - t0)
    A, B = mats[k - 1], mats[k]
    rot = Slerp([0.0, 1.0], Rotation.from_matrix([A[:3, :3], B[:3, :3]]))([a]).as_matrix()[0]
    T = np.eye(4)
    T[:3, :3] = rot
    T[:3, 3] = (1 - a) * A[:3, 3] + a * B[:3, 3]
    return T, True


def _fixed_frame(tree: TfTree) -> Optional[str]:
    frames = set(tree.frames())
    for f in FIXED_FRAMES:
        if f in frames:
            return f
    parents = {p for p, _ in tree.history}
    children = {c for _, c in tree.history}
    roots = sorted(parents - children)
    return roots[0] if roots else None


def poses_from_tf(tree: TfTree, stamps: Sequence[int], lidar_frame: str) -> Optional[EgoMotion]:
    """Ego poses from the dynamic TF edges, None when the bag has none. Raises BagError when the
    LiDAR frame is not connected to the fixed frame (map, odom, world or the root of the dynamic edges)."""
    if not tree.history:
        return None
    fixed = _fixed_frame(tree)
    if fixed is None:
        return None
    static = tree.static_edges()
    poses, outside = [], 0
    for st in stamps:
        at = TfTree()
        for (p, c), T in static.items():
            at.add(p, c, T, static=True)
        for (p, c), hist in tree.history.items():
            if (p, c) in static:
                continue
            T, inside = interpolate_pose(hist, int(st))
            outside += not inside
            at.add(p, c, T, static=True)
        try:
            poses.append(at.lookup(fixed, lidar_frame))
        except BagError as e:
            raise BagError(f'ego motion from /tf: {e}') from None
    notes = {'fixed_frame': fixed, 'dynamic_edges': sorted(f'{p}->{c}' for p, c in tree.history)}
    if outside:
        notes['stamps_outside_tf'] = outside
        log.warning('ego motion from /tf: %d edge lookups lay outside the recorded /tf and used its '
                    'nearest value', outside)
    return EgoMotion(relative_to_first(poses), 'tf', notes)


def poses_from_oxts(packets: Sequence[np.ndarray], T_velo_imu: Optional[np.ndarray] = None) -> EgoMotion:
    """Ego (LiDAR) poses from KITTI raw OXTS packets; ``T_velo_imu`` = the calib's Tr_imu_to_velo
    (maps IMU points into the LiDAR frame; identity when absent)."""
    from autolabel_ros.io.oxts import oxts_poses

    T_vi = np.eye(4) if T_velo_imu is None else np.asarray(T_velo_imu, dtype=np.float64)
    if T_vi.shape == (3, 4):
        T_vi = np.vstack([T_vi, [0, 0, 0, 1]])
    T_iv = invert_transform(T_vi)
    poses = [T @ T_iv for T in oxts_poses(packets)]
    return EgoMotion(relative_to_first(poses), 'oxts', {'packets': len(packets)})


@dataclass
class IcpSettings:
    voxel: float = 0.4               # fine voxel size (m); the coarse stage uses twice it
    max_distance: float = 0.5        # fine correspondence distance (m); the coarse stage twice it
    # (1.0 m let the facades along the road slide: -1.5 % of the travel on the simulator)
    min_range: float = 3.0           # drop returns of the ego car and the sensor housing
    max_range: float = 80.0
    iterations: int = 40
    drop_ground: bool = True
    # Only structure above the cars is registered: moving cars drag the estimate with them (on the
    # simulator, with the cars in: -10 % of the travel per step). Scans with too little of it fall
    # back to everything above the ground.
    ground_clearance: float = 2.0    # m above the ground plane
    min_high_points: int = 3000
    low_clearance: float = 0.25



def _cloud(points: np.ndarray, s: IcpSettings):
    import open3d as o3d

    p = np.asarray(points, dtype=np.float64)[:, :3]
    r = np.linalg.norm(p[:, :2], axis=1)
    p = p[(r >= s.min_range) & (r <= s.max_range)]
    if s.drop_ground:
        # the ground's returns lie on rings that move with the sensor: registering them pulls the
        # estimate towards "no motion", so points near the ground plane (fit/ground.py, seeded RANSAC:
        # the same sweep gives the same poses) are left out
        from autolabel_ros.config import GroundConfig
        from autolabel_ros.fit.ground import fit_ground

        g = fit_ground(p, GroundConfig(), np.random.default_rng(0), max_range=s.max_range)
        if g is not None:
            hgt = g.height_above(p)
            high = hgt > s.ground_clearance
            p = p[high] if high.sum() >= s.min_high_points else p[hgt > s.low_clearance]
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
    out = []
    for v in (2 * s.voxel, s.voxel):
        d = pcd.voxel_down_sample(v)
        d.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3 * v, max_nn=30))
        out.append(d)
    return out


def register(source, target, init: np.ndarray, s: IcpSettings) -> tuple[np.ndarray, float]:
    """T_target_source from coarse-to-fine point-to-plane ICP; returns (T, fine fitness)."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    T = np.asarray(init, dtype=np.float64)
    fit = 0.0
    crit = reg.ICPConvergenceCriteria(max_iteration=s.iterations)
    stages = ((source[0], target[0], 2 * s.max_distance), (source[1], target[1], s.max_distance))
    for src, tgt, dist in stages:
        res = reg.registration_icp(src, tgt, dist, T, reg.TransformationEstimationPointToPlane(), crit)
        T, fit = np.asarray(res.transformation), float(res.fitness)
    return T, fit


def poses_from_icp(clouds: Iterable[np.ndarray], settings: Optional[IcpSettings] = None,
                   progress=None) -> EgoMotion:
    """Chained scan-to-scan ICP over consecutive sweeps (N x 3+ arrays in their LiDAR frames)."""
    s = settings or IcpSettings()
    poses = [np.eye(4)]
    prev = None
    step = np.eye(4)                  # constant-velocity guess for the next registration
    fitness = []
    for k, pts in enumerate(clouds):
        cur = _cloud(pts, s)
        if prev is not None:
            step, fit = register(cur, prev, step, s)
            fitness.append(fit)
            poses.append(poses[-1] @ step)
        prev = cur
        if progress is not None:
            progress(k)
    notes = {'min_fitness': round(min(fitness), 3) if fitness else None,
             'median_fitness': round(float(np.median(fitness)), 3) if fitness else None}
    if fitness and min(fitness) < 0.3:
        log.warning('ego motion from ICP: a registration matched only %.0f %% of the points; the poses '
                    'may be off', 100 * min(fitness))
    return EgoMotion(poses, 'icp', notes)


def drift(est: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> dict:
    """Translation and heading error of estimated poses against reference poses (both relative to
    their first frame): final and maximal position error (m), as a percentage of the distance
    travelled, and the final yaw error (deg)."""
    e, r = relative_to_first(est), relative_to_first(ref)
    err = np.array([np.linalg.norm(a[:3, 3] - b[:3, 3]) for a, b in zip(e, r)])
    steps = np.diff([T[:3, 3] for T in r], axis=0) if len(r) > 1 else np.zeros((0, 3))
    path = float(np.sum(np.linalg.norm(steps, axis=1)))
    dR = e[-1][:3, :3] @ r[-1][:3, :3].T
    yaw = float(np.degrees(np.arctan2(dR[1, 0], dR[0, 0])))
    return {'final_m': float(err[-1]), 'max_m': float(err.max()), 'path_m': path,
            'final_pct': float(100 * err[-1] / path) if path > 0 else 0.0, 'final_yaw_deg': abs(yaw)}
