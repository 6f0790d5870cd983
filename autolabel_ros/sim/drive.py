"""Simulate camera + LiDAR frames of a street scene with exact ground truth.

One frame at time t: the scene's meshes are posed in the current LiDAR frame and put in one
open3d ``RaycastingScene``; the camera casts one ray per pixel (shaded RGB + modal instance
masks), shadow rays towards the sun light the hits, the LiDAR casts its beam pattern (range noise,
dropout, reflectance). Ground truth per car with at least one visible pixel (a hidden car is not
annotated, as in KITTI):

- ``Label3D`` in the LiDAR frame: the car mesh's bounding box (centre, (l, w, h), yaw), ``id`` =
  instance id (the value in ``masks``; the same car keeps it in every frame of a drive: the
  ground-truth track id), ``cls='Car'``;
- ``box2d``: like KITTI's, the box of the *full* (amodal) object silhouette, clipped to the image
  (rendered by casting the ROI rays against that car alone); pixel-edge convention
  (x1, y1, x2 + 1, y2 + 1) clipped to (W - 1, H - 1) like the projected boxes;
- ``truncation``: the fraction of the amodal silhouette outside the image (from a coarse ray grid
  over the unclipped silhouette box, at most 3 image sizes wide);
- ``occlusion``: from the visible fraction f of the in-image amodal silhouette (visible = modal
  mask): 0 if f >= 0.9, 1 if f >= 0.5, 2 if f >= 0.05, else 3 (KITTI's 'unknown'; excluded from
  every KITTI difficulty);
- ``mesh``: the car's true surface in the LiDAR frame (for shape metrics);
- ``metrics``: visible_px, amodal_px, visible_frac, lidar_points, body_type, seed, speed.

The ego pose of each frame is ``SimFrame.T_world_lidar`` (world = the LiDAR frame of frame 0) and its
velocity ``SimFrame.ego_velocity``; the writers put them on the bag's /tf and into KITTI OXTS packets.

``car_source`` (see :mod:`autolabel_ros.sim.scene`) puts provided car meshes in the scene instead of
procedural ones; their ground-truth box is the mesh's tight axis-aligned box, like the procedural
cars'.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from autolabel_ros.core.geometry import invert_transform, rot_z, transform_points
from autolabel_ros.core.types import Label3D, Mesh, SensorFrame
from autolabel_ros.io.kitti import KittiCalib, calib_from_K
from autolabel_ros.shape.cars import PART_IDS
from autolabel_ros.sim.render import Textures, ground_albedo, lidar_reflectance, shade_camera
from autolabel_ros.sim.scene import KERB, KIND_CAR, KIND_GROUND, KIND_WALL, CarSource, Scene, make_scene
from autolabel_ros.sim.sensors import Camera, Lidar, RayScene, rig_extrinsic

FRAME_PERIOD_NS = 100_000_000           # 10 Hz
START_NS = 1_600_000_000 * 1_000_000_000


@dataclass
class SimFrame:
    """One simulated sample: the sensor data and its ground truth."""

    frame: SensorFrame                  # image, K, points (N x 4: x, y, z, reflectance), T_cam_lidar
    gt: list[Label3D]                   # cars in the camera's view (see the module docstring)
    masks: np.ndarray                   # H x W int32 modal instance ids, 0 = no car
    calib: KittiCalib                   # the same calibration in KITTI form
    ring: np.ndarray                    # N uint16 beam index per point (0 = top beam)
    point_instance: np.ndarray          # N int32: car id hit by each return, 0 = not a car
    points_clean: np.ndarray            # N x 3 returns before range noise (for checks)
    index: int = 0
    time_s: float = 0.0
    T_world_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))   # ego pose (world = frame 0)
    ego_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))  # world frame, m/s
    timings: dict = field(default_factory=dict)


class _Posed:
    """The scene's geometry at one time, in the LiDAR frame, with per-geometry lookups."""

    def __init__(self, scene: Scene, t: float, ego: np.ndarray, wall_rgb: dict):
        self.rs = RayScene()
        self.kind, self.inst, self.paint, self.part_off, self.car_verts = [], [], [], [], {}
        parts = [np.zeros(0, np.int8)]
        off = 0
        # the road: one big quad on the ground plane around the ego
        g = scene.ground
        xs, ys = (ego[0] - 250.0, ego[0] + 350.0), (-250.0, 250.0)
        quad = np.array([[x, y, g.height(x, y)] for x in xs for y in ys]) - ego
        self._add(quad, np.array([[0, 2, 3], [0, 3, 1]]), KIND_GROUND, 0, (0, 0, 0), None)
        for car in scene.cars:
            c = scene.car_center(car, t) - ego
            v = car.mesh.vertices @ rot_z(car.pose(t)[2]).T + c
            self.car_verts[car.id] = v
            self._add(v, car.mesh.faces, KIND_CAR, car.id, car.paint, off)
            parts.append(car.parts.astype(np.int8))
            off += len(car.parts)
        for k, cl in enumerate(scene.clutter):
            rgb = wall_rgb.get(k, (0.5, 0.5, 0.5))
            self._add(cl.mesh.vertices - ego, cl.mesh.faces, cl.kind, 0, rgb, None)
        self.parts = np.concatenate(parts)
        n = max(self.rs.geometry_ids) + 2
        # lookup tables indexed by open3d geometry id; the last entry serves misses
        self.kind_of = np.full(n, -1, np.int64)
        self.inst_of = np.zeros(n, np.int64)
        self.paint_of = np.zeros((n, 3))
        self.off_of = np.full(n, -1, np.int64)
        for gid, k, i, p, o in zip(self.rs.geometry_ids, self.kind, self.inst, self.paint, self.part_off):
            self.kind_of[gid], self.inst_of[gid], self.paint_of[gid] = k, i, p
            self.off_of[gid] = -1 if o is None else o

    def _add(self, v, f, kind, inst, paint, part_off):
        self.rs.add(v, f)
        self.kind.append(kind)
        self.inst.append(inst)
        self.paint.append(paint)
        self.part_off.append(part_off)

    def lookup(self, hit: dict):
        """Per ray: kind (-1 = miss), car instance id, paint colour, car part id."""
        gid = hit['geometry_ids'].astype(np.int64)
        miss = ~np.isfinite(hit['t_hit'])
        gid = np.where(miss, len(self.kind_of) - 1, gid)
        kind, inst, paint = self.kind_of[gid], self.inst_of[gid], self.paint_of[gid]
        off = self.off_of[gid]
        part = np.full(len(gid), -1, np.int64)
        car = off >= 0
        part[car] = self.parts[off[car] + hit['primitive_ids'][car].astype(np.int64)]
        return kind, inst, paint, part


def _occlusion_level(visible_frac: float) -> int:
    if visible_frac >= 0.9:
        return 0
    if visible_frac >= 0.5:
        return 1
    if visible_frac >= 0.05:
        return 2
    return 3


class Simulator:
    """Renders frames of one scene; ``frame(i)`` is the sample at t = i / 10 s."""

    def __init__(self, seed: int, n_frames: int = 1, beams: int = 64, camera: Optional[Camera] = None,
                 lidar: Optional[Lidar] = None, n_cars: Optional[int] = None, clutter: bool = True,
                 shadows: bool = True, car_source: Optional[CarSource] = None):
        self.seed = int(seed)
        self.scene = make_scene(seed, n_cars=n_cars, duration=(n_frames - 1) * FRAME_PERIOD_NS * 1e-9,
                                clutter=clutter, car_source=car_source)
        rng = np.random.default_rng([self.seed, 0x516])
        self.camera = camera or Camera.kitti()
        self.lidar = lidar or Lidar(beams=beams)
        self.T_cam_lidar = rig_extrinsic(rng)
        self.calib = calib_from_K(self.camera.K, self.T_cam_lidar)
        self.shadows = shadows
        self.tex = Textures(seed)
        facades = np.array([[0.72, 0.66, 0.56], [0.6, 0.35, 0.28], [0.55, 0.55, 0.55], [0.8, 0.78, 0.72],
                            [0.45, 0.42, 0.38]])
        self.wall_rgb = {k: tuple(facades[rng.integers(len(facades))] * rng.uniform(0.85, 1.1))
                         for k, cl in enumerate(self.scene.clutter) if cl.kind == KIND_WALL}
        rows = self.scene.layout['rows']
        self.walk = {s: KERB + {'parallel': 2.5, 'perpendicular': 5.6, 'none': 0.0}[rows[s]] for s in (1, -1)}
        self._cam_dirs = self.camera.ray_directions().reshape(-1, 3)
        self._lidar_dirs, self._ring = self.lidar.rays()
        # LiDAR reflectivity of each car's paint (light paints return more), indexed by instance id
        self._car_refl_lut = np.full(len(self.scene.cars) + 1, 0.3)
        for c in self.scene.cars:
            self._car_refl_lut[c.id] = 0.15 + 0.55 * float(np.mean(c.paint))

    # ------------------------------------------------------------------ one frame
    def frame(self, index: int) -> SimFrame:
        tm = {}
        t0 = time.perf_counter()
        t = index * FRAME_PERIOD_NS * 1e-9
        ego = self.scene.ego_position(t)
        posed = _Posed(self.scene, t, ego, self.wall_rgb)
        tm['scene_s'] = time.perf_counter() - t0
        rng = np.random.default_rng([self.seed, int(index), 0xF4A])

        t1 = time.perf_counter()
        image, masks, cam = self._render_camera(posed, ego, rng)
        tm['camera_s'] = time.perf_counter() - t1
        t1 = time.perf_counter()
        points, clean, ring, pinst = self._scan(posed, ego, rng)
        tm['lidar_s'] = time.perf_counter() - t1
        t1 = time.perf_counter()
        gt = self._ground_truth(posed, t, ego, masks, cam, pinst)
        tm['gt_s'] = time.perf_counter() - t1
        tm['total_s'] = time.perf_counter() - t0
        fid = f'{index:06d}'
        sf = SensorFrame(image=image, K=self.camera.K, points=points, T_cam_lidar=self.T_cam_lidar,
                         stamp_ns=START_NS + index * FRAME_PERIOD_NS, frame_id=fid)
        pose = np.eye(4)
        pose[:3, 3] = ego
        vel = (self.scene.ego_position(t + 1e-3) - self.scene.ego_position(t - 1e-3)) / 2e-3
        return SimFrame(frame=sf, gt=gt, masks=masks, calib=self.calib, ring=ring, point_instance=pinst,
                        points_clean=clean, index=int(index), time_s=t, T_world_lidar=pose, timings=tm,
                        ego_velocity=vel)

    def _render_camera(self, posed: _Posed, ego: np.ndarray, rng):
        cam = self.camera
        T_lidar_cam = invert_transform(self.T_cam_lidar)
        origin = T_lidar_cam[:3, 3]
        dirs = self._cam_dirs @ T_lidar_cam[:3, :3].T
        hit = posed.rs.cast(origin[None], dirs)
        kind, inst, paint, part = posed.lookup(hit)
        th = np.where(np.isfinite(hit['t_hit']), hit['t_hit'], 0.0)[:, None]
        rel = dirs * th
        hit['_rel'] = rel
        pts = origin + rel
        solid = kind >= 0
        lit = np.ones(len(kind))
        sun = self.scene.sun
        if self.shadows and np.any(solid):
            nrm = hit['primitive_normals'][solid].astype(np.float64)
            nrm[np.sum(nrm * dirs[solid], axis=1) > 0] *= -1
            sh = posed.rs.cast(pts[solid] + 0.03 * nrm, np.broadcast_to(sun, nrm.shape))
            lit[solid] = ~np.isfinite(sh['t_hit'])
        rgb = shade_camera(hit, dirs, pts + ego, kind, part, np.asarray(paint, dtype=np.float64),
                           lit, sun, self.tex, self.walk)
        rgb = rgb + rng.normal(0.0, 1.5 / 255.0, rgb.shape)
        image = (np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8).reshape(cam.height, cam.width, 3)
        masks = np.where(kind == KIND_CAR, inst, 0).astype(np.int32).reshape(cam.height, cam.width)
        return image, masks, (origin, T_lidar_cam)

    def _scan(self, posed: _Posed, ego: np.ndarray, rng):
        L = self.lidar
        dirs = self._lidar_dirs
        hit = posed.rs.cast(np.zeros((1, 3)), dirs)
        kind, inst, _, part = posed.lookup(hit)
        t = hit['t_hit']
        ok = np.isfinite(t) & (t >= L.min_range) & (t <= L.max_range)
        drop = L.dropout + 0.1 * (np.where(ok, t, 0) / L.max_range) ** 2
        drop = drop + np.where(part == PART_IDS['glass'], 0.3, 0.0)
        ok &= rng.uniform(size=len(t)) >= drop
        idx = np.nonzero(ok)[0]
        t, d, kind, inst, part = t[idx].astype(np.float64), dirs[idx], kind[idx], inst[idx], part[idx]
        clean = d * t[:, None]
        noisy = d * (t + rng.normal(0.0, L.range_noise, len(t)))[:, None]
        nrm = hit['primitive_normals'][idx].astype(np.float64)
        cos_inc = np.abs(np.sum(nrm * d, axis=1))
        g = kind == KIND_GROUND
        g_refl = np.zeros(0)
        if np.any(g):
            w = clean[g] + ego
            _, g_refl = ground_albedo(self.tex, w[:, 0], w[:, 1], self.walk)
        car_refl = self._car_refl_lut[inst]
        refl = lidar_reflectance(kind, part, g_refl, car_refl, cos_inc)
        refl = np.clip(refl + rng.normal(0, 0.01, len(refl)), 0, 1)
        points = np.column_stack([noisy, refl]).astype(np.float32)
        pinst = np.where(kind == KIND_CAR, inst, 0).astype(np.int32)
        return points, clean.astype(np.float32), self._ring[idx], pinst

    def _ground_truth(self, posed: _Posed, t: float, ego: np.ndarray, masks: np.ndarray, cam_pose, pinst):
        cam = self.camera
        W, H = cam.width, cam.height
        origin, T_lidar_cam = cam_pose
        visible_px = np.bincount(masks.ravel(), minlength=len(self.scene.cars) + 1)
        lidar_pts = np.bincount(pinst, minlength=len(self.scene.cars) + 1)
        labels = []
        for car in self.scene.cars:
            v_lidar = posed.car_verts[car.id]
            vc = transform_points(self.T_cam_lidar, v_lidar)
            if np.all(vc[:, 2] <= 0.1):
                continue
            front = vc[:, 2] > 0.1
            uv = vc[front, :2] / vc[front, 2:3] * [cam.K[0, 0], cam.K[1, 1]] + cam.K[:2, 2]
            x1, y1 = uv.min(axis=0)
            x2, y2 = uv.max(axis=0)
            if not np.all(front):       # straddles the image plane: unbounded silhouette
                x1, y1, x2, y2 = -np.inf, -np.inf, np.inf, np.inf
            x1, x2 = np.clip([x1, x2], -W, 2 * W)
            y1, y2 = np.clip([y1, y2], -H, 2 * H)
            if x2 < 0 or y2 < 0 or x1 >= W or y1 >= H:
                continue
            solo = RayScene()
            solo.add(v_lidar, car.mesh.faces)
            # amodal silhouette inside the image at full resolution
            ix1, iy1 = int(max(0, np.floor(x1))), int(max(0, np.floor(y1)))
            ix2, iy2 = int(min(W, np.ceil(x2) + 1)), int(min(H, np.ceil(y2) + 1))
            pix = (np.arange(iy1, iy2)[:, None] * W + np.arange(ix1, ix2)[None]).ravel()
            dirs = self._cam_dirs[pix] @ T_lidar_cam[:3, :3].T
            hit = np.isfinite(solo.cast(origin[None], dirs)['t_hit'])
            amodal = int(hit.sum())
            if amodal == 0:
                continue
            rows, cols = pix[hit] // W, pix[hit] % W
            box2d = np.array([cols.min(), rows.min(), min(cols.max() + 1, W - 1), min(rows.max() + 1, H - 1)],
                             dtype=np.float64)
            trunc = 0.0
            if x1 < 0 or y1 < 0 or x2 > W or y2 > H:
                stride = max(1.0, np.sqrt((x2 - x1) * (y2 - y1) / 40000.0))
                gu, gv = np.meshgrid(np.arange(x1, x2, stride), np.arange(y1, y2, stride))
                d = np.stack([(gu.ravel() - cam.K[0, 2]) / cam.K[0, 0],
                              (gv.ravel() - cam.K[1, 2]) / cam.K[1, 1], np.ones(gu.size)], axis=1)
                d /= np.linalg.norm(d, axis=1, keepdims=True)
                h2 = np.isfinite(solo.cast(origin[None], d @ T_lidar_cam[:3, :3].T)['t_hit'])
                inside = (gu.ravel() >= 0) & (gu.ravel() < W) & (gv.ravel() >= 0) & (gv.ravel() < H)
                if h2.sum() > 0:
                    trunc = float(1.0 - (h2 & inside).sum() / h2.sum())
            vis = int(visible_px[car.id])
            if vis == 0:        # hidden behind others: not annotated (as in KITTI)
                continue
            frac = vis / amodal
            c = self.scene.car_center(car, t) - ego
            labels.append(Label3D(
                center=c, size=car.size, yaw=car.pose(t)[2], cls='Car', score=1.0, id=car.id, box2d=box2d,
                mesh=Mesh(vertices=v_lidar, faces=car.mesh.faces),
                truncation=round(min(max(trunc, 0.0), 1.0), 2), occlusion=_occlusion_level(frac),
                metrics={'visible_px': vis, 'amodal_px': amodal, 'visible_frac': round(frac, 4),
                         'lidar_points': int(lidar_pts[car.id]), 'seed': car.seed, 'speed': car.speed,
                         'body_type': _body_type(car.mesh)}))
        return labels


def _body_type(mesh) -> str:
    """The procedural car's body type, or a provided mesh's ``metadata['body_type']``."""
    meta = mesh.metadata or {}
    return str(meta.get('params', {}).get('body_type') or meta.get('body_type', 'unknown'))


def simulate_frame(seed: int, beams: int = 64, **kwargs) -> SimFrame:
    """A single frame of a fresh random scene (the first frame of ``simulate_drive(1, seed)``)."""
    return Simulator(seed, n_frames=1, beams=beams, **kwargs).frame(0)


def simulate_drive(n_frames: int, seed: int, beams: int = 64, **kwargs) -> Iterator[SimFrame]:
    """``n_frames`` consecutive frames at 10 Hz of one random scene: the ego drives forward, the
    cars on the lanes at constant speeds, parked cars stand."""
    if n_frames < 1:
        raise ValueError(f'n_frames must be >= 1, got {n_frames}')
    sim = Simulator(seed, n_frames=n_frames, beams=beams, **kwargs)
    for i in range(n_frames):
        yield sim.frame(i)
