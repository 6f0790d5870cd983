"""The curriculum loop (SDFLabel section 6, ``autolabel-curriculum``).

Loop k (level ``levels[k-1]``, the last one repeating):
1. autolabel every frame of the unlabeled logs with the pseudo-labeler (``label_method``: ``slf`` by
   default, whose headings do not come from the network being trained; ``sdflabel`` / ``hybrid`` use
   the current network) (prompts from the detector fused with the LiDAR proposals, or the LiDAR
   proposals alone, or the logs' own ground-truth boxes where they have them; the prompts of a frame
   are computed once per run, its SAM masks once per output folder (``masks/``), reused by every loop
   and every rerun);
2. keep the verified labels of the level (:mod:`autolabel_ros.curriculum.levels`): accepted, calibrated
   P(right) >= ``min_right``, front/back decided (``heading_logit`` >= ``min_heading_logit``), and render
   their NOCS targets (:mod:`autolabel_ros.curriculum.targets`): the real pool of this loop;
3. fine-tune the network from the starting weights again (``start: init``, the default, so a loop's
   steps do not add to the earlier loops' drift; ``previous``: from the current weights) on the real
   pool mixed half and half with simulator samples (ground-truth NOCS, the synthetic bootstrap's data, so
   the network does not forget what the simulator taught it);
4. evaluate on the labelled frames given (KITTI object layout, ground-truth boxes as prompts,
   ``method: sdflabel``): AP3D / BEV, flips, per loop (loop 0 = the starting weights).

Every weight file goes under the run's output folder (fine-tuned on the user's data: never into the
package).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autolabel_ros.core.types import wrap_angle
from autolabel_ros.curriculum.levels import LEVELS, level_rule, passes
from autolabel_ros.curriculum.stats import car_summary, plot_seeds, seeds_table
from autolabel_ros.curriculum.targets import label_sample, mask_agreement, mesh_silhouette


@dataclass
class CurriculumSettings:
    loops: int = 2
    levels: tuple = ('easy', 'moderate')
    steps: int = 150                 # fine-tuning Adam steps per loop
    lr: float = 1e-4                 # fine-tuning lr (1e-3 undid the bootstrap, 3e-4 less: docs/SDFLABEL.md)
    batch: int = 32
    sim_frames: int = 40             # simulator frames of ground-truth NOCS samples mixed in
    max_frames: int = 0              # frames per log (0 = all)
    prompts: str = 'fused'           # fused | lidar | gt
    min_confidence: float = 0.5      # verified = accepted and at least this label score ...
    # ... and this calibrated P(right) (metrics['confidence']) and this heading logit (the front/back
    # choice's confidence; 1.0 = fit/verify.HEADING_LOGIT_CAP, where the accept model calls it decided)
    min_right: float = 0.8
    min_heading_logit: float = 1.0
    # the share of a label's 2D box any nearer box may cover, at every level (levels.level_rule): the
    # moderate level's IoU rule let cars through whose roof alone showed above the car ahead (0.5: 7 points
    # fewer flips after loop 2 in 5 of 5 seeds, docs/SDFLABEL.md; 1.0 = the IoU rule alone)
    max_cover: float = 0.5
    # a kept label's SAM mask must agree with its fitted mesh's silhouette (IoU over the pixels no nearer
    # mask hides) at least this much: else its NOCS targets teach a shape the image does not show (0 = off)
    min_mask_agree: float = 0.0
    # the pseudo-labeler: slf (headings from geometry and the fit's cues, not from the network being
    # trained: the network's own front/back errors are not fed back to it), hybrid or sdflabel
    label_method: str = 'slf'
    seed: int = 0
    # fine-tuning seed (None = seed): a rerun of a folder on the same pools measures its noise
    train_seed: int | None = None
    # several fine-tuning seeds: one chain of loops each (weights under seed<k>/), on the same pools and
    # evaluation cars, summarised per loop (mean +- std) with paired loop-to-loop tests (stats.py)
    train_seeds: tuple = ()
    real_share: float = 0.5          # share of the fine-tuning set that is real (the rest: simulator)
    # what the fine-tuning may change (css/train.TUNE_MODES: all | frozen-bn | decoder | head)
    tune: str = 'all'
    # track consistency of the pool (curriculum/tracks.py): off | fix (turn a kept label whose heading
    # points against its track's) | drop (leave it out) | add (fix, and an accepted label that failed only
    # the front/back verification takes its track's heading); tracks of fewer than min_track frames have
    # no say
    track_headings: str = 'off'
    min_track: int = 3
    # none | track: a car's (a track's of the pool's log) share of the real samples grows as the square root
    # of its samples, so the cars a later level adds are not outnumbered by the one kept in every frame
    balance: str = 'none'
    # init | previous: loop k fine-tunes from the starting weights again (on loop k's pool, which holds the
    # earlier levels' cars too; the labeller still uses loop k-1's network), or from loop k-1's weights.
    # Continuing cost loop 2 6.9 points AP3D@0.5 mod against init (11 of 12 paired seeds, held-out KITTI
    # cars, docs/SDFLABEL.md): the second 100 steps drift from the bootstrap whatever the level
    start: str = 'init'
    extra: dict = field(default_factory=dict)


class CurriculumError(ValueError):
    """Bad input of a curriculum run (the message names the path or key)."""


def open_log(path: Path, gt_topic: str | None = None):
    """A frame source of a KITTI raw drive, a KITTI object folder or a rosbag2 (the bag tool's readers);
    ``gt_topic``: a bag's Detection2DArray topic whose boxes are the ground-truth prompts."""
    from autolabel_ros.io.bags import BagError, BagSource
    from autolabel_ros.io.kitti_raw import KittiObjectSource, KittiRawSource, is_kitti_object, is_kitti_raw
    try:
        if path.is_dir() and is_kitti_raw(path):
            return KittiRawSource(path)
        if path.is_dir() and is_kitti_object(path):
            return KittiObjectSource(path)
        return BagSource(path, prompts_topic=gt_topic)
    except BagError as exc:
        raise CurriculumError(str(exc)) from exc


class MaskCache:
    """SAM masks per frame, in memory and under ``folder`` (``<key>.npz``): they depend on the image and
    the prompts only, not on the network, so every loop and a rerun of the same folder reuse them."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self.mem: dict = {}

    def get(self, key: str, n: int):
        if key in self.mem:
            return self.mem[key]
        path = self.folder / f'{key}.npz' if self.folder else None
        if path is not None and path.is_file():
            with np.load(path) as z:
                masks = [m if ok else None for m, ok in zip(z['masks'], z['ok'])]
            if len(masks) == n:            # the prompts changed (another detector): recompute
                self.mem[key] = masks
                return masks
        return None

    def put(self, key: str, masks: list, shape) -> None:
        self.mem[key] = masks
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        arr = np.stack([np.zeros(shape, bool) if m is None else np.asarray(m, bool) for m in masks]) \
            if masks else np.zeros((0,) + tuple(shape), bool)
        ok = np.array([m is not None for m in masks])
        np.savez_compressed(self.folder / f'{key}.npz', masks=arr, ok=ok)


def run_key(weights, cfg, **parts) -> str:
    """Digest of what a loop's autolabel pass or evaluation depends on: the weights' bytes, the whole
    pipeline config and the caller's parts (level, frames, prompt mode ...)."""
    import hashlib

    from autolabel_ros.config import to_flat_dict
    h = hashlib.blake2b(Path(weights).read_bytes(), digest_size=12)
    h.update(json.dumps(to_flat_dict(cfg), sort_keys=True, default=str).encode())
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return h.hexdigest()


class ResultCache:
    """Results of autolabel passes and evaluations under ``folder`` by :func:`run_key`: a rerun of the
    same folder (or a loop whose weights did not change) pays nothing for them again."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get_eval(self, key: str) -> dict | None:
        p = self.folder / f'eval_{key}.json'
        return json.loads(p.read_text()) if p.is_file() else None

    def put_eval(self, key: str, r: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f'eval_{key}.json').write_text(json.dumps(r, default=float))

    def get_pool(self, key: str):
        p = self.folder / f'pool_{key}.npz'
        if not p.is_file():
            return None
        from autolabel_ros.sim.nocs import NocsSample
        with np.load(p) as z:
            counts = json.loads(str(z['counts']))
            samples = [NocsSample(rgb=z['rgb'][i], mask=z['mask'][i], nocs=z['nocs'][i], dims=z['dims'][i],
                                  facing=float(z['facing'][i])) for i in range(len(z['facing']))]
        return samples, counts

    def put_pool(self, key: str, samples: list, counts: dict) -> None:
        from autolabel_ros.sim.nocs import stack_samples
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = stack_samples(samples) if samples else {}
        np.savez_compressed(self.folder / f'pool_{key}.npz', counts=json.dumps(counts), **arrays)


class _FrameCache:
    """Prompts per frame (computed once per run) and the SAM masks (:class:`MaskCache`)."""

    def __init__(self, folder: Path | None = None):
        self.prompts: dict = {}
        self.masks = MaskCache(folder)
        # (labeler key, frame key) -> LabelResult of a labeler that ignores the network (slf)
        self.results: dict = {}


def _log_prompts(frame, src, ref, mode: str, cfg, detector):
    from autolabel_ros.proposals import fused_prompts, lidar_prompts
    if mode == 'gt':
        return list(src.gt_prompts(ref) or [])
    if mode == 'lidar':
        return lidar_prompts(frame, cfg)
    return fused_prompts(frame, detector.detect(frame.image), cfg)[0]


def _label_frame(al, src, ref, key: str, cache: _FrameCache, st: CurriculumSettings, detector, n: dict,
                 cpu: dict, log, reuse_key: str | None):
    """(frame, prompts, LabelResult or None without prompts) of one frame, the labeler's result reused
    when it does not depend on the network (``reuse_key``)."""
    frame = src.load(ref)
    c0 = time.process_time()
    if key not in cache.prompts:
        cache.prompts[key] = _log_prompts(frame, src, ref, st.prompts, al.cfg, detector)
    prompts = cache.prompts[key]
    cpu['prompts'] += time.process_time() - c0
    if not prompts:
        return frame, prompts, None
    t0 = time.perf_counter()
    res = cache.results.get((reuse_key, key)) if reuse_key else None
    if res is None:
        res = al.label(frame, prompts, cache.masks.get(key, len(prompts)))
        n['fit_s'] += time.perf_counter() - t0
        tm = res.timings
        seg_cpu = tm['cpu_s'] * tm['segment_s'] / max(tm['total_s'], 1e-9)     # wall share of the CPU
        cpu['segment'] += seg_cpu
        cpu['label'] += tm['cpu_s'] - seg_cpu
        log(f'  {key}: {len(prompts)} prompts, {time.perf_counter() - t0:.0f} s wall, '
            f'{tm["cpu_s"]:.1f} s CPU (SAM {seg_cpu:.1f})')
        if reuse_key:
            cache.results[(reuse_key, key)] = res
    cache.masks.put(key, res.masks, frame.image.shape[:2])
    return frame, prompts, res


def pool_track_headings(al, logs: list, cache: _FrameCache, st: CurriculumSettings, detector, n: dict,
                        cpu: dict, log, reuse_key: str | None) -> dict:
    """(log, frame position, label index) -> the label's track heading (:mod:`.tracks`), every frame of
    every log labelled first (the labels are reused by the pass that keeps them when ``reuse_key``)."""
    from autolabel_ros.curriculum.tracks import log_track_headings
    out = {}
    for li, (src, refs) in enumerate(logs):
        frames, results = [], []
        for ref in refs:
            frame, _, res = _label_frame(al, src, ref, f'log{li}_{ref.name}', cache, st, detector, n, cpu,
                                         log, reuse_key)
            frames.append(frame)
            results.append(res.labels if res is not None else [])
        c0 = time.process_time()
        for (f, k), th in log_track_headings(frames, results, st.min_track).items():
            out[(li, f, k)] = th
        cpu['tracks'] = cpu.get('tracks', 0.0) + time.process_time() - c0
    return out


def autolabel_pool(al, logs: list, cache: _FrameCache, st: CurriculumSettings, level: str, detector,
                   rng: np.random.Generator, log=print, reuse_key: str | None = None) -> tuple[list, dict]:
    """NOCS samples of the verified labels of ``level`` in the logs, and counts. ``reuse_key``: the
    labeler's key when its labels do not depend on the network (slf): a later level reuses them.
    ``st.track_headings`` fix / drop: a kept label whose heading points against its track's is turned /
    left out (:mod:`autolabel_ros.curriculum.tracks`); the counts record how many, among the verified
    labels too (the pool's track-flip rate); add: also the accepted labels that are not verified but
    tracked, turned to their track's heading."""
    from autolabel_ros.curriculum.tracks import disagrees, turned
    samples = []
    n = {'frames': 0, 'labels': 0, 'accepted': 0, 'verified': 0, 'disagree': 0, 'kept': 0, 'samples': 0,
         'fit_s': 0.0, 'groups': []}
    # where the pass's CPU goes (process CPU seconds: load-robust): prompts, SAM, CSS + fit, targets
    cpu = {'prompts': 0.0, 'segment': 0.0, 'label': 0.0, 'targets': 0.0}
    heads = {}
    if st.track_headings != 'off' or st.balance == 'track':
        reuse_key = reuse_key or f'pass{id(al)}'          # the pass below reuses the tracked pass's labels
        heads = pool_track_headings(al, logs, cache, st, detector, n, cpu, log, reuse_key)
        n.update({'verified_tracked': 0, 'verified_track_flipped': 0, 'kept_tracked': 0,
                  'kept_track_flipped': 0, 'kept_moving': 0, 'kept_track_frames': [], 'track_verified': 0,
                  'track_verified_turned': 0})
    for li, (src, refs) in enumerate(logs):
        for fi, ref in enumerate(refs):
            key = f'log{li}_{ref.name}'
            frame, prompts, res = _label_frame(al, src, ref, key, cache, st, detector, n, cpu, log, reuse_key)
            n['frames'] += 1
            if res is None:
                continue
            c0 = time.process_time()
            boxes = [p.bounding_box() for p in prompts]
            # the level's overlap rules count the objects that can hide a label: the nearer ones (a car in
            # front of a parked row overlaps the boxes behind it but is fully visible); unknown depth counts
            depth = [float(np.linalg.norm(lab.center[:2])) for lab in res.labels]
            for k, lab in enumerate(res.labels):
                n['labels'] += 1
                if not lab.accepted or lab.score < st.min_confidence:
                    continue
                n['accepted'] += 1
                th = heads.get((li, fi, k))
                against = th is not None and disagrees(lab.yaw, th.yaw)
                flipped = against and st.track_headings != 'off'        # acted on (fix, drop, add)
                if not verified(lab, st):
                    # add: an accepted label whose own front/back was undecided takes its track's
                    if st.track_headings != 'add' or th is None:
                        continue
                    n['track_verified'] += 1
                    n['track_verified_turned'] += int(against)
                else:
                    n['verified'] += 1
                    if th is not None:
                        n['verified_tracked'] += 1
                        n['verified_track_flipped'] += int(against)
                others = [b for j, b in enumerate(boxes) if j != k and not depth[j] > depth[k]]
                if not passes(boxes[k], others, frame.width, frame.height, level, max_cover=st.max_cover):
                    continue
                agree = agreement(frame, res, k, depth)
                n.setdefault('mask_agree', []).append(round(agree, 3))
                if agree < st.min_mask_agree:
                    n['disagree'] += 1
                    continue
                if th is not None:
                    n['kept_tracked'] += 1
                    n['kept_track_flipped'] += int(against)
                    n['kept_moving'] += int(th.moving)
                    n['kept_track_frames'].append(th.frames)
                    n.setdefault('track_yaw_gap_deg', []).append(
                        round(float(np.degrees(abs(wrap_angle(lab.yaw - th.yaw)))), 1))
                if flipped:
                    if st.track_headings == 'drop':
                        continue
                    lab = turned(lab)
                n['kept'] += 1
                s = label_sample(frame, lab, res.masks[k], rng)
                if s is not None:
                    samples.append(s)
                    # the car it shows: its track, else a car of its own
                    n['groups'].append(f'{li}:{th.track}' if th is not None else f'{li}:{fi}:{k}')
            cpu['targets'] += time.process_time() - c0
    n['samples'] = len(samples)
    n['cpu_s'] = {k: round(v, 1) for k, v in cpu.items()}
    return samples, n


def agreement(frame, res, k: int, depth: list) -> float:
    """IoU of label k's mask and its fitted mesh's silhouette over the pixels the masks of nearer labels
    do not hide (:func:`targets.mask_agreement`)."""
    mask = res.masks[k]
    if mask is None:
        return 0.0
    hidden = np.zeros(mask.shape, bool)
    for j, m in enumerate(res.masks):
        if j != k and m is not None and depth[j] < depth[k]:
            hidden |= m
    return mask_agreement(mask, mesh_silhouette(frame, res.labels[k]), hidden)


def verified(lab, st: CurriculumSettings) -> bool:
    """An accepted label good enough to teach the network: likely right and its front/back decided (a
    flipped pseudo-label renders NOCS targets that teach the flip)."""
    m = lab.metrics or {}
    # heading_logit is inf when no hypothesis heading the other way survived the fit (decided)
    return float(m.get('confidence', 0.0)) >= st.min_right \
        and float(m.get('heading_logit', np.inf)) >= st.min_heading_logit


def network_end_reads(css, frame, prompts, masks, objs, calib, min_facing: float = 0.3) -> list:
    """Per prompt (a ground-truth car): whether the network reads its end right (the sign of its NOCS
    facing), or None where no end faces the camera (|cos| <= ``min_facing``)."""
    from autolabel_ros.css.cue import hypothesis_facing
    from autolabel_ros.io.kitti import kitti_to_label3d
    out = []
    for p, pred in zip(prompts, css.predict(frame.image, masks)):
        gt = kitti_to_label3d(objs[p.id], calib)
        ft = hypothesis_facing(np.r_[gt.center, gt.yaw], frame.T_cam_lidar)
        out.append(bool(pred is not None and pred.facing() * ft > 0) if abs(ft) > min_facing else None)
    return out


def network_ends(css, frame, prompts, masks, objs, calib, min_facing: float = 0.3) -> list[bool]:
    """Per ground-truth car of a frame whose end faces the camera (|cos| > ``min_facing``): whether the
    network reads that end right (the sign of its NOCS facing). What the curriculum trains, on every
    car, not only on the ones the fit matches (less noisy than the AP and flip rate of ~20 cars)."""
    reads = network_end_reads(css, frame, prompts, masks, objs, calib, min_facing)
    return [r for r in reads if r is not None]


def car_records(fid: str, prompts, labels, objs, calib, ends) -> list[dict]:
    """Per ground-truth car (prompted by its box): 3D IoU and heading error of its fitted box, accepted
    or not, and the network's end read. Every car counts, so a loop's change is seen on all of them
    (the AP sees the ~20 matched moderate cars and jumps by a car's worth at a time)."""
    from autolabel_ros.eval.iou import iou3d_lidar
    from autolabel_ros.io.kitti import kitti_to_label3d
    out = []
    for p, lab, end in zip(prompts, labels, ends):
        gt = kitti_to_label3d(objs[p.id], calib)
        ok = bool(np.all(np.isfinite(lab.center)))
        out.append({'car': f'{fid}/{p.id}', 'iou3d': iou3d_lidar(lab.box7, gt.box7) if ok else 0.0,
                    'yaw_err_deg': float(np.degrees(abs(wrap_angle(lab.yaw - gt.yaw)))) if ok else 180.0,
                    'accepted': bool(lab.accepted), 'end_right': end})
    return out


def evaluate_weights(cfg, weights: Path | str, eval_dir: Path, frames, workdir: Path,
                     cache: MaskCache) -> dict:
    """AP of ``method: sdflabel`` with these weights on labelled KITTI-layout frames (GT boxes, SAM
    masks cached across loops in ``cache`` under the keys ``eval_<frame id>``)."""
    from autolabel_ros.eval import evaluate
    from autolabel_ros.io.kitti import KittiObjectDataset, label3d_to_kitti, write_label_file
    from autolabel_ros.io.kitti_policy import kitti_predictions
    from autolabel_ros.pipeline import Autolabeler
    c = dataclasses.replace(cfg, css=dataclasses.replace(cfg.css, weights=str(weights)))
    al = Autolabeler(c)
    ds = KittiObjectDataset(eval_dir)
    fids = list(frames) if frames else ds.frame_ids
    workdir.mkdir(parents=True, exist_ok=True)
    per_inst, cars = [], []
    for fid in fids:
        frame, calib = ds.load_frame(fid), ds.calib(fid)
        prompts = ds.prompts(fid, mode='gt-boxes', seed=c.seed)
        res = al.label(frame, prompts, cache.get(f'eval_{fid}', len(prompts)))
        cache.put(f'eval_{fid}', res.masks, frame.image.shape[:2])
        if prompts:
            per_inst.append(res.timings['per_instance_s'])
            ends = network_end_reads(al.css, frame, prompts, res.masks, ds.labels(fid), calib)
            cars += car_records(fid, prompts, res.labels, ds.labels(fid), calib, ends)
        objs = [label3d_to_kitti(lab, calib, frame.width, frame.height)
                for lab in kitti_predictions(res.labels, c.verify.min_confidence)]
        write_label_file(workdir / f'{fid}.txt', objs)
    r = evaluate(ds.root / 'label_2', workdir, fids)
    return {'3D@0.5_mod': r['3D@0.5']['moderate'], '3D@0.7_mod': r['3D@0.7']['moderate'],
            '3D@0.5_easy': r['3D@0.5']['easy'], 'BEV@0.7_mod': r['BEV@0.7']['moderate'],
            'flip_rate': r['flip_rate'], 'n_gt': r['n_gt'], 'n_matched': r['n_matched'],
            **car_summary(cars), 'cars': cars,
            's_per_instance': float(np.median(per_inst)) if per_inst else None}


def sim_pool(n_frames: int, out: Path, log=print) -> dict | None:
    """Ground-truth NOCS samples of ``n_frames`` simulator frames (seeds of their own), cached in out."""
    if n_frames <= 0:
        return None
    from autolabel_ros.css.train import load_chunks
    from autolabel_ros.sim.nocs import CSS_SEED_BASE, write_sample_chunks
    paths = write_sample_chunks([CSS_SEED_BASE + 300000 + k for k in range(n_frames)], out, log=log)
    return load_chunks(paths) if paths else None


def mixed(real: dict, sim: dict | None, real_share: float = 0.5, groups=None) -> dict:
    """Real samples repeated to about ``real_share`` of the training set when simulator samples are
    mixed in (the rest: the synthetic bootstrap's samples, replayed so the network keeps them).
    ``groups``: per real sample the car it shows (its track): a car's share of the real part then grows
    as the square root of its samples, not linearly (the car kept in every frame would drown the cars a
    later level adds), nor equal for all (a car kept in one frame would be one patch repeated ~80 times)."""
    if sim is None or not len(sim['rgb']):
        return real
    share = float(np.clip(real_share, 0.01, 0.99))
    n = len(real['rgb'])
    target = share / (1 - share) * len(sim['rgb'])
    if groups is None:
        reps = np.full(n, max(1, int(round(target / max(1, n)))))
    else:
        g = np.asarray(groups)
        _, inv, size = np.unique(g, return_inverse=True, return_counts=True)
        w = 1.0 / np.sqrt(size[inv])
        reps = np.maximum(1, np.round(target * w / w.sum())).astype(int)
    idx = np.repeat(np.arange(n), reps)
    return {k: np.concatenate([real[k][idx], sim[k]]) for k in real}


def trained_losses(wpath: Path, train_key: str) -> list | None:
    """The training losses of ``wpath`` when an earlier run trained it with this key, else None."""
    if not wpath.is_file():
        return None
    import torch
    meta = torch.load(wpath, map_location='cpu', weights_only=True).get('meta', {})
    return json.loads(meta['losses']) if meta.get('train_key') == train_key else None


def pool_sources(logs, st, cfg):
    """The pool's logs opened, each with its frame references (the first ``st.max_frames`` when set), and
    the detector of ``st.prompts == 'fused'`` (else None)."""
    from autolabel_ros.io.bags import BagError
    from autolabel_ros.sim.writers import TOPICS
    sources = []
    for p in logs:
        src = open_log(Path(p), TOPICS['gt2d'][0] if st.prompts == 'gt' else None)
        try:
            refs = src.index()
        except BagError as exc:
            raise CurriculumError(str(exc)) from exc
        sources.append((src, refs[:st.max_frames] if st.max_frames else refs))
    detector = None
    if st.prompts == 'fused':
        from autolabel_ros.detect import make_detector
        from autolabel_ros.proposals import fused_detector_config
        detector = make_detector(fused_detector_config(cfg), 'cpu')
    return sources, detector


def run(logs: list[Path], out: Path, eval_dir: Path | None, eval_frames, st: CurriculumSettings,
        cfg, init_weights: str = '', log=print) -> dict:
    """The whole curriculum; writes ``out/loop<k>/css.pt``, ``out/curriculum.json``, ``.md`` and ``.png``;
    returns the report."""
    from autolabel_ros.css.predict import DEFAULT_WEIGHTS
    from autolabel_ros.css.train import load_net, save_weights, to_tensors, train
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.sim.nocs import stack_samples
    for lv in st.levels:
        if lv not in LEVELS:
            raise CurriculumError(f'--levels: unknown level {lv!r}; allowed: {", ".join(LEVELS)}')
    sources, detector = pool_sources(logs, st, cfg)
    cfg = dataclasses.replace(cfg, method='sdflabel')
    start_weights = Path(init_weights) if init_weights else DEFAULT_WEIGHTS
    weights = start_weights
    rng = np.random.default_rng(st.seed)
    cache, eval_cache = _FrameCache(out / 'masks'), MaskCache(out / 'masks')
    results = ResultCache(out / 'results')
    sim = sim_pool(st.sim_frames, out / 'sim_samples', log)
    report = {'settings': dataclasses.asdict(st), 'logs': [str(p) for p in logs], 'loops': []}

    def evaluate_loop(k: int, w) -> dict:
        if eval_dir is None:
            return {}
        key = run_key(w, cfg, eval_dir=str(eval_dir), frames=eval_frames, metrics='per_car')
        r = results.get_eval(key)
        if r is not None:
            return dict(r, cached=True)
        t0, c0 = time.perf_counter(), time.process_time()
        r = evaluate_weights(cfg, w, eval_dir, eval_frames, out / f'loop{k}' / 'eval_labels', eval_cache)
        r['eval_s'] = round(time.perf_counter() - t0, 1)
        r['eval_cpu_s'] = round(time.process_time() - c0, 1)
        results.put_eval(key, r)
        return r

    row = {'loop': 0, 'level': '-', 'weights': str(weights), **evaluate_loop(0, weights)}
    log(_row_text(row))
    explicit = st.train_seed is not None or bool(st.train_seeds)
    seeds = list(st.train_seeds) or [st.seed if st.train_seed is None else st.train_seed]
    chains = {}
    for seed in seeds:
        report['loops'] = [row]
        wdir = out / f'seed{seed}' if st.train_seeds else out
        chains[seed] = report['loops']
        if st.train_seeds:
            log(f'fine-tuning seed {seed}')
        weights = start_weights
        for k in range(1, st.loops + 1):
            level = st.levels[min(k - 1, len(st.levels) - 1)]
            t0, c0 = time.perf_counter(), time.process_time()
            c = dataclasses.replace(cfg, css=dataclasses.replace(cfg.css, weights=str(weights)))
            # the pseudo-labeler's config; slf does not read the network: its pool depends on the level only
            lab_w = DEFAULT_WEIGHTS if st.label_method == 'slf' else weights
            lc = dataclasses.replace(cfg, method=st.label_method,
                                     css=dataclasses.replace(cfg.css, weights=str(lab_w)))
            # the cleaning settings enter the key only when on: the pools of earlier runs stay valid
            clean = ({'mask_agree': st.min_mask_agree} if st.min_mask_agree > 0 else {}) | \
                ({'track': st.track_headings, 'min_track': st.min_track} if st.track_headings != 'off'
                 else {}) | ({'balance': st.balance} if st.balance != 'none' else {})
            pool_key = run_key(lab_w, lc, level=level_rule(level, st.max_cover), **clean,
                               logs=[str(p) for p in logs],
                               max_frames=st.max_frames, prompts=st.prompts, min_confidence=st.min_confidence,
                               min_right=st.min_right, min_heading_logit=st.min_heading_logit,
                               overlap='nearer', seed=st.seed, loop=k if st.label_method != 'slf' else 0)
            hit = results.get_pool(pool_key)
            if hit is None:
                reuse = run_key(lab_w, lc) if st.label_method == 'slf' else None
                samples, counts = autolabel_pool(Autolabeler(lc), sources, cache, st, level, detector, rng,
                                                 log, reuse)
                results.put_pool(pool_key, samples, counts)
            else:
                samples, counts = hit
            t_label, c_label = time.perf_counter() - t0, time.process_time() - c0
            if not samples:
                log(f'loop {k}: no verified {level} labels in the logs; stopping')
                break
            t1, c1 = time.perf_counter(), time.process_time()
            wpath = wdir / f'loop{k}' / 'css.pt'
            train_seed = seed
            # keys of the first version (one seed, half real) stay valid: an old folder is reused
            extra = ({'seed': train_seed} if explicit else {}) | \
                ({'real_share': st.real_share} if st.real_share != 0.5 else {}) | \
                ({'tune': st.tune} if st.tune != 'all' else {}) | \
                ({'balance': st.balance} if st.balance != 'none' else {})
            # the key hashes the start weights' bytes: loop 1 is the same training in both start modes
            start_w = weights if st.start == 'previous' else start_weights
            train_key = run_key(start_w, c, pool=pool_key, steps=st.steps, lr=st.lr, batch=st.batch,
                                sim_frames=st.sim_frames, **extra)
            losses = trained_losses(wpath, train_key)
            if losses is None:      # not trained by an earlier run of this folder from the same start
                groups = counts.get('groups') if st.balance == 'track' else None
                data = to_tensors(mixed(stack_samples(samples), sim, st.real_share, groups))
                net, losses = train(data, st.steps, 1e9, st.batch, st.lr, train_seed + k, load_net(start_w),
                                    log=None, tune=st.tune)
                save_weights(net, wpath, {'curriculum_loop': k, 'level': level, 'real_samples': len(samples),
                                          'steps_run': len(losses), 'init': str(start_w),
                                          'train_key': train_key, 'tune': st.tune, 'lr': st.lr,
                                          'losses': json.dumps([round(x, 5) for x in losses])})
            weights = wpath
            r = {'loop': k, 'level': level, 'weights': str(wpath), 'seed': seed, **counts,
                 'label_s': round(t_label, 1), 'label_cpu_s': round(c_label, 1),
                 'label_cached': hit is not None,
                 'train_s': round(time.perf_counter() - t1, 1),
                 'train_cpu_s': round(time.process_time() - c1, 1),
                 'loss_first': float(np.mean(losses[:20])), 'loss_last': float(np.mean(losses[-20:])),
                 **evaluate_loop(k, wpath)}
            report['loops'].append(r)
            log(_row_text(r))
            report['seeds'] = {str(s_): rows for s_, rows in chains.items()}
            (out / 'curriculum.json').write_text(json.dumps(report, indent=1, default=str))
    report['loops'] = chains[seeds[0]]
    report['seeds'] = {str(s_): rows for s_, rows in chains.items()}
    (out / 'curriculum.json').write_text(json.dumps(report, indent=1, default=str))
    text = '\n\n'.join(f'seed {s_}:\n\n' + table(rows) for s_, rows in chains.items()) \
        if len(chains) > 1 else table(report['loops'])
    if len(chains) > 1 and eval_dir is not None:
        text += '\n\n' + seeds_table(chains)
        plot_seeds(chains, out / 'curriculum.png')
    else:
        plot(report['loops'], out / 'curriculum.png')
    (out / 'curriculum.md').write_text(text + '\n')
    return report


def _row_text(r: dict) -> str:
    parts = [f"loop {r['loop']} ({r['level']})"]
    if 'samples' in r:
        parts.append(f"{r['samples']} real samples from {r['kept']} kept / {r['accepted']} accepted labels")
    if '3D@0.5_mod' in r:
        parts.append(f"3D@0.5 mod {r['3D@0.5_mod']:.1f}, 3D@0.7 mod {r['3D@0.7_mod']:.1f}, "
                     f"flips {100 * r['flip_rate']:.1f} %, network front/back "
                     f"{100 * (r.get('css_frontback') or float('nan')):.1f} %")
    return ': '.join(parts[:1]) + ' ' + '; '.join(parts[1:])


def table(rows: list[dict]) -> str:
    """The per-loop quality as a markdown table (SDFLabel's Table 1)."""
    head = ('| loop | level | real samples | 3D@0.5 easy | 3D@0.5 mod | 3D@0.7 mod | BEV@0.7 mod | flips '
            '| network front/back | s / instance |\n' + '| --- ' * 10 + '|')
    lines = [head]
    def f(r, key, scale=1.0, fmt='.1f'):
        v = r.get(key)
        return 'n/a' if v is None or (isinstance(v, float) and np.isnan(v)) else format(v * scale, fmt)

    for r in rows:
        lines.append(f"| {r['loop']} | {r['level']} | {r.get('samples', '-')} | {f(r, '3D@0.5_easy')} | "
                     f"{f(r, '3D@0.5_mod')} | {f(r, '3D@0.7_mod')} | {f(r, 'BEV@0.7_mod')} | "
                     f"{f(r, 'flip_rate', 100)} % | {f(r, 'css_frontback', 100)} % | "
                     f"{f(r, 's_per_instance', 1, '.2f')} |")
    return '\n'.join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """AP per loop (no evaluation frames: nothing to plot)."""
    rows = [r for r in rows if '3D@0.5_mod' in r]
    if not rows:
        return
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = [r['loop'] for r in rows]
    for key in ('3D@0.5_mod', '3D@0.7_mod', 'BEV@0.7_mod'):
        ax.plot(x, [r[key] for r in rows], marker='o', label=key.replace('_', ' '))
    ax.set_xlabel('curriculum loop (0 = simulator weights)')
    ax.set_ylabel('AP R40 (%)')
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
