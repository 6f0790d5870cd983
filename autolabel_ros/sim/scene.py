"""A random street scene: sloped ground, lanes and parking rows with procedural cars, clutter.

World frame: the LiDAR frame of the first frame of a drive, x forward along the road, y left,
z up; the road surface is the plane ``z = gx * x + gy * y + g0`` (a small random gradient and
height offset relative to the sensor, as a real sensor on a road sees it). Cars stay upright (yaw
only, like KITTI's labels): each sits with its box bottom on the ground height under its centre,
so on the slope (<= 1 deg along, 0.5 deg across) a wheel may sink or float by at most
``l/2 * tan(1 deg)`` ~ 4 cm.

Road layout across y (metres): lanes of 3.5 m centred at -3.5 (same direction as the ego), 0 (the
ego lane) and +3.5 (oncoming); kerbs at +-5.25; on each side a parking row (parallel or
perpendicular, sometimes none); then the sidewalk with poles and bushes and building walls.
Moving cars keep their lane and a per-lane constant speed (so cars in a lane never collide);
parked cars stand still at random headings.

Cars are procedural (:mod:`autolabel_ros.shape.cars`) unless a ``car_source`` provides the meshes
(e.g. real car models for a benchmark): ``car_source(k)`` returns the mesh of the k-th car placed
in the scene, in the canonical car frame (x forward, y left, z up, metres). It is recentred on its
axis-aligned box, and that tight box is the car's ground-truth box, as for the procedural cars.
Optional ``metadata['face_part']`` (per-face part ids) paints glass, lights and tyres; without it
the whole car is paint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import trimesh
from shapely.geometry import Polygon

from autolabel_ros.core.geometry import bev_corners
from autolabel_ros.shape.cars import face_parts, make_car_mesh, random_car_params

SIM_CAR_SEED_BASE = 100000          # car seeds used by the simulator (>= 100000, disjoint from priors)
LANE_WIDTH = 3.5
KERB = 5.25

# Car paint colours (sRGB 0..1) with rough real-world frequencies.
_PAINTS = [((0.92, 0.92, 0.9), 0.24), ((0.06, 0.06, 0.07), 0.2), ((0.62, 0.63, 0.65), 0.16),
           ((0.35, 0.36, 0.38), 0.13), ((0.1, 0.2, 0.5), 0.08), ((0.6, 0.06, 0.05), 0.08),
           ((0.1, 0.3, 0.15), 0.03), ((0.55, 0.42, 0.25), 0.03), ((0.85, 0.55, 0.1), 0.02),
           ((0.3, 0.55, 0.75), 0.03)]

# Geometry kinds of a scene (used for colours, intensities and labels).
KIND_GROUND, KIND_CAR, KIND_POLE, KIND_WALL, KIND_BUSH = 0, 1, 2, 3, 4


@dataclass
class Ground:
    gx: float
    gy: float
    g0: float

    def height(self, x, y):
        return self.gx * np.asarray(x) + self.gy * np.asarray(y) + self.g0


@dataclass
class SimCar:
    """One car: instance id (1..N), its canonical mesh and where it is at t = 0."""

    id: int
    seed: int
    mesh: trimesh.Trimesh               # canonical frame, origin at the box centre
    parts: np.ndarray                   # per-face part ids
    paint: tuple
    x: float
    y: float
    yaw: float
    speed: float = 0.0                  # m/s along its heading
    slot: str = 'lane'                  # 'lane' or 'parking'

    @property
    def size(self) -> np.ndarray:
        return np.asarray(self.mesh.extents, dtype=np.float64)

    def pose(self, t: float) -> tuple[float, float, float]:
        return (self.x + self.speed * t * np.cos(self.yaw), self.y + self.speed * t * np.sin(self.yaw),
                self.yaw)


@dataclass
class Clutter:
    kind: int
    mesh: trimesh.Trimesh               # world frame


@dataclass
class Scene:
    seed: int
    ground: Ground
    cars: list[SimCar]
    clutter: list[Clutter]
    ego_speed: float
    sun: np.ndarray                     # unit vector towards the sun
    layout: dict = field(default_factory=dict)

    def car_center(self, car: SimCar, t: float) -> np.ndarray:
        x, y, _ = car.pose(t)
        return np.array([x, y, float(self.ground.height(x, y)) + car.size[2] / 2])

    def ego_position(self, t: float) -> np.ndarray:
        """World position of the LiDAR at time t (it starts at the origin, drives along +x and
        keeps its height above the road)."""
        x = self.ego_speed * t
        return np.array([x, 0.0, float(self.ground.height(x, 0.0) - self.ground.height(0.0, 0.0))])


def _paint(rng) -> tuple:
    cols = np.array([c for c, _ in _PAINTS])
    p = np.array([w for _, w in _PAINTS])
    c = cols[rng.choice(len(cols), p=p / p.sum())]
    return tuple(np.clip(c * rng.uniform(0.9, 1.1) + rng.normal(0, 0.02, 3), 0, 1).tolist())


def _footprint(x, y, yaw, size, margin):
    return Polygon(bev_corners([x, y, 0], np.asarray(size) + [2 * margin, 2 * margin, 0], yaw))


CarSource = Callable[[int], trimesh.Trimesh]


def provided_car(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy of a provided car mesh centred on its axis-aligned box (metadata kept)."""
    out = mesh.copy()
    lo, hi = out.bounds
    out.apply_translation(-(lo + hi) / 2.0)
    return out


def make_scene(seed: int, n_cars: int | None = None, road_length: float = 60.0, duration: float = 0.0,
               clutter: bool = True, car_source: Optional[CarSource] = None) -> Scene:
    """Random street scene. ``n_cars`` (default 2-15 per 60 m of road ahead) cars are placed
    0..``road_length`` m ahead of the ego (plus its travel over ``duration`` seconds) and at least
    5 m away from it, on lanes and parking rows, without overlaps at any time of the drive.
    ``car_source`` (see the module docstring) replaces the procedural cars; a car that finds no
    room is retried with the same mesh, so a scene uses the source's meshes 0, 1, 2, ... in order."""
    rng = np.random.default_rng([int(seed), 0x5CE])
    ground = Ground(gx=float(np.tan(np.radians(rng.uniform(-1.0, 1.0)))),
                    gy=float(np.tan(np.radians(rng.uniform(-0.5, 0.5)))),
                    g0=float(-1.73 + rng.uniform(-0.1, 0.1)))     # LiDAR ~1.73 m above the road
    ego_speed = float(rng.uniform(5.0, 12.0))
    x_max = road_length + ego_speed * duration
    if n_cars is None:
        n_cars = int(rng.integers(2, 16) * max(1.0, x_max / road_length))
    lane_speed = {-LANE_WIDTH: float(rng.uniform(ego_speed, ego_speed + 4)),
                  0.0: float(rng.uniform(ego_speed, ego_speed + 3)),
                  LANE_WIDTH: float(rng.uniform(8.0, 14.0))}
    rows = {}
    for side in (1, -1):
        rows[side] = str(rng.choice(['parallel', 'perpendicular', 'none'], p=[0.5, 0.3, 0.2]))
    el = np.radians(rng.uniform(25, 60))
    az = rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])

    cars: list[SimCar] = []
    foot_static = []                    # (polygon) of parked cars
    lane_cars: dict[float, list[tuple[float, float]]] = {k: [] for k in lane_speed}  # (x, length)
    slots = [('lane', y) for y in lane_speed] + [('parking', s) for s in (1, -1) if rows[s] != 'none']
    tries = 0
    while len(cars) < n_cars and tries < 40 * n_cars:
        tries += 1
        kind, where = slots[int(rng.integers(len(slots)))]
        cseed = SIM_CAR_SEED_BASE + int(rng.integers(0, 2 ** 31 - SIM_CAR_SEED_BASE))
        if car_source is None:
            params = random_car_params(cseed)
            size = np.array([params.length, params.width, params.height])   # the mesh is built if placed
        else:
            mesh = provided_car(car_source(len(cars)))
            size = np.asarray(mesh.extents, dtype=np.float64)
        x = float(rng.uniform(0.0, x_max))
        if kind == 'lane':
            y = where + float(rng.normal(0, 0.25))
            yaw = (np.pi if where > 0 else 0.0) + float(rng.normal(0, 0.03))
            speed = lane_speed[where]
        elif rows[where] == 'parallel':
            y = where * (KERB + 1.25) + float(rng.normal(0, 0.1))
            yaw = float(rng.choice([0.0, np.pi])) + float(rng.normal(0, 0.05))
            speed = 0.0
        else:
            y = where * (KERB + 0.3 + size[0] / 2) + float(rng.normal(0, 0.1))
            yaw = where * np.pi / 2 + float(rng.choice([0.0, np.pi])) + float(rng.normal(0, 0.15))
            speed = 0.0
        if np.hypot(x, y) < 5.0 or (kind == 'lane' and where == 0.0 and x < 8.0):
            continue                                    # >= 5 m away; room ahead in the ego lane
        if kind == 'lane':
            gap = 2.0 + (lane_speed[where] * 0.8 if where > 0 else 2.0)
            if any(abs(x - ox) < (size[0] + ol) / 2 + gap for ox, ol in lane_cars[where]):
                continue
            lane_cars[where].append((x, size[0]))
        else:
            poly = _footprint(x, y, yaw, size, 0.3)
            if any(poly.intersects(o) for o in foot_static):
                continue
            foot_static.append(poly)
        if car_source is None:
            mesh = make_car_mesh(params)
        cars.append(SimCar(id=len(cars) + 1, seed=cseed, mesh=mesh, parts=face_parts(mesh),
                           paint=_paint(rng), x=x, y=y, yaw=float(yaw), speed=speed, slot=kind))
    clut = _clutter(rng, ground, rows, x_max) if clutter else []
    return Scene(seed=int(seed), ground=ground, cars=cars, clutter=clut, ego_speed=ego_speed, sun=sun,
                 layout={'rows': rows, 'lane_speed': lane_speed})


def _on_ground(mesh: trimesh.Trimesh, ground: Ground, x: float, y: float, sink: float = 0.3):
    """Place a mesh whose base is at z = 0 at (x, y) on the road, sunk a little so the slope
    leaves no gap under it."""
    mesh.apply_translation([x, y, float(ground.height(x, y)) - sink])
    return mesh


def _clutter(rng, ground: Ground, rows: dict, x_max: float) -> list[Clutter]:
    out = []
    for side in (1, -1):
        depth = {'parallel': 2.5, 'perpendicular': 5.6, 'none': 0.0}[rows[side]]
        walk = KERB + depth                       # the sidewalk starts here
        # street lights / sign poles along the kerb
        x = float(rng.uniform(-20, 5))
        while x < x_max + 20:
            r, h = rng.uniform(0.06, 0.14), rng.uniform(3.0, 8.0)
            m = trimesh.creation.cylinder(radius=r, height=h + 0.3, sections=12)
            m.apply_translation([0, 0, (h + 0.3) / 2])
            out.append(Clutter(KIND_POLE, _on_ground(m, ground, x, side * (walk + 0.5))))
            x += float(rng.uniform(12, 30))
        # bushes on the sidewalk
        for _ in range(int(rng.integers(2, 9))):
            m = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
            m.vertices *= rng.uniform([0.5, 0.5, 0.4], [1.4, 1.0, 0.9])
            m.vertices += rng.normal(0, 0.06, m.vertices.shape)
            m.apply_translation([0, 0, 0.35])
            out.append(Clutter(KIND_BUSH, _on_ground(m, ground, float(rng.uniform(-20, x_max + 20)),
                                                     side * (walk + rng.uniform(1.5, 3.0)), sink=0.1)))
        # building facades: a row of boxes with gaps and set-backs
        x = -40.0
        while x < x_max + 60:
            length = float(rng.uniform(8, 30))
            if rng.uniform() < 0.85:
                h = float(rng.uniform(3, 14))
                dpt = float(rng.uniform(4, 10))
                y0 = side * (walk + rng.uniform(3.5, 6.0) + dpt / 2)
                m = trimesh.creation.box(extents=[length, dpt, h + 0.5])
                m.apply_translation([0, 0, (h + 0.5) / 2])
                out.append(Clutter(KIND_WALL, _on_ground(m, ground, x + length / 2, y0, sink=0.5)))
            x += length + float(rng.uniform(0, 6))
    return out
