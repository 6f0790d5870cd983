"""Shading of camera ray hits: materials (car parts, road with lane markings, sidewalk, walls,
poles, bushes), sun + sky lighting with cast shadows, specular paint and glass, sky and haze.
Also the LiDAR reflectance of each hit. Textures are functions of world coordinates, so they stay
put on the road while the ego drives."""
from __future__ import annotations

import numpy as np

from autolabel_ros.shape.cars import PART_IDS, PART_NAMES
from autolabel_ros.sim.scene import KERB, KIND_BUSH, KIND_CAR, KIND_GROUND, KIND_POLE, KIND_WALL

_PART_RGB = {'glass': (0.04, 0.05, 0.06), 'tyre': (0.04, 0.04, 0.04), 'rim': (0.55, 0.56, 0.58),
             'headlight': (0.92, 0.92, 0.88), 'taillight': (0.55, 0.03, 0.03), 'trim': (0.07, 0.07, 0.08)}
_PART_REFLECTANCE = {'paint': 0.45, 'glass': 0.05, 'tyre': 0.04, 'rim': 0.5, 'headlight': 0.85,
                     'taillight': 0.85, 'trim': 0.12}
_KIND_REFLECTANCE = {KIND_POLE: 0.45, KIND_WALL: 0.3, KIND_BUSH: 0.15}


class Textures:
    """Tileable value-noise textures, deterministic by seed, sampled at world (x, y) metres."""

    def __init__(self, seed: int, size: int = 256):
        rng = np.random.default_rng([int(seed), 0x7E7])
        self.fine = rng.uniform(-1, 1, (size, size)).astype(np.float32)
        coarse = rng.uniform(-1, 1, (size // 8, size // 8)).astype(np.float32)
        self.coarse = np.kron(coarse, np.ones((8, 8), np.float32))
        self.size = size

    def sample(self, tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Bilinear lookup with wrap-around; u, v in texels."""
        n = self.size
        u0, v0 = np.floor(u), np.floor(v)
        fu, fv = (u - u0).astype(np.float32), (v - v0).astype(np.float32)
        i0, j0 = u0.astype(np.int64) % n, v0.astype(np.int64) % n
        i1, j1 = (i0 + 1) % n, (j0 + 1) % n
        return ((tex[j0, i0] * (1 - fu) + tex[j0, i1] * fu) * (1 - fv)
                + (tex[j1, i0] * (1 - fu) + tex[j1, i1] * fu) * fv)

    def noise(self, x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
        """Noise in [-1, 1] with features of about ``scale`` metres (two octaves)."""
        return 0.65 * self.sample(self.fine, x / scale, y / scale) + \
            0.35 * self.sample(self.coarse, x / (scale * 4), y / (scale * 4))


def sky_color(d: np.ndarray) -> np.ndarray:
    """Sky gradient for world-frame unit directions (N x 3): hazy horizon to blue zenith."""
    t = np.clip(d[:, 2], 0, 1)[:, None] ** 0.6
    horizon = np.array([0.78, 0.83, 0.88])
    zenith = np.array([0.33, 0.52, 0.82])
    return horizon * (1 - t) + zenith * t


def ground_albedo(tex: Textures, wx: np.ndarray, wy: np.ndarray, walk: dict) -> tuple[np.ndarray, np.ndarray]:
    """Road / parking strip / sidewalk colour and LiDAR reflectance at world (x, y)."""
    ay = np.abs(wy)
    n_fine = tex.noise(wx, wy, 0.04)
    n_blot = tex.noise(wx + 50, wy - 20, 1.5)
    g = 0.30 + 0.035 * n_fine + 0.04 * n_blot
    refl = 0.18 + 0.04 * n_fine
    # lane markings: dashed between lanes (3 m on, 6 m off), solid edge lines at the kerbs
    dashed = (np.abs(ay - 1.75) < 0.07) & (np.mod(wx, 9.0) < 3.0)
    edge = np.abs(ay - (KERB - 0.25)) < 0.08
    mark = dashed | edge
    g = np.where(mark, 0.85 + 0.05 * n_fine, g)
    refl = np.where(mark, 0.65, refl)
    rgb = np.repeat(g[:, None], 3, axis=1) * np.array([1.0, 1.0, 1.04])
    # sidewalk: lighter paving with a 0.4 m joint grid
    w_side = np.where(wy > 0, walk[1], walk[-1])
    side = ay > w_side
    joints = (np.mod(wx, 0.4) < 0.02) | (np.mod(wy, 0.4) < 0.02)
    sg = 0.56 + 0.04 * n_fine + 0.03 * n_blot - 0.12 * joints
    rgb[side] = (sg[side, None] * np.array([1.0, 0.98, 0.94]))
    refl = np.where(side, 0.3 + 0.03 * n_fine, refl)
    # kerb stones: a light band at the kerb line
    kerb = np.abs(ay - w_side) < 0.15
    rgb[kerb] = 0.62
    return rgb, refl


def shade_camera(hit: dict, dirs_world: np.ndarray, points_world: np.ndarray, kind: np.ndarray,
                 part: np.ndarray, paint: np.ndarray, lit: np.ndarray, sun: np.ndarray,
                 tex: Textures, walk: dict) -> np.ndarray:
    """N x 3 float colours of camera rays. ``kind`` per ray (-1 = sky), ``part`` the car part id
    (cars only), ``paint`` N x 3 base colour of the hit geometry (car paint, wall colour), ``lit``
    the sun visibility. Directions are in the LiDAR frame, whose axes are the world's."""
    n = len(kind)
    out = np.zeros((n, 3))
    sky = kind < 0
    out[sky] = sky_color(dirs_world[sky])
    nrm = hit['primitive_normals'].astype(np.float64)
    flip = np.sum(nrm * dirs_world, axis=1) > 0
    nrm[flip] *= -1
    albedo = np.zeros((n, 3))
    gnd = kind == KIND_GROUND
    albedo[gnd], _ = ground_albedo(tex, points_world[gnd, 0], points_world[gnd, 1], walk)
    car = kind == KIND_CAR
    for name in PART_NAMES:
        sel = car & (part == PART_IDS[name])
        albedo[sel] = paint[sel] if name == 'paint' else _PART_RGB[name]
    wall = kind == KIND_WALL
    if np.any(wall):
        pw = points_world[wall]
        # facade windows: a 3 m x 3 m grid of dark panes
        u = np.where(np.abs(nrm[wall, 0]) > 0.5, pw[:, 1], pw[:, 0])
        win = (np.mod(u, 3.0) > 0.8) & (np.mod(u, 3.0) < 2.2) & (np.mod(pw[:, 2] + 0.4, 3.0) > 1.0) \
            & (np.mod(pw[:, 2] + 0.4, 3.0) < 2.4) & (pw[:, 2] > 0.5)
        col = paint[wall] * (1 + 0.05 * tex.noise(u, pw[:, 2], 0.1))[:, None]
        col[win] = np.array([0.12, 0.14, 0.17])
        albedo[wall] = col
    pole = kind == KIND_POLE
    albedo[pole] = 0.45
    bush = kind == KIND_BUSH
    if np.any(bush):
        pb = points_world[bush]
        nb = tex.noise(pb[:, 0] * 3 + pb[:, 2], pb[:, 1] * 3 - pb[:, 2], 0.05)
        albedo[bush] = np.array([0.16, 0.32, 0.1]) * (1 + 0.35 * nb)[:, None]
    solid = ~sky
    ndl = np.clip(nrm @ sun, 0, None) * lit
    sky_light = 0.45 + 0.15 * nrm[:, 2]
    col = albedo * (sky_light + 0.8 * ndl)[:, None]
    # specular highlights and sky reflections on paint and glass
    shiny = car & ((part == PART_IDS['paint']) | (part == PART_IDS['glass']))
    if np.any(shiny):
        d = dirs_world[shiny]
        nn = nrm[shiny]
        refl_dir = d - 2 * np.sum(d * nn, axis=1, keepdims=True) * nn
        fres = 0.04 + 0.5 * (1 - np.clip(-np.sum(d * nn, axis=1), 0, 1)) ** 5
        k = np.where(part[shiny] == PART_IDS['glass'], 0.35, 0.12) + fres
        hvec = sun[None] - d
        hvec /= np.linalg.norm(hvec, axis=1, keepdims=True)
        spec = np.clip(np.sum(hvec * nn, axis=1), 0, 1) ** 60 * lit[shiny]
        col[shiny] = col[shiny] * (1 - k[:, None]) + k[:, None] * sky_color(refl_dir) + 0.6 * spec[:, None]
    out[solid] = col[solid]
    # aerial perspective
    dist = np.linalg.norm(hit['_rel'], axis=1)
    haze = (1 - np.exp(-np.where(solid, dist, 0) / 350.0))[:, None]
    out[solid] = out[solid] * (1 - haze[solid]) + haze[solid] * np.array([0.78, 0.83, 0.88])
    return out


def lidar_reflectance(kind: np.ndarray, part: np.ndarray, ground_refl: np.ndarray,
                      car_refl: np.ndarray, cos_inc: np.ndarray) -> np.ndarray:
    """KITTI-like reflectance in [0, 1]: material reflectivity times the incidence cosine."""
    r = np.zeros(len(kind))
    r[kind == KIND_GROUND] = ground_refl
    car = kind == KIND_CAR
    for name, val in _PART_REFLECTANCE.items():
        sel = car & (part == PART_IDS[name])
        r[sel] = car_refl[sel] if name == 'paint' else val
    for k, val in _KIND_REFLECTANCE.items():
        r[kind == k] = val
    return np.clip(r * (0.35 + 0.65 * np.abs(cos_inc)), 0.0, 1.0)
