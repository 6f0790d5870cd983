"""Prompt sources beyond the 2D detector: LiDAR object proposals and their fusion with the
detector's boxes (``fused`` prompts of the bag tool and the fitter node)."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from autolabel_ros.core.types import Prompt, SensorFrame
from autolabel_ros.fit.ground import fit_ground
from autolabel_ros.proposals.dedupe import reject_duplicates
from autolabel_ros.proposals.evidence import box_owners, cluster_boxes, merge_same_cluster, sliver
from autolabel_ros.proposals.fusion import confirmed, fuse_prompts, iou_matrix, source_counts
from autolabel_ros.proposals.lidar import LidarProposal, LidarScene, lidar_proposals, lidar_scene, sure_car

__all__ = ['LidarProposal', 'LidarScene', 'lidar_proposals', 'lidar_scene', 'fuse_prompts', 'source_counts',
           'lidar_prompts', 'fused_prompts', 'fused_detector_config', 'reject_duplicates', 'frame_scene',
           'screen_by_lidar', 'box_owners', 'cluster_boxes', 'merge_same_cluster', 'sliver']


def lidar_prompts(frame: SensorFrame, cfg, scene: LidarScene | None = None) -> list[Prompt]:
    """The LiDAR proposals of a frame as box prompts (source 'lidar')."""
    return [Prompt(id=i, box=p.box, cls='Car', score=p.score, sources=('lidar',))
            for i, p in enumerate(lidar_proposals(frame, cfg, scene=scene))]


def frame_scene(frame: SensorFrame, cfg) -> LidarScene | None:
    """The LiDAR scene of the proposals (None without a ground plane)."""
    ground = fit_ground(frame.xyz, cfg.ground, np.random.default_rng(cfg.seed))
    return None if ground is None else lidar_scene(frame, ground, cfg.proposals)


def screen_by_lidar(prompts: list[Prompt], scene: LidarScene | None, cboxes: np.ndarray | None,
                    cfg, frame_width: float = np.inf) -> list[Prompt]:
    """The fused box prompts kept: tall enough (``proposals.min_box_height``), not a sliver
    (:func:`sliver`, ``min_box_aspect``; ``frame_width``: the image's), with LiDAR returns
    (``min_box_points``), a detection alone only when strong (``alone_min_score``) or agreeing with a
    cluster's box (``min_agreement``), one per object (:func:`merge_same_cluster`); renumbered, best
    first.
    Clicks pass. ``cboxes``: the scene's :func:`cluster_boxes`."""
    pc = cfg.proposals
    boxes = [p for p in prompts if p.box is not None and p.box[3] - p.box[1] >= pc.min_box_height
             and not sliver(p.box, pc.min_box_aspect, frame_width)]
    clicks = [p for p in prompts if p.box is None]
    if scene is not None and boxes:
        own, agree, n = box_owners(scene, cboxes, [p.box for p in boxes], pc.owner_iou)
        # a detection alone, not strong, whose box no cluster's agrees with: a fragment or clutter
        alone = np.array([tuple(p.sources) == ('detector',) and p.score < pc.alone_min_score for p in boxes])
        keep = np.flatnonzero((n >= pc.min_box_points) & ~(alone & (agree < pc.min_agreement)))
        own = own[keep]
        depth = np.array([np.median(scene.z[scene.clusters[k]]) if k >= 0 else np.nan for k in own])
        boxes = merge_same_cluster([boxes[k] for k in keep], own, pc.same_cluster_overlap,
                                   agree[keep] if pc.merge_keep == 'cluster' else None, depth,
                                   pc.nms_iou, pc.nms_depth_gap)
    boxes.sort(key=lambda p: -p.score)
    return [dataclasses.replace(p, id=i) for i, p in enumerate(boxes)] + clicks


def _low_needs_detection(props: list[LidarProposal], weak: list[Prompt], pc) -> np.ndarray:
    """proposals x weak detections: may the detection confirm the proposal? A proposal whose top lies
    below ``sure_min_top`` has no car roof in the band (a bush, a low wall, a bonnet seen over a wall;
    a real car shows that low only when few rings reach it), and a detection barely above the noise
    (below ``confirm_low_score``: dozens a frame, anywhere) does not make it a car; a stronger one does."""
    low = np.array([q.top < pc.sure_min_top for q in props])
    enough = np.array([w.score >= pc.confirm_low_score for w in weak])
    return ~low[:, None] | enough[None, :]


def fused_detector_config(cfg):
    """The detector settings for fused prompts: the detections down to ``proposals.confirm_score``
    are wanted (the weak ones only confirm LiDAR proposals), from at least
    ``proposals.detector_tiles`` tiles."""
    d, pc = cfg.detector, cfg.proposals
    return dataclasses.replace(d, score_threshold=min(d.score_threshold, pc.confirm_score),
                               tiles=max(d.tiles, pc.detector_tiles))


def fused_prompts(frame: SensorFrame, detections: list[Prompt], cfg) -> tuple[list[Prompt], dict]:
    """One prompt per object from the detections and the LiDAR proposals. Detections scoring at least
    ``detector.score_threshold`` are prompts; weaker ones only confirm a LiDAR proposal they overlap
    (``proposals.confirm_iou``), which then becomes a prompt with its LiDAR box; unconfirmed proposals
    are dropped unless their shape alone says car (:func:`sure_car`) or ``proposals.lidar_only``.
    Then the screening by the LiDAR (:func:`screen_by_lidar`). Box prompts are renumbered; the timings
    ``proposals_s`` / ``proposals_cpu_s`` (wall / CPU) cover the LiDAR proposals and the fusion.
    ``cfg``: the whole AutolabelConfig."""
    t, c = time.perf_counter(), time.process_time()
    pc, thr = cfg.proposals, cfg.detector.score_threshold
    dets = [Prompt(id=p.id, box=p.box, points=p.points, point_labels=p.point_labels, cls=p.cls,
                   score=p.score, sources=('detector',)) if p.box is not None else p for p in detections]
    strong = [p for p in dets if p.box is None or p.score >= thr]
    # a strong detection confirms as well (confirm_strong): its box of a far or half-hidden car is often cut
    # short, the proposal's box of the same cluster is then the better prompt (screen_by_lidar picks)
    top = 1.1 if pc.confirm_strong else thr
    weak = [p for p in dets if p.box is not None and pc.confirm_score <= p.score < top]
    scene = frame_scene(frame, cfg)
    props = lidar_proposals(frame, cfg, scene=scene) if scene is not None else []
    lidar = [Prompt(id=i, box=p.box, cls='Car', score=p.score, sources=('lidar',))
             for i, p in enumerate(props)]
    cboxes = cluster_boxes(frame, scene, pc) if scene is not None else None
    same = None
    if pc.confirm_same_cluster and scene is not None and lidar and weak:
        # a weak detection confirms the proposal of the cluster it covers (not a clump behind it), or
        # one it matches closely
        weak_owner = box_owners(scene, cboxes, [p.box for p in weak], pc.owner_iou)[0]
        same = np.array([p.cluster for p in props])[:, None] == weak_owner[None, :]
        same |= iou_matrix(np.array([p.box for p in lidar]), np.array([p.box for p in weak]))[0] >= 0.5
    if lidar and weak:
        ok = _low_needs_detection(props, weak, pc)
        same = ok if same is None else same & ok
    keep = confirmed(lidar, weak, pc.confirm_iou, same)
    seen = {p.id for p in keep}
    # without a detection: every proposal (lidar_only), or those whose shape alone says car
    keep += [p for p, q in zip(lidar, props) if p.id not in seen and (pc.lidar_only or sure_car(q, pc))]
    # sparse: as the proposal score counts it (fewer than 4 x min_points)
    sparse = frozenset(p.id for p, q in zip(lidar, props) if q.n_points < 4 * pc.min_points)
    fused = fuse_prompts([('detector', strong), ('lidar', keep)], pc, sparse)
    out = screen_by_lidar(fused, scene, cboxes, cfg, frame.width)
    # CPU time as well: on a loaded machine the wall clock says more about the neighbours
    return out, {'proposals_s': time.perf_counter() - t, 'proposals_cpu_s': time.process_time() - c,
                 'n_lidar_proposals': len(lidar)}
