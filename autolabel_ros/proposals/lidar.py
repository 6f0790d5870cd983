"""LiDAR object proposals: car-sized clusters above the ground, in the camera frustum, as 2D boxes.

A detector misses small, dark or partly hidden cars; the LiDAR sees them as a blob of returns
standing on the ground. Per frame:

1. ground plane (:func:`autolabel_ros.fit.ground.fit_ground`, the same seeded RANSAC as the lift, so
   both see the same plane) and the points of the camera frustum in a height band above it (the
   band starts above kerbs and low clutter and ends below canopies and signs that would join
   neighbouring objects);
2. connected components of a bird's-eye occupancy grid; a component longer than a car is
   re-split on a finer grid (cars parked bumper to bumper);
3. a component is a proposal when its footprint (minimum-area rectangle) and its top height are
   those of a car and it has enough points; nothing else is decided here: the fit's verification
   rejects what is not a car;
4. the 2D box: the projected cluster points together with their foot points on the ground (the
   band cuts off the wheels), widened by a small margin for the beam spacing;
5. a cluster the camera cannot see is dropped: the LiDAR, mounted above the camera, sees the roof of
   a car behind a nearer one, and the standing box of that far cluster covers the near car in the
   image (a weak detection of the near car then "confirms" it). When most returns inside its box
   lie well in front of it (``hidden``), it is not a prompt.

The per-frame point sets and clusters (:class:`LidarScene`) are kept: the fusion asks them which
cluster a detector box covers (:mod:`autolabel_ros.proposals.evidence`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from autolabel_ros.core.geometry import project, transform_points
from autolabel_ros.core.types import SensorFrame
from autolabel_ros.fit.ground import GroundPlane, fit_ground


@dataclass
class LidarProposal:
    """One car-like cluster: its 2D prompt box and what the LiDAR says about it."""

    box: np.ndarray          # (x1, y1, x2, y2) pixels, clipped to the image
    n_points: int            # cluster points in the band
    depth: float             # median camera depth of the points (m)
    length: float            # footprint: long side of the minimum-area rectangle (m)
    width: float             # ... short side (m)
    top: float               # highest point above the ground (m)
    above: float             # points above the band over the cluster's footprint, per cluster point
    score: float             # prompt score (config proposals.lidar_score, lower for sparse clusters)
    hidden: float = 0.0      # share of the returns in the box lying in front of the cluster
    cluster: int = -1        # index into LidarScene.clusters
    cut: bool = False        # cut out of a longer cluster


@dataclass
class LidarScene:
    """One frame's scan as the proposals see it: the ground, the band points in the image (xyz, height,
    pixel, camera depth), their clusters (index arrays; ``label``: cluster per band point, -1 none) and
    every non-ground return in the image up to 2 m above the band (``solid_uv``, ``solid_z``: what
    occludes what)."""

    ground: GroundPlane
    xyz: np.ndarray
    h: np.ndarray
    uv: np.ndarray
    z: np.ndarray
    clusters: list
    label: np.ndarray
    solid_uv: np.ndarray
    solid_z: np.ndarray
    high: np.ndarray         # x, y of the returns above the band (anywhere in front)
    cut: np.ndarray          # per cluster: cut out of a longer one (split_clusters)


def frustum_band_points(frame: SensorFrame, ground: GroundPlane, cfg):
    """Points in front of the camera, projecting into the image, within ``max_range`` and in the
    height band [band_low, band_high] above the ground: (xyz N x 3, height N, uv N x 2, depth N), and
    the x, y of the points above the band (up to ``band_high + 2`` m, anywhere in front)."""
    xyz = frame.xyz.astype(np.float64)
    r = np.hypot(xyz[:, 0], xyz[:, 1])
    xyz = xyz[(r < cfg.max_range) & (xyz[:, 0] > 0)]
    h = ground.height_above(xyz)
    high = xyz[(h >= cfg.band_high) & (h < cfg.band_high + 2.0), :2]
    band = (h > cfg.band_low) & (h < cfg.band_high)
    xyz, h = xyz[band], h[band]
    uv, z, inside = in_image(frame, xyz)
    return xyz[inside], h[inside], uv, z, high


def in_image(frame: SensorFrame, xyz: np.ndarray):
    """(pixels, camera depths, mask) of the points in front of the camera projecting into the image."""
    uv, z = project(frame.K, transform_points(frame.T_cam_lidar, xyz))
    inside = (z > 1.0) & np.all(np.isfinite(uv), axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] < frame.width) \
        & (uv[:, 1] >= 0) & (uv[:, 1] < frame.height)
    return uv[inside], z[inside], inside


def lidar_scene(frame: SensorFrame, ground: GroundPlane, cfg) -> LidarScene:
    """The band points, their clusters and the occluders of a frame (``cfg``: proposals section)."""
    xyz, h, uv, z, high = frustum_band_points(frame, ground, cfg)
    clusters, cut = split_clusters(xyz[:, :2], cfg)
    label = -np.ones(len(xyz), np.int64)
    for k, idx in enumerate(clusters):
        label[idx] = k
    pts = frame.xyz.astype(np.float64)
    pts = pts[(pts[:, 0] > 0) & (np.hypot(pts[:, 0], pts[:, 1]) < cfg.max_range + 20.0)]
    hh = ground.height_above(pts)
    suv, sz, _ = in_image(frame, pts[(hh > cfg.band_low) & (hh < cfg.band_high + 2.0)])
    return LidarScene(ground, xyz, h, uv, z, clusters, label, suv, sz, high, np.array(cut, bool))


def in_box(uv: np.ndarray, box) -> np.ndarray:
    return (uv[:, 0] >= box[0]) & (uv[:, 0] <= box[2]) & (uv[:, 1] >= box[1]) & (uv[:, 1] <= box[3])


def hidden_share(scene: LidarScene, idx: np.ndarray, box, gap: float) -> float:
    """Share of the non-ground returns inside ``box`` lying more than ``gap`` m in front of the nearest
    tenth of the cluster's points."""
    inb = in_box(scene.solid_uv, box)
    n = int(inb.sum())
    if n == 0:
        return 0.0
    near = float(np.percentile(scene.z[idx], 10))
    return float((scene.solid_z[inb] < near - gap).sum()) / n


def cell_keys(xy: np.ndarray, cell: float) -> np.ndarray:
    ij = np.floor(xy / cell).astype(np.int64)
    return ij[:, 0] * 1_000_003 + ij[:, 1]


def bev_components(xy: np.ndarray, cell: float) -> np.ndarray:
    """Component id per point (0..K-1) of the 8-connected occupied cells of a BEV grid of ``cell`` m."""
    if len(xy) == 0:
        return np.zeros(0, np.int64)
    ij = np.floor((xy - xy.min(0)) / cell).astype(np.int64)
    shape = ij.max(0) + 1
    grid = np.zeros(shape, bool)
    grid[ij[:, 0], ij[:, 1]] = True
    lab, _ = ndimage.label(grid, structure=np.ones((3, 3), bool))
    return lab[ij[:, 0], ij[:, 1]] - 1


def footprint(xy: np.ndarray) -> tuple[float, float]:
    """(long side, short side) of the minimum-area rectangle of BEV points (m)."""
    if len(xy) < 3:
        return 0.0, 0.0
    (_, _), (a, b), _ = cv2.minAreaRect(xy.astype(np.float32))
    return float(max(a, b)), float(min(a, b))


def split_at_valleys(xy: np.ndarray, idx: np.ndarray, cfg, depth: int = 0) -> list[np.ndarray]:
    """A cluster still longer than a car (two parked cars joined by stray returns): cut along its long
    axis at the emptiest 0.2 m slice at least ``min_length`` from both ends, recursively."""
    if depth > 4 or len(idx) < 2 * cfg.min_points or footprint(xy[idx])[0] <= cfg.max_length:
        return [idx]
    p = xy[idx] - xy[idx].mean(0)
    axis = np.linalg.svd(p, full_matrices=False)[2][0]
    t = p @ axis
    edges = np.arange(t.min(), t.max() + 0.2, 0.2)
    counts, _ = np.histogram(t, edges)
    centres = (edges[:-1] + edges[1:]) / 2
    inner = np.flatnonzero((centres > t.min() + cfg.min_length) & (centres < t.max() - cfg.min_length))
    if len(inner) == 0:
        return [idx]
    cut = centres[inner[np.argmin(counts[inner])]]
    out = []
    for part in (idx[t < cut], idx[t >= cut]):
        if len(part) >= cfg.min_points:
            out += split_at_valleys(xy, part, cfg, depth + 1)
    return out


def split_clusters(xy: np.ndarray, cfg) -> tuple[list[np.ndarray], list[bool]]:
    """Point index arrays of the clusters: components at ``cell``; those longer than a car again at
    ``split_cell`` (gaps between parked cars are often narrower than the coarse cell), and what is
    still too long at its emptiest cross-sections (:func:`split_at_valleys`). Also, per cluster,
    whether it was cut out of something longer at such a cross-section (a hedge or a wall cut into
    car-sized pieces looks like cars; so do cars parked bumper to bumper)."""
    out, cut = [], []
    comp = bev_components(xy, cfg.cell)
    order = np.argsort(comp, kind='stable')
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    for idx in np.split(order, bounds):
        if len(idx) < cfg.min_points:
            continue
        if footprint(xy[idx])[0] > cfg.max_length and cfg.split_cell < cfg.cell:
            sub = bev_components(xy[idx], cfg.split_cell)
            for k in range(sub.max() + 1):
                part = idx[sub == k]
                if len(part) >= cfg.min_points:
                    pieces = split_at_valleys(xy, part, cfg)
                    out += pieces
                    cut += [len(pieces) > 1] * len(pieces)
        else:
            out.append(idx)
            cut.append(False)
    return out, cut


def standing_box_corners(pts: np.ndarray, ground: GroundPlane, min_height: float) -> np.ndarray:
    """8 x 3 corners of the cluster's minimum-area rectangle standing on the ground, at least
    ``min_height`` tall (the band cuts off the wheels; a distant car shows only a few rings)."""
    rect = cv2.boxPoints(cv2.minAreaRect(pts[:, :2].astype(np.float32))).astype(np.float64)
    top = max(float(ground.height_above(pts).max()), min_height)
    z0 = ground.height_at(rect)
    return np.concatenate([np.column_stack([rect, z0]), np.column_stack([rect, z0 + top])])


def proposal_box(frame: SensorFrame, ground: GroundPlane, pts: np.ndarray, uv: np.ndarray,
                 cfg) -> np.ndarray | None:
    """2D box of the cluster's projected points together with the projection of its standing box
    (:func:`standing_box_corners`), widened by ``box_margin`` of its size per side (at least 2 px),
    clipped to the image."""
    margin = cfg.box_margin
    corners = standing_box_corners(pts, ground, cfg.car_height)
    cuv, cz = project(frame.K, transform_points(frame.T_cam_lidar, corners))
    if np.any(cz <= 1.0):              # the box reaches behind the camera: the points' own box
        foot = pts.copy()
        foot[:, 2] = ground.height_at(foot[:, :2])
        cuv, cz = project(frame.K, transform_points(frame.T_cam_lidar, foot))
        cuv = cuv[cz > 1.0]
    allu = np.concatenate([uv, cuv])
    x1, y1 = allu.min(0)
    x2, y2 = allu.max(0)
    mx, my = max(2.0, margin * (x2 - x1)), max(2.0, margin * (y2 - y1))
    box = np.array([x1 - mx, y1 - my, x2 + mx, y2 + my])
    box = np.clip(box, 0, [frame.width, frame.height, frame.width, frame.height])
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    return box


def lidar_proposals(frame: SensorFrame, cfg, ground: GroundPlane | None = None,
                    scene: LidarScene | None = None) -> list[LidarProposal]:
    """Car-like, visible clusters of the frame's scan as 2D box proposals, nearest first. ``cfg`` is the
    whole AutolabelConfig (``proposals``, ``ground``, ``seed``); ``ground`` skips the plane fit, ``scene``
    (:func:`lidar_scene`) the clustering as well."""
    pc = cfg.proposals
    if scene is None:
        if ground is None:
            ground = fit_ground(frame.xyz, cfg.ground, np.random.default_rng(cfg.seed))
        if ground is None:
            return []
        scene = lidar_scene(frame, ground, pc)
    xyz, h, uv, z = scene.xyz, scene.h, scene.uv, scene.z
    high_keys = np.sort(cell_keys(scene.high, pc.cell))
    props = []
    for k, idx in enumerate(scene.clusters):
        length, width = footprint(xyz[idx, :2])
        top = float(h[idx].max())
        # walls, trees and poles go on above a car's roof: their returns over the cluster's cells
        keys = np.unique(cell_keys(xyz[idx, :2], pc.cell))
        lo, hi = np.searchsorted(high_keys, keys), np.searchsorted(high_keys, keys, side='right')
        above = float((hi - lo).sum()) / len(idx)
        if above > pc.max_above:
            continue
        if not (pc.min_length <= length <= pc.max_length and width <= pc.max_width
                and pc.min_top <= top <= pc.max_top):
            continue
        box = proposal_box(frame, scene.ground, xyz[idx], uv[idx], pc)
        if box is None:
            continue
        hidden = hidden_share(scene, idx, box, pc.hidden_gap)
        if hidden > pc.max_hidden:
            continue
        n = len(idx)
        # sparse clusters are less sure: their score rises to lidar_score from min_points to 4x that
        score = pc.lidar_score * float(np.clip(n / (4.0 * pc.min_points), 0.25, 1.0))
        props.append(LidarProposal(box=box, n_points=n, depth=float(np.median(z[idx])), length=length,
                                   width=width, top=top, above=above, score=score, hidden=hidden, cluster=k,
                                   cut=bool(scene.cut[k])))
    props.sort(key=lambda p: p.depth)
    return props


def sure_car(p: LidarProposal, cfg) -> bool:
    """A proposal whose shape alone says car (``cfg``: proposals section): many points, a roof at a
    car's height, a footprint that is no pole or thin wall, little of it hidden, and (``sure_uncut``)
    not a piece cut out of something longer (hedges). On the simulator's
    streets (procedural and ApolloCar3D cars, walls, poles, bushes) no such cluster was clutter."""
    return (cfg.sure_min_points > 0 and p.n_points >= cfg.sure_min_points and not (p.cut and cfg.sure_uncut)
            and cfg.sure_min_top <= p.top <= cfg.sure_max_top and p.width >= cfg.sure_min_width
            and p.length >= cfg.sure_min_length and p.hidden <= cfg.sure_max_hidden)


def timed_lidar_proposals(frame: SensorFrame, cfg) -> tuple[list[LidarProposal], float]:
    t = time.perf_counter()
    props = lidar_proposals(frame, cfg)
    return props, time.perf_counter() - t
