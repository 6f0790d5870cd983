"""Benchmark section "no ground truth": autolabel without ground-truth boxes, prompts from the
detector, the LiDAR and both fused.

    python benchmarks/no_gt.py [--data KITTI_TRAINING] [--sim-frames 12] [--skip-fit] [--json out.json]
    (run_all.py calls :func:`run_section` for ``--only no_gt``)

Per dataset (the real KITTI frames of ../shared/data, simulator scenes):

- prompt quality before verification, per source (detector, lidar, fused) and distance band:
  recall over the cars taller than 25 px with at least ``MIN_GT_POINTS`` LiDAR points in their 3D
  box (2D IoU >= 0.5), precision over all prompts (a prompt on an ignored object -- a smaller or
  pointless car, a Van/Truck, a DontCare region -- is neither right nor wrong);
- end to end: the accepted labels of the fused prompts evaluated as KITTI (autolabel_ros.eval), next
  to the same run from ground-truth boxes and from the detector alone, and the share of accepted
  labels that match no car (2D IoU < 0.5 with every Car/Van/DontCare);
- the per-frame cost of the LiDAR proposals + fusion.

Datasets: the 12 labelled KITTI frames; simulator scenes with procedural cars (the benchmark's
64-beam export); the same with ApolloCar3D cars when the benchmark has exported them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KITTI = ROOT.parent / 'shared' / 'data' / 'kitti_object' / 'training'
CACHE = Path(os.environ.get('AUTOLABEL_BENCH_CACHE', Path.home() / '.cache' / 'autolabel_ros' / 'bench'))
MIN_GT_HEIGHT = 25.0
MIN_GT_POINTS = 5
MATCH_IOU = 0.5
BANDS = ((0.0, 20.0), (20.0, 40.0), (40.0, 1e9))
CAR_TYPES = ('Car', 'Van', 'Truck')
SOURCES = ('detector', 'lidar', 'fused')


def band_name(b) -> str:
    return f'{b[0]:.0f}-{b[1]:.0f} m' if b[1] < 1e8 else f'>= {b[0]:.0f} m'


# ------------------------------------------------------------------------------- ground truth
def gt_objects(ds, fid: str, frame) -> list[dict]:
    """The frame's labelled objects: box, camera depth, LiDAR points in the 3D box, counted or not."""
    from autolabel_ros.core.geometry import kitti_box_to_lidar, points_in_box

    calib = ds.calib(fid)
    out = []
    for o in ds.labels(fid):
        if o.type in ('Car', 'Van', 'Truck'):
            center, size, yaw = kitti_box_to_lidar(o.hwl, o.location, o.ry, calib.T_rect_lidar)
            n = int(points_in_box(frame.xyz, center, size, yaw, margin=0.1).sum())
        else:
            n = 0
        counted = o.type == 'Car' and o.height2d > MIN_GT_HEIGHT and n >= MIN_GT_POINTS
        # a car that fails the filter, a Van/Truck and DontCare are ignored, not wrong
        ignored = not counted and o.type in ('Car', 'Van', 'Truck', 'DontCare')
        out.append({'type': o.type, 'box': np.asarray(o.bbox, float), 'depth': float(o.location[2]),
                    'n_points': n, 'counted': counted, 'ignored': ignored})
    return out


def match(boxes: list, gts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Greedy 2D matching (best IoU first) to the Car/Van/Truck boxes. Returns per prompt 1 (counted
    car) / 0 (ignored: a car not counted, a Van/Truck, mostly inside a DontCare region) / -1 (no car:
    background, or another object such as a cyclist), and per ground truth whether a prompt found it."""
    from autolabel_ros.proposals.fusion import iou_matrix

    res = -np.ones(len(boxes), int)
    found = np.zeros(len(gts), bool)
    if not boxes or not gts:
        return res, found
    iou, contain, _ = iou_matrix(np.array(boxes), np.array([g['box'] for g in gts]))
    # only a car-like object can be found: a box on a cyclist, a pedestrian or a tram is on no car (it
    # was neutral while any labelled object could match, which hid an accepted label on a cyclist)
    car_like = np.array([g['type'] in CAR_TYPES for g in gts])
    iou = np.where(car_like[None], iou, 0.0)
    used = np.zeros(len(boxes), bool)
    for k in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(k, iou.shape)
        if iou[i, j] < MATCH_IOU:
            break
        if used[i] or found[j]:
            continue
        used[i] = found[j] = True
        res[i] = 1 if gts[j]['counted'] else 0
    # an unmatched prompt on an ignored object (or mostly inside a DontCare region) is neutral
    for i in np.flatnonzero(res < 0):
        on_ignored = any(g['ignored'] and g['type'] != 'DontCare' and iou[i, j] >= MATCH_IOU
                         for j, g in enumerate(gts))
        in_dc = any(g['type'] == 'DontCare' and contain[i, j] >= 0.5 for j, g in enumerate(gts))
        if on_ignored or in_dc:
            res[i] = 0
    return res, found


DEPTH_GAP = 3.0    # m: a prompt whose LiDAR cluster lies this much off the car it overlaps is not on it


def false_kind(box, gts: list[dict], found: np.ndarray, depth: float = np.nan) -> str:
    """What a false prompt is: 'duplicate' (on a car another prompt found: a second box, a fragment),
    'mislocalized' (on a counted car nothing found, IoU < 0.5), 'small car' (on a car not counted),
    'other object' (a pedestrian, cyclist, ...) or 'clutter' (on no labelled object); ' (< 25 px)' when
    the box itself is that low. ``depth``: camera depth of the prompt's LiDAR cluster (NaN: unknown); a
    prompt overlapping a car in the image whose cluster lies more than ``DEPTH_GAP`` behind or in front
    of it is 'clutter behind a car' / 'clutter before a car' (background seen beside a near car is no
    second box of it)."""
    from autolabel_ros.proposals.fusion import iou_matrix

    kind = 'clutter'
    objs = [(j, g) for j, g in enumerate(gts) if g['type'] != 'DontCare']
    if objs:
        iou, contain, _ = iou_matrix(np.array([box]), np.array([g['box'] for _, g in objs]))
        k = int(np.argmax(np.maximum(iou[0], 0.99 * contain[0])))
        j, g = objs[k]
        if iou[0, k] >= 0.1 or contain[0, k] >= 0.3:
            if g['type'] not in ('Car', 'Van', 'Truck'):
                kind = 'other object'
            elif not g['counted']:
                kind = 'small car'
            elif np.isfinite(depth) and abs(depth - g['depth']) > DEPTH_GAP:
                kind = 'clutter behind a car' if depth > g['depth'] else 'clutter before a car'
            else:
                kind = 'duplicate' if found[j] else 'mislocalized'
    return kind + (' (< 25 px)' if box[3] - box[1] < MIN_GT_HEIGHT else '')


# ------------------------------------------------------------------------------- prompts
def frame_prompts(frame, detector, cfg) -> tuple[dict, float, float]:
    """{source: prompts} for one frame; the detector's time and the extra proposals' (wall, CPU) time."""
    from autolabel_ros.proposals import fused_prompts, lidar_prompts

    t = time.perf_counter()
    det = detector.detect(frame.image)       # down to proposals.confirm_score
    t_det = time.perf_counter() - t
    fused, timing = fused_prompts(frame, det, cfg)
    strong = [p for p in det if p.score >= cfg.detector.score_threshold]
    # 'lidar': every proposal, before a detection confirms it
    return ({'detector': strong, 'lidar': lidar_prompts(frame, cfg), 'fused': fused}, t_det,
            (timing['proposals_s'], timing['proposals_cpu_s']))


def prompt_quality(rows: list[dict]) -> dict:
    """Recall per distance band and in all, precision, per source, from per-frame match rows."""
    out = {}
    for src in SOURCES:
        gts = [g for r in rows for g in r['gt'] if g['counted']]
        found = [f for r in rows for f, g in zip(r['found'][src], r['gt']) if g['counted']]
        res = np.concatenate([r['res'][src] for r in rows]) if rows else np.zeros(0)
        tp, fp = int((res == 1).sum()), int((res < 0).sum())
        false = [f for r in rows for f in r['false'][src]]
        by_src, by_kind = {}, {}
        for key, kind, *_ in false:
            by_src[key] = by_src.get(key, 0) + 1
            by_kind[kind] = by_kind.get(kind, 0) + 1
        # every false prompt: where, what, and how far its LiDAR cluster is (the table behind by_kind)
        listed = [{'frame': fid, 'box': [round(float(v)) for v in p.box], 'sources': key, 'kind': kind,
                   'score': round(float(p.score), 2),
                   'depth': round(float(d), 1) if np.isfinite(d) else None}
                  for key, kind, fid, p, d in false]
        # the counted cars no prompt of this source found: where to look next
        missed = [{'frame': r['fid'], 'depth': round(g['depth'], 1),
                   'height_px': round(float(g['box'][3] - g['box'][1])), 'n_points': g['n_points'],
                   'box': [round(float(v)) for v in g['box']]}
                  for r in rows for f, g in zip(r['found'][src], r['gt']) if g['counted'] and not f]
        d = {'n_gt': len(gts), 'n_prompts': int(len(res)), 'tp': tp, 'fp': fp, 'missed': missed,
             'false_prompts': listed,
             'false_by_source': dict(sorted(by_src.items())), 'false_by_kind': dict(sorted(by_kind.items())),
             'recall': float(np.mean(found)) if found else None,
             'precision': tp / (tp + fp) if tp + fp else None, 'bands': {}}
        for b in BANDS:
            sel = [f for f, g in zip(found, gts) if b[0] <= g['depth'] < b[1]]
            d['bands'][band_name(b)] = {'n_gt': len(sel), 'recall': float(np.mean(sel)) if sel else None}
        out[src] = d
    return out


def prompt_depths(frame, boxes: list, cfg) -> np.ndarray:
    """Camera depth (median) of each box's owner cluster (:func:`autolabel_ros.proposals.box_owners`),
    NaN without one."""
    from autolabel_ros.proposals import box_owners, cluster_boxes, frame_scene

    scene = frame_scene(frame, cfg)
    if scene is None or not boxes:
        return np.full(len(boxes), np.nan)
    own = box_owners(scene, cluster_boxes(frame, scene, cfg.proposals), boxes, cfg.proposals.owner_iou)[0]
    return np.array([float(np.median(scene.z[scene.clusters[k]])) if k >= 0 else np.nan for k in own])


def collect_prompts(data: Path, frames, cfg, detector) -> tuple[list[dict], dict]:
    from autolabel_ros.io.kitti import KittiObjectDataset

    ds = KittiObjectDataset(data)
    rows, t_det, t_prop = [], [], []
    for fid in frames:
        frame = ds.load_frame(fid)
        gts = gt_objects(ds, fid, frame)
        prompts, td, tp = frame_prompts(frame, detector, cfg)
        t_det.append(td)
        t_prop.append(tp)
        row = {'fid': fid, 'gt': gts, 'res': {}, 'found': {}, 'false': {}, 'prompts': prompts}
        for src, ps in prompts.items():
            row['res'][src], row['found'][src] = match([p.box for p in ps], gts)
            bad = [p for p, r in zip(ps, row['res'][src]) if r < 0]
            depth = prompt_depths(frame, [p.box for p in bad], cfg)
            row['false'][src] = [('+'.join(sorted(p.sources)) or 'given',
                                  false_kind(p.box, gts, row['found'][src], d), fid, p, d)
                                 for p, d in zip(bad, depth)]
        rows.append(row)
    wall, cpu = np.array(t_prop).T
    timing = {'median_detector_s': float(np.median(t_det)), 'median_proposals_s': float(np.median(wall)),
              'max_proposals_s': float(np.max(wall)), 'median_proposals_cpu_s': float(np.median(cpu)),
              'max_proposals_cpu_s': float(np.max(cpu)),
              'load': ' '.join(f'{x:.1f}' for x in os.getloadavg())}
    return rows, timing


# ------------------------------------------------------------------------------- end to end
def no_car_record(fid: str, line: int, lab, box, gts: list[dict]) -> dict:
    """Where an accepted label on no car is (frame, line of the written label file, LiDAR range of its
    centre) and what its own 2D box overlaps most among the frame's labelled objects (type and 2D IoU;
    'nothing' when none overlaps): a cyclist, a car's fragment, the background."""
    from autolabel_ros.proposals.fusion import iou_matrix

    near = ('nothing', 0.0)
    if gts:
        iou = iou_matrix(np.array([box]), np.array([g['box'] for g in gts]))[0][0]
        j = int(np.argmax(iou))
        if iou[j] > 0:
            near = (gts[j]['type'], round(float(iou[j]), 2))
    return {'frame': fid, 'line': int(line), 'range_m': round(float(np.linalg.norm(lab.center[:2])), 1),
            'sources': '+'.join(sorted(lab.sources)) or 'given', 'box': [round(float(v)) for v in box],
            'overlaps': near[0], 'overlap_iou': near[1], 'confidence': round(float(lab.metrics.get(
                'confidence', lab.score)), 3)}


def label_split(data: Path, rows: list[dict], source: str, cfg, al, out: Path) -> dict:
    """Label every frame from the given prompts (source name in the rows, or 'gt'), write KITTI files,
    evaluate; also the share of accepted labels matching no car and the per-source label counts."""
    from autolabel_ros.eval import evaluate
    from autolabel_ros.io.kitti import KittiObjectDataset, label3d_to_kitti, write_label_file
    from autolabel_ros.io.kitti_policy import kitti_predictions
    from autolabel_ros.proposals import source_counts

    ds = KittiObjectDataset(data)
    out.mkdir(parents=True, exist_ok=True)
    n_acc, n_nocar, n_nocar_prompt, accepted, nocar_by = 0, 0, 0, [], {}
    t_frames, nocar_labels = [], []
    for row in rows:
        fid = row['fid']
        frame = ds.load_frame(fid)
        calib = ds.calib(fid)
        prompts = ds.prompts(fid, 'gt-boxes') if source == 'gt' else row['prompts'][source]
        t = time.perf_counter()
        labels = al.label(frame, prompts).labels if prompts else []
        if source == 'fused':       # as autolabel-bag --prompts fused does
            from autolabel_ros.proposals import reject_duplicates
            reject_duplicates(labels, cfg.proposals.duplicate_iou)
        t_frames.append(time.perf_counter() - t)
        acc = [lab for lab in labels if lab.accepted and np.all(np.isfinite(lab.box7))]
        accepted += acc
        if acc:
            # "matches no car": no Car/Van/Truck/DontCare box overlaps the label's own 2D box (its 3D box
            # projected, as the KITTI file holds it) by IoU >= 0.5 (any size or point count: a correct
            # label of a tiny car is not a false one). Also counted by the prompt box the label came
            # from: a detector box on half a car or wider than it gives a right label yet misses.
            gts = [dict(g, counted=g['type'] in ('Car', 'Van', 'Truck')) for g in row['gt']]
            own = [label3d_to_kitti(lab, calib, frame.width, frame.height).bbox for lab in acc]
            res, _ = match(own, gts)
            res_prompt, _ = match([lab.box2d for lab in acc], gts)
            n_acc += len(acc)
            n_nocar += int((res < 0).sum())
            n_nocar_prompt += int((res_prompt < 0).sum())
            written = [lab for lab in labels if np.all(np.isfinite(lab.center))]   # the file's lines
            for lab, box in zip(np.array(acc, dtype=object)[res < 0], np.array(own)[res < 0]):
                key = '+'.join(sorted(lab.sources)) or 'given'
                nocar_by[key] = nocar_by.get(key, 0) + 1
                line = next(k for k, x in enumerate(written) if x is lab) + 1
                nocar_labels.append(no_car_record(fid, line, lab, box, row['gt']))
        objs = [label3d_to_kitti(lab, calib, frame.width, frame.height) for lab in kitti_predictions(labels)]
        write_label_file(out / f'{fid}.txt', objs)
    res = evaluate(data / 'label_2', out, [r['fid'] for r in rows])
    return {'source': source, 'result': res, 'n_accepted': n_acc, 'accepted_no_car': n_nocar,
            'accepted_no_car_share': n_nocar / n_acc if n_acc else None,
            'accepted_prompt_no_car': n_nocar_prompt,
            'accepted_by_source': source_counts(accepted), 'no_car_by_source': dict(sorted(nocar_by.items())),
            'no_car_labels': nocar_labels, 'median_frame_s': float(np.median(t_frames)) if t_frames else None}


# the fused prompts with the default config (the SSD also on 4 square tiles: recall of small cars up,
# 4 more forward passes per image), and with the SSD on the whole image only
VARIANTS = {'fused': {}, 'fused, SSD on the whole image only': {'proposals': {'detector_tiles': 0}}}


def run_dataset(name: str, data: Path, frames, fit: bool, cfg_dict=None, variants=None) -> dict:
    """Prompt quality and (``fit``) end-to-end results of one split: ground-truth boxes, the detector
    alone and each fused variant (config overrides on top of ``cfg_dict``)."""
    import torch

    from autolabel_ros.config import from_dict
    from autolabel_ros.detect import make_detector
    from autolabel_ros.proposals import fused_detector_config

    torch.set_num_threads(1)
    res = {'dataset': name, 'n_frames': len(frames), 'prompts': {}, 'timing': {}, 'end_to_end': {}}
    for k, (vname, over) in enumerate((variants or VARIANTS).items()):
        cfg = from_dict(_merge(cfg_dict or {}, over))
        detector = make_detector(fused_detector_config(cfg), 'cpu')
        rows, timing = collect_prompts(data, frames, cfg, detector)
        q = prompt_quality(rows)
        for src in (('detector', 'lidar') if k == 0 else ()) + ('fused',):
            res['prompts'][vname if src == 'fused' else src] = q[src]
        res['timing'][vname] = timing
        if not fit:
            continue
        from autolabel_ros.pipeline import Autolabeler

        al = Autolabeler(cfg)
        tag = f'{name}_{k}'
        for src in (('gt', 'detector') if k == 0 else ()) + ('fused',):
            res['end_to_end'][vname if src == 'fused' else src] = label_split(
                data, rows, src, cfg, al, CACHE / 'pred' / f'no_gt_{tag}_{src}')
    return res


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def sim_split(n: int) -> Path:
    """The first ``n`` simulator scenes of the benchmark's 64-beam export (made when missing)."""
    from benchmarks.run_all import export_sim, sim_root

    root = sim_root(64)
    if not all((root / 'label_2' / f'{i:06d}.txt').is_file() for i in range(n)):
        export_sim(n, 0, 2)
    return root


def apollo_split(n: int) -> Path | None:
    """Simulator scenes with ApolloCar3D cars (the benchmark's export, benchmarks/apollo_cars.py; made
    when missing), or None when the ApolloCar3D models are not there (the section skips them)."""
    from benchmarks.run_all import apollo_root, export_for

    root = apollo_root()
    frames = [f'{i:06d}' for i in range(n)]
    if not all((root / 'label_2' / f'{f}.txt').is_file() for f in frames):
        try:
            export_for([{'dataset': 'apollo64', 'data': str(root), 'frames': frames}], 2)
        except (FileNotFoundError, OSError, ValueError) as e:
            print(f'[no_gt] no ApolloCar3D scenes: {e}')
            return None
    return root


def run_section(sim_frames: int = 12, fit: bool = True, kitti: Path = KITTI, variants=None,
                sets=('kitti', 'sim', 'apollo')) -> dict:
    """The section over ``sets``; ``variants`` (names of VARIANTS) picks the fused variants (default all)."""
    out = {}
    variants = {k: v for k, v in VARIANTS.items() if variants is None or k in variants}
    if 'kitti' in sets and kitti.is_dir():
        from autolabel_ros.io.kitti import KittiObjectDataset
        frames = [f for f in KittiObjectDataset(kitti).frame_ids
                  if (kitti / 'label_2' / f'{f}.txt').is_file()]
        out['kitti'] = run_dataset('kitti', kitti, frames, fit, variants=variants)
    if sim_frames:
        frames = [f'{i:06d}' for i in range(sim_frames)]
        if 'sim' in sets:
            out['sim'] = run_dataset('sim', sim_split(sim_frames), frames, fit, variants=variants)
        apollo = apollo_split(sim_frames) if 'apollo' in sets else None
        if apollo is not None:
            out['sim, ApolloCar3D cars'] = run_dataset('apollo', apollo, frames, fit, variants=variants)
    return out


RESULTS = ROOT / 'benchmarks' / 'no_gt_results.json'


def save_results(sec: dict, path: Path = RESULTS):
    sec = dict(sec, date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    path.write_text(json.dumps(sec, indent=1, default=float))


def load_results(path: Path = RESULTS) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _p(v, pct=True):
    if v is None:
        return '-'
    return f'{100 * v:.1f}' if pct else f'{v:.1f}'


def _by(counts) -> str:
    return '(' + ', '.join(f'{k} {v}' for k, v in counts.items()) + ') ' if counts else ''


def report_lines(sec: dict) -> list[str]:
    """Markdown for RESULTS.md."""
    if not sec:
        return []
    lines = ['', '## No ground truth: prompts from the detector, the LiDAR and both fused', '',
             'Prompt quality before verification: recall over cars taller than 25 px with >= '
             f'{MIN_GT_POINTS} LiDAR points in their box (2D IoU >= 0.5), precision over all prompts '
             '(prompts on ignored objects -- smaller or pointless cars, Vans, Trucks, DontCare -- do not '
             'count). End to end: AP R40 of the labels (autolabel-eval); "no car" = accepted labels whose '
             '2D box (the projected 3D box) matches no Car/Van/Truck/DontCare (IoU >= 0.5); in brackets, '
             'how many of them have a prompt box that matches none (a box on half a car, or wider than '
             'it, can still give the right label).'
             + (f' Run at {sec["date"]}.' if 'date' in sec else '')
             + (f' {sec["note"]}' if 'note' in sec else ''), '']
    for name, d in sec.items():
        if not isinstance(d, dict):
            continue
        bands = list(next(iter(d['prompts'].values()))['bands'])
        lines += [f'**{name}** ({d["n_frames"]} frames)', '',
                  '| source | prompts | recall | precision | '
                  + ' | '.join(f'recall {b}' for b in bands) + ' |',
                  '|---|---|---|---|' + '---|' * len(bands)]
        for src, q in d['prompts'].items():
            lines.append(f'| {src} | {q["n_prompts"]} | {_p(q["recall"])} ({q["n_gt"]} cars) | '
                         f'{_p(q["precision"])} | '
                         + ' | '.join(f'{_p(q["bands"][b]["recall"])} ({q["bands"][b]["n_gt"]})'
                                      for b in bands)
                         + ' |')
        lines.append('')
        for src, q in d['prompts'].items():
            if q.get('false_by_kind'):
                lines.append(f'False prompts of {src}: by kind {_by(q["false_by_kind"]).strip()}, by source '
                             f'{_by(q["false_by_source"]).strip()}.')
        lines.append('')
        for src, q in d['prompts'].items():
            if q.get('false_prompts') and src.startswith('fused'):
                lines.append(f'False {src} prompts: ' + '; '.join(
                    f'{x["frame"]} {x["box"]} ({x["sources"]} {x["score"]:.2f}'
                    + (f', cluster at {x["depth"]:.1f} m' if x['depth'] is not None else '')
                    + f'): {x["kind"]}'
                    for x in q['false_prompts']) + '.')
        lines.append('')
        for src, q in d['prompts'].items():
            if q.get('missed') and src.startswith('fused'):
                lines.append(f'Cars the {src} prompts missed: ' + '; '.join(
                    f'{m["frame"]} at {m["depth"]:.1f} m, {m["height_px"]} px, {m["n_points"]} points'
                    for m in q['missed']) + '.')
        lines.append('')
        for vname, t in d['timing'].items():
            lines += [f'{vname}: LiDAR proposals + fusion per frame: CPU time median '
                      f'{t["median_proposals_cpu_s"]:.3f} s (max {t["max_proposals_cpu_s"]:.3f} s), '
                      f'wall clock median {t["median_proposals_s"]:.3f} s (max {t["max_proposals_s"]:.3f} s) '
                      f'at load average {t["load"]} on {os.cpu_count()} cores; detector (wall) '
                      f'{t["median_detector_s"]:.3f} s.', '']
        if d.get('end_to_end'):
            lines += ['| prompts | 3D@0.5 mod | 3D@0.7 mod | 3D@0.5 easy/hard | accepted | no car | '
                      'accepted by source |', '|---|---|---|---|---|---|---|']
            for src, e in d['end_to_end'].items():
                r = e['result']
                lines.append(f'| {src} | {_p(r["3D@0.5"]["moderate"], False)} | '
                             f'{_p(r["3D@0.7"]["moderate"], False)} | {_p(r["3D@0.5"]["easy"], False)}/'
                             f'{_p(r["3D@0.5"]["hard"], False)} | {e["n_accepted"]} | '
                             f'{_p(e["accepted_no_car_share"])} % {_by(e.get("no_car_by_source"))}'
                             + (f'[prompt box: {e["accepted_prompt_no_car"]}] '
                                if 'accepted_prompt_no_car' in e else '') + '| '
                             + ', '.join(f'{k} {v}' for k, v in e['accepted_by_source'].items()) + ' |')
            lines.append('')
            for src, e in d['end_to_end'].items():
                if e.get('no_car_labels'):
                    lines.append(f'Accepted labels on no car ({src}): ' + '; '.join(
                        f'{x["frame"]} line {x["line"]} at {x["range_m"]:.1f} m ({x["sources"]}, P '
                        f'{x["confidence"]:.2f}; overlaps {x["overlaps"]}'
                        + (f' IoU {x["overlap_iou"]:.2f}' if x['overlap_iou'] else '') + ')'
                        for x in e['no_car_labels']) + '.')
            lines.append('')
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=str(KITTI))
    ap.add_argument('--sim-frames', type=int, default=12)
    ap.add_argument('--skip-fit', action='store_true', help='prompt quality only')
    ap.add_argument('--json', default=str(RESULTS), help='results file (read by run_all.py for RESULTS.md)')
    ap.add_argument('--sets', default='kitti,sim,apollo', help='which of kitti, sim, apollo')
    ap.add_argument('--fused-only', action='store_true',
                    help="only the default 'fused' variant (not the SSD on the whole image only)")
    a = ap.parse_args(argv)
    sec = run_section(a.sim_frames, not a.skip_fit, Path(a.data), ['fused'] if a.fused_only else None,
                      tuple(a.sets.split(',')))
    print('\n'.join(report_lines(sec)))
    if a.json:
        save_results(sec, Path(a.json))


if __name__ == '__main__':
    main()
