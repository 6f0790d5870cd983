"""Per-car records of one benchmark row, and the tables built from them: failures, the accept
decision's precision/recall, and signed size errors.

A record per label (one per prompt) and per ground-truth car no label is about:
- with ground-truth prompts, a label belongs to the car of its prompt (the prompt id is the car's
  line in label_2), so no matching decides who is whose;
- with detector or fused prompts, a label is about the ground-truth object its prompt box covers:
  in descending label score, each prompt takes the unmatched object of highest 2D box IoU (>= 0.5).
  On a Car it is that car's label; on another object (Van, Truck, DontCare, ...) it is left out of
  the counts, as the KITTI evaluation ignores it; on nothing it is a false detection.

A label is *right* when its 3D IoU with its car is >= 0.5 and its heading is not flipped (error
<= 90 degrees). ``depth_err`` is the signed difference of the box centres' distances from the
camera (negative: the box sits nearer than the car). Label lines are 1-based, as an editor shows
them. Difficulty is the strictest KITTI class the car passes ('-' for none).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RIGHT_IOU = 0.5
DEPTH_FAIL_M = 1.0
EVALUATED = ('easy', 'moderate', 'hard')


def _difficulty(o) -> str:
    from autolabel_ros.eval.kitti_eval import DIFFICULTIES
    for name in ('easy', 'moderate', 'hard'):
        min_h, max_occ, max_trunc = DIFFICULTIES[name]
        if o.height2d >= min_h and o.occluded <= max_occ and o.truncated <= max_trunc:
            return name
    return '-'


def _box(o) -> np.ndarray:
    return np.concatenate([o.location, o.hwl, [o.ry]])


def _centre(o) -> np.ndarray:
    return o.location - [0.0, o.hwl[0] / 2, 0.0]        # camera y points down


def _iou3d(a, b) -> float:
    from autolabel_ros.eval.iou import Boxes, iou_pairs
    return float(iou_pairs(Boxes.from_kitti(_box(a)), Boxes.from_kitti(_box(b)), [0], [0])[1][0])


def _pair(rec: dict, p, g) -> dict:
    from autolabel_ros.core.types import wrap_angle
    dyaw = float(np.degrees(abs(wrap_angle(p.ry - g.ry))))
    iou = _iou3d(p, g)
    rec.update(iou3d=iou, dyaw_deg=dyaw, flipped=dyaw > 90.0,
               depth_err=float(np.linalg.norm(_centre(p)) - np.linalg.norm(_centre(g))),
               # signed size errors, label minus truth (l, w, h)
               dl=float(p.hwl[2] - g.hwl[2]), dw=float(p.hwl[1] - g.hwl[1]), dh=float(p.hwl[0] - g.hwl[0]))
    rec['right'] = bool(iou >= RIGHT_IOU and not rec['flipped'])
    return rec


def _gt_fields(g, line: int, models: list) -> dict:
    return dict(line=line + 1, range=float(np.linalg.norm(_centre(g))), occluded=g.occluded,
                truncated=round(g.truncated, 2), difficulty=_difficulty(g),
                model=models[line] if line < len(models) else None)


def car_records(gt_dir: Path, pred_dir: Path, frames, instances: list,
                prompt_boxes: bool = False) -> list[dict]:
    """Records of one row; ``instances`` = the per-instance stats of the labelling run (in the
    order of the prediction files' lines). ``prompt_boxes``: the prompts came from the detector
    (alone or fused), and a label belongs to the car its instance's ``prompt_box`` overlaps best
    (2D IoU >= 0.5), the higher label scores first; else from the ground truth, ``id`` = the car's
    line."""
    from autolabel_ros.eval.iou import box2d_overlap
    from autolabel_ros.io.kitti import read_label_file
    by_frame: dict = {}
    for inst in instances:
        by_frame.setdefault(inst['frame'], []).append(inst)
    out = []
    for fid in frames:
        gts = read_label_file(gt_dir / f'{fid}.txt')
        side = gt_dir.parent / 'models' / f'{fid}.json'          # simulator exports: model per line
        models = json.loads(side.read_text()) if side.is_file() else []
        pf = pred_dir / f'{fid}.txt'
        preds = read_label_file(pf) if pf.is_file() else []
        insts = by_frame.get(fid, [])
        if len(insts) != len(preds):
            raise ValueError(f'{pf}: {len(preds)} lines but {len(insts)} labelled instances')
        cars = [k for k, g in enumerate(gts) if g.type == 'Car']
        owner: dict = {}
        if not prompt_boxes:
            for j, inst in enumerate(insts):
                owner[j] = int(inst['id'])
        elif insts and gts:
            boxes = [i['prompt_box'] for i in insts]
            scores = [float(p.score or 0.0) for p in preds]
            iou2d = box2d_overlap(np.array(boxes, float), np.array([g.bbox for g in gts]))
            taken = set()
            for j in sorted(range(len(boxes)), key=lambda j: -scores[j]):
                cand = [(iou2d[j, k], k) for k in range(len(gts)) if k not in taken and iou2d[j, k] >= 0.5]
                if cand:
                    owner[j] = max(cand)[1]
                    taken.add(owner[j])
        for j, (p, inst) in enumerate(zip(preds, insts)):
            rec = dict(frame=fid, accepted=bool(inst['accepted']), mask_iou=inst.get('mask_iou'),
                       surface_ratio=inst.get('surface_ratio'), n_points=inst.get('n_points'),
                       score=float(p.score or 0.0))
            k = owner.get(j)
            if k is not None and gts[k].type != 'Car':
                continue                    # a label on a Van, DontCare, ...: not counted
            if k is None:
                rec.update(line=None, right=False, false_detection=True)
            else:
                rec.update(_gt_fields(gts[k], k, models))
                _pair(rec, p, gts[k])
            out.append(rec)
        found = set(owner.values())
        for k in cars:
            if k not in found:
                out.append(dict(frame=fid, missed=True, right=False, accepted=False,
                                **_gt_fields(gts[k], k, models)))
    return out


def _share(a: int, b: int):
    return a / b if b else None


def accept_stats(recs: list[dict]) -> dict:
    """Precision/recall of the accept decision over the labels (missed cars are not labels)."""
    labels = [r for r in recs if not r.get('missed')]
    acc = [r for r in labels if r['accepted']]
    right = [r for r in labels if r['right']]
    both = [r for r in acc if r['right']]
    cars = [r for r in recs if r.get('line') is not None]
    return dict(labels=len(labels), accepted=len(acc), right=len(right), accepted_right=len(both),
                precision=_share(len(both), len(acc)), recall=_share(len(both), len(right)),
                false_detections=sum(bool(r.get('false_detection')) for r in labels),
                cars=len(cars), missed=sum(bool(r.get('missed')) for r in recs),
                cars_right_and_accepted=_share(len(both), len(cars)))


def failures(recs: list[dict]) -> dict:
    """Counts of the failure kinds over the labels of ground-truth cars."""
    own = [r for r in recs if not r.get('missed') and r.get('line') is not None]
    return dict(cars=len(own),
                flips=sum(r['flipped'] for r in own),
                # the convention: flips over the cars KITTI's devkit evaluates (easy to hard)
                evaluated=sum(r.get('difficulty') in EVALUATED for r in own),
                evaluated_flips=sum(r['flipped'] and r.get('difficulty') in EVALUATED for r in own),
                depth_over_1m=sum(abs(r['depth_err']) > DEPTH_FAIL_M for r in own),
                # a partly hidden car whose box went > 1 m nearer: it took the points of what hides it
                nearer_occluded=sum(r['depth_err'] < -DEPTH_FAIL_M and r['occluded'] >= 1 for r in own),
                iou_below_05=sum(r['iou3d'] < RIGHT_IOU for r in own),
                accepted_wrong=sum(r['accepted'] and not r['right'] for r in own),
                rejected_right=sum((not r['accepted']) and r['right'] for r in own),
                missed=sum(bool(r.get('missed')) for r in recs))


def is_failure(r: dict) -> bool:
    return bool(r.get('missed') or r.get('line') is None or r['flipped']
                or abs(r['depth_err']) > DEPTH_FAIL_M or r['accepted'] != r['right'])


def size_bias(recs: list[dict]) -> dict:
    """Mean signed (label - truth) length/width/height over the labels placed on their car
    (not flipped, centre distance error < 1 m), and how many that is."""
    ok = [r for r in recs if r.get('line') is not None and not r.get('missed') and not r['flipped']
          and abs(r['depth_err']) < DEPTH_FAIL_M]
    if not ok:
        return dict(n=0)
    return dict(n=len(ok), dl=float(np.mean([r['dl'] for r in ok])), dw=float(np.mean([r['dw'] for r in ok])),
                dh=float(np.mean([r['dh'] for r in ok])))


# ------------------------------------------------------------------------------------------ report
def _pct(x) -> str:
    return '-' if x is None else f'{100 * x:.1f}'


def _set_name(row: dict) -> str:
    return {'kitti': 'KITTI 12 dev frames', 'sim64': 'sim, procedural cars',
            'apollo64': 'sim, ApolloCar3D cars', 'sim64_heldout': 'held-out sim, procedural cars',
            'apollo64_heldout': 'held-out sim, ApolloCar3D cars'}.get(row['dataset'], row['dataset'])


def report_lines(rows: list[dict], headline: list[str]) -> list[str]:
    """Markdown: the accept decision's precision/recall (every row with records), the failure
    counts and signed size errors of the ``headline`` rows, and the failing KITTI cars one by one."""
    rec_rows = [r for r in rows if r.get('cars')]
    if not rec_rows:
        return []
    lines = ['## The accept decision: precision and recall', '',
             'Over all labels of the row (every difficulty). *right* = 3D IoU >= 0.5 with its car and '
             'heading not flipped; precision = share of accepted labels that are right, recall = share '
             'of right labels that are accepted; *right+acc. / cars* = share of the ground-truth cars '
             'that end up with an accepted right label (end to end). Detector rows: a label on no car is '
             'wrong (*false det.*), a car with no label is *missed*.', '',
             '| run | labels | accepted | right | precision % | recall % | false det. | cars | missed | '
             'right+acc. / cars % |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rec_rows:
        a = accept_stats(r['cars'])
        lines.append(f'| {r["name"]} | {a["labels"]} | {a["accepted"]} | {a["right"]} | '
                     f'{_pct(a["precision"])} | {_pct(a["recall"])} | {a["false_detections"]} | '
                     f'{a["cars"]} | {a["missed"]} | '
                     f'{_pct(a["cars_right_and_accepted"])} |')
    head = [r for r in rec_rows if r['name'] in headline]
    lines += ['', '## Failures, car by car', '',
              'Ground-truth 2D boxes as prompts, MobileSAM masks, the default fit. Counts over the labelled '
              'cars (every difficulty); a car can fail in several ways. *depth > 1 m* = the box centre is '
              'more than 1 m nearer or farther from the camera than the car\'s.', '',
              '*nearer, occluded* = of those, partly hidden cars whose box came out > 1 m nearer (on the '
              'object in front of them).', '',
              '*flipped, evaluated* = flips over the cars the KITTI devkit evaluates (difficulty easy to '
              'hard; the others are too small, hidden or cut off to count).', '',
              '| set | cars | flipped | flipped, evaluated | depth > 1 m | nearer, occluded | IoU3D < 0.5 | '
              'accepted but wrong | rejected but right | no label |', '|' + '---|' * 10]
    for r in head:
        f = failures(r['cars'])
        share = _pct(f['evaluated_flips'] / max(1, f['evaluated']))
        ev = f'{f["evaluated_flips"]} / {f["evaluated"]} ({share} %)'
        lines.append(f'| {_set_name(r)} | {f["cars"]} | {f["flips"]} | {ev} | {f["depth_over_1m"]} | '
                     f'{f["nearer_occluded"]} | '
                     f'{f["iou_below_05"]} | {f["accepted_wrong"]} | {f["rejected_right"]} | {f["missed"]} |')
    lines += ['', 'Signed size errors (label minus truth, metres) over the cars whose label sits on them '
              '(not flipped, depth error < 1 m):', '',
              '| set | cars | length | width | height |', '|---|---|---|---|---|']
    for r in head:
        b = size_bias(r['cars'])
        if b['n']:
            lines.append(f'| {_set_name(r)} | {b["n"]} | {b["dl"]:+.2f} | {b["dw"]:+.2f} | {b["dh"]:+.2f} |')
    for r in head:
        if r['dataset'] != 'kitti':
            continue
        bad = [c for c in r['cars'] if is_failure(c)]
        lines += ['', f'Failing KITTI cars of "{r["name"]}" (label line = 1-based line of '
                  '`label_2/FRAME.txt`, one more than a 0-based object index; conf. = mask IoU of the '
                  'verification; fit points = scan points the fit used):', '',
                  '| frame | line | difficulty | occl. | range m | fit points | IoU3D | yaw err deg | '
                  'depth err m | accepted | conf. | what |', '|' + '---|' * 12]
        for c in sorted(bad, key=lambda c: (c['frame'], c.get('line') or 0)):
            if c.get('missed'):
                lines.append(f'| {c["frame"]} | {c["line"]} | {c["difficulty"]} | {c["occluded"]} | '
                             f'{c["range"]:.1f} | - | - | - | - | - | - | no label |')
                continue
            kinds = (('flipped', c['flipped']), ('depth', abs(c['depth_err']) > DEPTH_FAIL_M),
                     ('accepted but wrong', c['accepted'] and not c['right']),
                     ('rejected but right', c['right'] and not c['accepted']))
            what = ', '.join(w for w, bad_ in kinds if bad_)
            mi, npts = c.get('mask_iou'), c.get('n_points')
            lines.append(f'| {c["frame"]} | {c["line"]} | {c["difficulty"]} | {c["occluded"]} | '
                         f'{c["range"]:.1f} | {"-" if npts is None else npts} | {c["iou3d"]:.2f} | '
                         f'{c["dyaw_deg"]:.0f} | {c["depth_err"]:+.1f} | '
                         f'{"yes" if c["accepted"] else "no"} | '
                         f'{"-" if mi is None else f"{mi:.2f}"} | {what} |')
    lines.append('')
    return lines


def compact(recs: list[dict]) -> list[dict]:
    """Records with floats rounded (results.json stays readable)."""
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in recs]
