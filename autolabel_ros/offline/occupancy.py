"""``autolabel-bag --occupancy [VOXEL]``: a semantic occupancy grid per frame, at assembly time.

After the labels (tracked ones with ``--tracks``: instance ids are then track ids, and the boxes the
tracker interpolated for hidden frames fill voxels too), one more pass over the input reads the
sweeps in a sliding window of ``occupancy.window`` frames on each side and writes, per frame,
``occupancy/<frame>.npz`` (:mod:`autolabel_ros.io.occupancy`) built by
:func:`autolabel_ros.track.occupancy.occupancy_grid`, plus ``occupancy/occupancy.json`` and
``report/occupancy_bev.png`` (the middle frame's grid from above). The ego poses are the tracker's,
or without ``--tracks`` those of ``--ego`` (the bag's /tf, KITTI OXTS or ICP, as for the tracks).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np

from autolabel_ros.io.bags import BagError

log = logging.getLogger(__name__)


def occupancy_config(job):
    """The job's config with ``--occupancy [VOXEL]`` applied (BagError naming the flag or key)."""
    from autolabel_ros.config import ConfigError, check_value, load_config, schema
    from autolabel_ros.track.occupancy import OccupancySettings, check_settings

    cfg = load_config(job.config)
    if job.occupancy:
        cfg.occupancy.enabled = True
    if job.occupancy_voxel is not None:
        info = next(i for i in schema() if i.name == 'occupancy.voxel')
        try:
            cfg.occupancy.voxel = check_value(info, float(job.occupancy_voxel))
        except ConfigError:
            raise BagError(f'--occupancy {job.occupancy_voxel}: the voxel edge must be in [{info.min}, '
                           f'{info.max}] m') from None
    try:
        check_settings(OccupancySettings.from_config(cfg))
    except ValueError as e:
        raise BagError(str(e)) from None
    return cfg


def ego_poses(mode: str, source, refs, records) -> tuple[Optional[dict], str]:
    """({frame index: T_world_lidar}, source name) without the tracker: /tf, OXTS, else ICP. A KITTI
    object folder without OXTS holds unrelated frames: (None, 'none'), nothing is accumulated."""
    from autolabel_ros.offline.tracking import _given_ego
    from autolabel_ros.track.ego import poses_from_icp

    by_index = {r['index']: r for r in records}
    refs = [r for r in refs if r.index in by_index]
    ego = _given_ego(mode, source, refs, [by_index[r.index] for r in refs])
    if ego is not None:
        return {r.index: T for r, T in zip(refs, ego.poses)}, ego.source
    if getattr(source, 'kind', '') == 'kitti_object' and mode == 'auto':
        log.info('occupancy: a KITTI object folder without OXTS; each frame is gridded from its own sweep')
        return None, 'none'
    read = []

    def sweeps():
        for ref, frame, _ in source.iter_frames(refs):
            read.append(ref.index)
            yield frame.points

    ego = poses_from_icp(sweeps())
    return dict(zip(read, ego.poses)), ego.source


def write_occupancy(stage: Path, cfg, source, refs, records, labels: dict, pose_of: Optional[dict],
                    instance: str, progress: bool = True) -> tuple[dict, list]:
    """Grids of every frame with a pose into ``stage/occupancy``; (info for summary.json, seconds per
    frame). ``labels``: frame index -> Label3D list (what the other outputs hold); ``pose_of`` None:
    unrelated frames, each from its own sweep."""
    from tqdm import tqdm

    from autolabel_ros.io import occupancy as fmt
    from autolabel_ros.offline.store import atomic_write_bytes
    from autolabel_ros.track.occupancy import OccupancySettings, frame_scans, grid_shape, occupancy_grid

    s = OccupancySettings.from_config(cfg)
    if pose_of is None:
        s.window = s.free_window = 0
        pose_of = {r['index']: np.eye(4) for r in records}
    name_of = {r['index']: r['name'] for r in records}
    refs = [r for r in refs if r.index in name_of and r.index in pose_of]
    w = max(s.window, s.free_window)
    buf: list = []                       # (index, points) of the frames read, oldest first
    seconds, totals = [], {}
    figure_at = refs[len(refs) // 2].index if refs else None
    bar = tqdm(total=len(refs), unit='frame', desc='occupancy', disable=not progress, dynamic_ncols=True)
    done = 0

    def emit(c: int):
        t0 = time.perf_counter()
        idx = [i for i, _ in buf]
        scans = frame_scans(c, [p for _, p in buf], [pose_of[i] for i in idx],
                            [labels.get(i, []) for i in idx], s)
        g = occupancy_grid(scans, labels.get(idx[c], []), s)
        name = name_of[idx[c]]
        atomic_write_bytes(stage / 'occupancy' / f'{name}.npz',
                           fmt.npz_bytes(fmt.grid_arrays(g.labels, g.instance, g.origin, g.voxel)))
        for k, n in g.counts().items():
            totals[k] = totals.get(k, 0) + n
        if idx[c] == figure_at:
            try:
                fmt.write_figure(stage / 'report' / 'occupancy_bev.png', g.labels, g.instance, g.origin,
                                 g.voxel, f'{name}: occupancy from above, voxel {g.voxel:g} m (car colour = '
                                 f'{instance})',
                                 [(lab.center, str(lab.id)) for lab in labels.get(idx[c], [])
                                  if lab.accepted and np.all(np.isfinite(lab.center))])
            except OSError:
                raise
            except Exception as e:   # noqa: BLE001 - a figure must not cost the grids
                log.warning('occupancy figure failed (%s: %s)', type(e).__name__, e)
        seconds.append(time.perf_counter() - t0)
        bar.update(1)

    base = nxt = 0                       # position in the drive of buf[0]; of the next frame to emit
    try:
        for ref, frame, _ in source.iter_frames(refs):
            buf.append((ref.index, np.asarray(frame.points[:, :3], np.float32)))
            while nxt + w <= base + len(buf) - 1:      # its later neighbours are all read
                emit(nxt - base)
                nxt += 1
                done += 1
            while buf and base < nxt - w:              # no frame still to emit needs it
                buf.pop(0)
                base += 1
        while nxt < base + len(buf):                   # the last frames: no later neighbours left
            emit(nxt - base)
            nxt += 1
            done += 1
    finally:
        bar.close()
    origin, shape = grid_shape(s)
    info = fmt.describe(origin, shape, s.voxel, {
        'instance': instance, 'window': s.window, 'free_window': s.free_window, 'ray_step': s.ray_step,
        'frames': done, 'voxels_by_class': dict(sorted(totals.items())),
        'made_from': 'cars: signed distance to the fitted shapes (labels\' meshes); ground / other: '
                     'returns of the frame and its neighbours; free: rays from the sensor to each return'})
    fmt.write_meta(stage / 'occupancy' / 'occupancy.json', info)
    if done < len(refs):
        log.warning('occupancy: %d of %d frames could not be read again; they have no grid', len(refs) - done,
                    len(refs))
    return info, seconds
