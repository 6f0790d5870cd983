"""Prompt sources beyond the 2D detector: LiDAR object proposals and their fusion with the
detector's boxes (``fused`` prompts of the bag tool and the fitter node)."""
from __future__ import annotations

import dataclasses
import time

from autolabel_ros.core.types import Prompt, SensorFrame
from autolabel_ros.proposals.dedupe import reject_duplicates
from autolabel_ros.proposals.fusion import confirmed, fuse_prompts, source_counts
from autolabel_ros.proposals.lidar import LidarProposal, lidar_proposals

__all__ = ['LidarProposal', 'lidar_proposals', 'fuse_prompts', 'source_counts', 'lidar_prompts',
           'fused_prompts', 'fused_detector_config', 'reject_duplicates']


def lidar_prompts(frame: SensorFrame, cfg) -> list[Prompt]:
    """The LiDAR proposals of a frame as box prompts (source 'lidar')."""
    return [Prompt(id=i, box=p.box, cls='Car', score=p.score, sources=('lidar',))
            for i, p in enumerate(lidar_proposals(frame, cfg))]


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
    are dropped unless ``proposals.lidar_only``. Box prompts are renumbered; the timings
    ``proposals_s`` / ``proposals_cpu_s`` (wall / CPU) cover the LiDAR proposals and the fusion.
    ``cfg``: the whole AutolabelConfig."""
    t, c = time.perf_counter(), time.process_time()
    pc, thr = cfg.proposals, cfg.detector.score_threshold
    dets = [Prompt(id=p.id, box=p.box, points=p.points, point_labels=p.point_labels, cls=p.cls,
                   score=p.score, sources=('detector',)) if p.box is not None else p for p in detections]
    strong = [p for p in dets if p.box is None or p.score >= thr]
    weak = [p for p in dets if p.box is not None and pc.confirm_score <= p.score < thr]
    lidar = lidar_prompts(frame, cfg)
    keep = confirmed(lidar, weak, pc.confirm_iou)
    if pc.lidar_only:
        seen = {p.id for p in keep}
        keep += [p for p in lidar if p.id not in seen]
    out = fuse_prompts([('detector', strong), ('lidar', keep)], pc)
    # CPU time as well: on a loaded machine the wall clock says more about the neighbours
    return out, {'proposals_s': time.perf_counter() - t, 'proposals_cpu_s': time.process_time() - c,
                 'n_lidar_proposals': len(lidar)}
