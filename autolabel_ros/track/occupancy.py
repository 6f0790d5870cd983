"""Semantic occupancy of one frame: a voxel grid around the ego from the fitted shapes and the scans.

The grid is axis-aligned in the frame's LiDAR frame (x forward, y left, z up), ``voxel`` metres per
side over ``extent`` = (x0, y0, z0, x1, y1, z1); arrays are indexed ``[ix, iy, iz]`` and voxel
``(i, j, k)`` spans ``origin + voxel * ((i, j, k) .. (i, j, k) + 1)``. Each voxel gets one class:

- **car** (``instance`` = the label's id, which may be 0: the track id with ``--tracks``; read it
  where the class is car): its centre lies inside a
  fitted shape (the signed distance to the label's watertight mesh, the zero level set of the fitted
  SDF, is negative), or it holds returns within ``surface_band`` of that surface. The shape fills the
  car's hidden side and interior, which no scan sees; the box is never used;
- **ground**: holds returns, most of them within ``ground.removal_height`` of the frame's ground
  plane (:func:`autolabel_ros.fit.ground.fit_ground`);
- **other** (occupied): holds returns, most of them above that band and not on a car;
- **free**: a ray from a sensor origin to one of its returns crossed it (the last ``voxel`` metres
  before the return are not carved, so a grazing ray does not empty the voxel its return lies in);
- **unknown**: none of the above (behind what the sensor hit, under the ground, out of its view).

Precedence: car > ground / other > free > unknown. The returns are the frame's own sweep's and, with
``window`` > 0, its neighbours' (ego-compensated into this frame); a neighbour's returns inside its
own accepted labels' boxes are left out (a moving car would smear along its path; the current
frame's car is its fitted shape). Free space is carved by the frame's own rays and, with
``free_window`` > 0, by its neighbours' from their own origins.

Free space is ray casting in numpy: rays whose end voxels coincide (from the same origin) are cast
once, each ray is clipped to the grid box (slab test) and sampled every ``ray_step`` voxel sizes;
the samples' voxel indices set the free flags in one scatter.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from autolabel_ros.core.geometry import invert_transform, points_in_box, transform_points
from autolabel_ros.io.occupancy import CAR, CLASSES, FREE, GROUND, OTHER, UNKNOWN

log = logging.getLogger(__name__)

__all__ = ['CAR', 'CLASSES', 'FREE', 'GROUND', 'OTHER', 'UNKNOWN', 'OccupancyGrid', 'OccupancySettings',
           'Scan', 'occupancy_grid', 'frame_scans']
CHUNK = 4_000_000          # ray samples per scatter (bounds the memory of the free-space pass)


@dataclass
class OccupancySettings:
    voxel: float = 0.2
    extent: tuple = (-40.0, -40.0, -3.0, 40.0, 40.0, 3.0)
    window: int = 2                    # neighbour sweeps on each side whose returns fill a frame
    free_window: int = 0               # neighbour sweeps on each side whose rays carve free space
    ray_step: float = 1.0              # free-space sample spacing along a ray, in voxel edges
    surface_band: float = 0.3          # returns this close to a fitted surface belong to the car (m)
    neighbour_box_margin: float = 0.3  # a neighbour's returns this close to its own labels' boxes are dropped
    ground_height: float = 0.25        # returns lower above the ground plane are ground (m)

    @classmethod
    def from_config(cls, cfg) -> 'OccupancySettings':
        """From an AutolabelConfig (sections ``occupancy`` and ``ground``)."""
        o = cfg.occupancy
        return cls(voxel=o.voxel, extent=(o.x_min, o.y_min, o.z_min, o.x_max, o.y_max, o.z_max),
                   window=o.window, free_window=o.free_window, ray_step=o.ray_step,
                   surface_band=o.surface_band, ground_height=cfg.ground.removal_height)


@dataclass
class Scan:
    """Returns of one sweep and its sensor origin, both in the grid's frame (N x 3, (3,))."""

    points: np.ndarray
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    returns: bool = True               # its returns fill voxels
    carve: bool = True                 # its rays carve free space


@dataclass
class OccupancyGrid:
    labels: np.ndarray                 # uint8 [ix, iy, iz], a class of CLASSES
    instance: np.ndarray               # uint16 [ix, iy, iz], the car's id, 0 elsewhere
    origin: np.ndarray                 # (3,) lower corner of voxel (0, 0, 0) in the LiDAR frame
    voxel: float
    stats: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(self.labels.shape)

    def centres(self, idx: np.ndarray) -> np.ndarray:
        """Centres (N x 3) of voxels given as N x 3 integer indices."""
        return self.origin + (np.asarray(idx, np.float64) + 0.5) * self.voxel

    def index_of(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N x 3 voxel indices, N inside-the-grid flags) of N x 3 points."""
        ijk = np.floor((np.asarray(pts, np.float64)[:, :3] - self.origin) / self.voxel).astype(np.int64)
        ok = np.all((ijk >= 0) & (ijk < np.array(self.shape)), axis=1)
        return ijk, ok

    def counts(self) -> dict:
        n = np.bincount(self.labels.ravel(), minlength=len(CLASSES))
        return {CLASSES[k]: int(n[k]) for k in sorted(CLASSES)}


def grid_shape(settings: OccupancySettings) -> tuple[np.ndarray, tuple]:
    """(origin, (nx, ny, nz)) of the grid the settings describe."""
    e = np.asarray(settings.extent, np.float64)
    n = np.maximum(1, np.round((e[3:] - e[:3]) / settings.voxel).astype(int))
    return e[:3].copy(), tuple(int(v) for v in n)


def check_settings(s: OccupancySettings) -> None:
    """ValueError naming the setting that cannot give a grid."""
    e = np.asarray(s.extent, np.float64)
    if e.shape != (6,) or not np.all(np.isfinite(e)) or np.any(e[3:] <= e[:3]):
        raise ValueError(f'occupancy.extent {list(s.extent)}: must be [x0, y0, z0, x1, y1, z1] with x1 > x0, '
                         f'y1 > y0, z1 > z0 (metres, LiDAR frame)')
    if not (np.isfinite(s.voxel) and s.voxel > 0):
        raise ValueError(f'occupancy.voxel {s.voxel}: must be a positive size in metres')
    n = np.prod(np.round((e[3:] - e[:3]) / s.voxel))
    if n > 200e6:
        raise ValueError(f'occupancy: voxel {s.voxel} m over extent {list(s.extent)} gives {int(n)} voxels '
                         f'(at most 200 million); use a larger voxel or a smaller extent')


# -- free space ---------------------------------------------------------------------------------

def _clip_to_box(origin: np.ndarray, u: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Entry and exit ray parameters of unit rays ``origin + t u`` through the box [lo, hi] (slabs)."""
    with np.errstate(divide='ignore', invalid='ignore'):
        inv = 1.0 / u
        t0 = (lo - origin) * inv
        t1 = (hi - origin) * inv
    tmin = np.where(np.isnan(t0), -np.inf, np.minimum(t0, t1))
    tmax = np.where(np.isnan(t1), np.inf, np.maximum(t0, t1))
    return np.maximum(tmin.max(axis=1), 0.0), tmax.min(axis=1)


def free_space(scans: Sequence[Scan], origin: np.ndarray, shape: tuple, voxel: float,
               ray_step: float = 0.5) -> tuple[np.ndarray, dict]:
    """Bool grid of the voxels some ray crossed before its return, and counts (rays, samples)."""
    shape_a = np.array(shape)
    lo = origin
    hi = origin + shape_a * voxel
    free = np.zeros(int(np.prod(shape)), bool)
    step = ray_step * voxel
    n_rays = n_samples = 0
    for sc in scans:
        p = np.asarray(sc.points, np.float64)[:, :3]
        o = np.asarray(sc.origin, np.float64)
        d = p - o
        r = np.linalg.norm(d, axis=1)
        ok = r > voxel
        d, r = d[ok], r[ok]
        u = d / r[:, None]
        t_in, t_out = _clip_to_box(o, u, lo, hi)
        t_end = np.minimum(r - voxel, t_out)             # stop one voxel short of the return
        ok = t_end > t_in
        u, t_in, t_end = u[ok], t_in[ok], t_end[ok]
        if not len(u):
            continue
        # one ray per end voxel: from one origin, rays ending in the same voxel cross the same ones
        end = np.floor((o + u * t_end[:, None] - lo) / voxel).astype(np.int64)
        key = (end[:, 0] * (shape[1] + 2) + end[:, 1]) * (shape[2] + 2) + end[:, 2]
        _, first = np.unique(key, return_index=True)
        u, t_in, t_end = u[first], t_in[first], t_end[first]
        n = np.ceil((t_end - t_in) / step).astype(np.int64)
        n_rays += len(u)
        # rays in chunks of about CHUNK samples; float32 and per-axis integer indices keep it cheap
        o32, u32 = (o - lo).astype(np.float32), u.astype(np.float32)
        t_in32, t_end32 = t_in.astype(np.float32), t_end.astype(np.float32)
        cum = np.cumsum(n)
        starts = np.concatenate([[0], np.searchsorted(cum, np.arange(CHUNK, cum[-1], CHUNK))])
        bounds = list(starts) + [len(n)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b <= a:
                continue
            nn = n[a:b]
            ray = np.repeat(np.arange(a, b, dtype=np.int32), nn)
            k = np.arange(len(ray), dtype=np.int32) - np.repeat((np.cumsum(nn) - nn).astype(np.int32), nn)
            t = np.minimum(t_in32[ray] + (k.astype(np.float32) + 0.5) * np.float32(step), t_end32[ray])
            flat = np.zeros(len(ray), np.int64)
            for ax in range(3):
                i = ((o32[ax] + u32[ray, ax] * t) * np.float32(1.0 / voxel)).astype(np.int64)
                np.clip(i, 0, shape[ax] - 1, out=i)     # samples on the far faces round outwards
                flat = flat * shape[ax] + i
            free[flat] = True
            n_samples += len(ray)
    return free.reshape(shape), {'rays': int(n_rays), 'samples': int(n_samples)}


# -- cars from the fitted shapes ---------------------------------------------------------------

def _car_scene(labels):
    """open3d RaycastingScene of the labels' meshes and the label id of each geometry id."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    ids = {}
    for lab in labels:
        v = np.asarray(lab.mesh.vertices, np.float32)
        f = np.asarray(lab.mesh.faces, np.uint32)
        gid = scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))
        ids[int(gid)] = int(lab.id)
    return scene, ids


def car_sdf(scene, ids: dict, pts: np.ndarray, signed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(signed distance to the nearest fitted surface, negative inside, or without ``signed`` the
    unsigned one; that label's id, -1 for none) at N x 3 points."""
    import open3d as o3d

    p = np.asarray(pts, np.float32)
    q = o3d.core.Tensor(p)
    near = scene.compute_closest_points(q)
    gid = near['geometry_ids'].numpy().astype(np.int64)
    sd = np.linalg.norm(near['points'].numpy() - p, axis=1).astype(np.float64)
    if signed:       # inside = odd number of crossings (the meshes are closed)
        sd = np.where(scene.compute_occupancy(q).numpy() > 0.5, -sd, sd)
    lut = np.full(max(ids) + 2, -1, np.int64)
    for g, i in ids.items():
        lut[g] = i
    gid = np.where((gid >= 0) & (gid < len(lut)), gid, len(lut) - 1)
    return sd, lut[gid]


def usable_labels(labels) -> list:
    """Accepted labels with a finite box and a mesh (the shapes that fill voxels)."""
    out = []
    for lab in labels:
        if not lab.accepted or lab.mesh is None or not len(lab.mesh.faces):
            continue
        if not np.all(np.isfinite(lab.box7)):
            continue
        out.append(lab)
    return out


# -- the grid ----------------------------------------------------------------------------------

def occupancy_grid(scans: Sequence[Scan], labels, settings: Optional[OccupancySettings] = None,
                   ground=None) -> OccupancyGrid:
    """The labelled grid of one frame. ``scans[0]`` is the frame's own sweep (the ground plane is fit
    on it unless ``ground``, a :class:`autolabel_ros.fit.ground.GroundPlane`, is given), the others
    its neighbours already in this frame; ``labels``: the frame's Label3D (accepted ones with a mesh
    fill voxels)."""
    import time

    s = settings or OccupancySettings()
    check_settings(s)
    origin, shape = grid_shape(s)
    v = float(s.voxel)
    tm = {}
    t0 = time.perf_counter()
    free, ray_stats = free_space([sc for sc in scans if sc.carve], origin, shape, v, s.ray_step)
    tm['free_s'] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pts = np.concatenate([np.zeros((0, 3))] + [np.asarray(sc.points, np.float64)[:, :3] for sc in scans
                                               if sc.returns])
    grid = OccupancyGrid(labels=np.zeros(shape, np.uint8), instance=np.zeros(shape, np.uint16),
                         origin=origin, voxel=v)
    ijk, inside = grid.index_of(pts)
    pts, ijk = pts[inside], ijk[inside]
    flat = np.ravel_multi_index(ijk.T, shape) if len(ijk) else np.zeros(0, np.int64)
    if ground is None and scans:
        from autolabel_ros.config import GroundConfig
        from autolabel_ros.fit.ground import fit_ground

        ground = fit_ground(np.asarray(scans[0].points)[:, :3], GroundConfig(), np.random.default_rng(0),
                            max_range=40.0)
    is_ground = ground.height_above(pts) < s.ground_height if ground is not None else np.zeros(len(pts), bool)

    cars = usable_labels(labels)
    car_id = np.full(len(pts), -1, np.int64)        # label id per return (-1 = none; ids may be 0)
    n_vox = int(np.prod(shape))
    car_vox = np.full(n_vox, -1, np.int64)         # label id per voxel (-1 = none)
    if cars:
        scene, ids = _car_scene(cars)
        # returns near a shape (their voxel within the band around some label's box) belong to the
        # car whose surface they lie on
        near_vox = np.zeros(n_vox, bool)
        near_vox[_voxels_near_boxes(cars, origin, shape, v, margin=s.surface_band + v)] = True
        near = near_vox[flat]
        if near.any():
            d, who = car_sdf(scene, ids, pts[near], signed=False)
            on = (d < s.surface_band) & (who >= 0)
            car_id[np.nonzero(near)[0][on]] = who[on]
        # voxels whose centre lies inside a fitted shape
        cand = _voxels_near_boxes(cars, origin, shape, v)
        if len(cand):
            sd, who = car_sdf(scene, ids, grid.centres(np.stack(np.unravel_index(cand, shape), 1)))
            inside_shape = (sd < 0) & (who >= 0)
            car_vox[cand[inside_shape]] = who[inside_shape]
    on_car = car_id >= 0
    # returns on cars: their voxel is the car's (the first id seen wins where two cars touch)
    if on_car.any():
        f, i = flat[on_car], car_id[on_car]
        empty = car_vox[f] < 0
        car_vox[f[empty]] = i[empty]
    rest = ~on_car
    n_g = np.bincount(flat[rest], weights=is_ground[rest].astype(np.float64), minlength=n_vox)
    n_all = np.bincount(flat[rest], minlength=n_vox).astype(np.float64)
    lab = np.where(free.ravel(), FREE, UNKNOWN).astype(np.uint8)
    hit = n_all > 0
    lab[hit] = np.where(n_g[hit] * 2 >= n_all[hit], GROUND, OTHER)
    lab[car_vox >= 0] = CAR
    grid.labels = lab.reshape(shape)
    grid.instance = np.clip(car_vox, 0, np.iinfo(np.uint16).max).astype(np.uint16).reshape(shape)
    tm['label_s'] = time.perf_counter() - t0
    grid.stats = {**ray_stats, **{k: round(x, 4) for k, x in tm.items()}, 'cars': len(cars),
                  'ground_plane': None if ground is None else [round(float(c), 4) for c in ground.coef]}
    return grid


def _voxels_near_boxes(labels, origin, shape, voxel, margin: Optional[float] = None) -> np.ndarray:
    """Flat indices of the voxels whose centres lie in some label's box grown by ``margin`` (default
    one voxel)."""
    out = []
    m = voxel if margin is None else float(margin)
    for lab in labels:
        r = 0.5 * float(np.hypot(lab.size[0], lab.size[1])) + m
        lo = np.array([lab.center[0] - r, lab.center[1] - r, lab.center[2] - lab.size[2] / 2 - m])
        hi = np.array([lab.center[0] + r, lab.center[1] + r, lab.center[2] + lab.size[2] / 2 + m])
        a = np.clip(np.floor((lo - origin) / voxel).astype(int), 0, np.array(shape))
        b = np.clip(np.ceil((hi - origin) / voxel).astype(int), 0, np.array(shape))
        if np.any(b <= a):
            continue
        ii, jj, kk = np.meshgrid(*[np.arange(a[d], b[d]) for d in range(3)], indexing='ij')
        idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1)
        c = origin + (idx + 0.5) * voxel
        keep = points_in_box(c, lab.center, lab.size, lab.yaw, margin=m)
        out.append(np.ravel_multi_index(idx[keep].T, shape))
    return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)


# -- a drive -----------------------------------------------------------------------------------

def frame_scans(k: int, clouds: Sequence[np.ndarray], poses: Sequence[np.ndarray], labels: Sequence,
                settings: OccupancySettings) -> list[Scan]:
    """Scans for frame ``k`` of a drive: its own sweep, then its neighbours' within ``window``, moved
    into frame k with the ego poses (``T_world_lidar``), their returns in their own labels' boxes
    (grown by ``neighbour_box_margin``) left out. ``clouds[j]``, ``poses[j]``, ``labels[j]``: frame j."""
    out = [Scan(np.asarray(clouds[k], np.float64)[:, :3], np.zeros(3))]
    T_kw = invert_transform(np.asarray(poses[k], np.float64))
    w = max(settings.window, settings.free_window)
    for j in range(max(0, k - w), min(len(clouds), k + w + 1)):
        if j == k:
            continue
        p = np.asarray(clouds[j], np.float64)[:, :3]
        drop = _in_boxes(p, [lab for lab in labels[j] if lab.accepted and np.all(np.isfinite(lab.box7))],
                         settings.neighbour_box_margin)
        T = T_kw @ np.asarray(poses[j], np.float64)
        out.append(Scan(transform_points(T, p[~drop]), T[:3, 3].copy(), returns=abs(j - k) <= settings.window,
                        carve=abs(j - k) <= settings.free_window))
    return out


def _in_boxes(p: np.ndarray, labels, margin: float) -> np.ndarray:
    """Points inside any of the labels' boxes grown by ``margin`` (a square around each box picks
    the candidates the exact test looks at)."""
    out = np.zeros(len(p), bool)
    if not labels or not len(p):
        return out
    x, y = p[:, 0], p[:, 1]
    for lab in labels:
        r = 0.5 * float(np.hypot(lab.size[0], lab.size[1])) + margin
        cand = np.nonzero((np.abs(x - lab.center[0]) <= r) & (np.abs(y - lab.center[1]) <= r))[0]
        if len(cand):
            out[cand[points_in_box(p[cand], lab.center, lab.size, lab.yaw, margin=margin)]] = True
    return out
