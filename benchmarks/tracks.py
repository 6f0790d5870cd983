"""Tracking benchmark: simulator drives with moving traffic, single-frame vs tracked labels.

    AUTOLABEL_BENCH_CACHE=... python benchmarks/tracks.py [--sequences 3] [--frames 20] [--beams 64,32]
                                                          [--out DIR] [--no-label] [--no-icp]
                                                          [--no-refit] [--seeds 0,2]

Per sequence and LiDAR (benchmarks/track_data.py: simulated, labelled per frame from the ground-truth
boxes with oracle masks, cached) the same per-frame labels give the rows:

- ``single-frame``: the labels as the per-frame pipeline gave them;
- ``tracked (tf)``: autolabel_ros.track with the exact ego poses (what the simulator's bag carries on
  /tf and its KITTI export as OXTS), static tracks refitted on their accumulated points
  (autolabel_ros/track/refit.py, the product's shape space and fit settings; ``--no-refit``: without);
- ``tracked (tf), no refit``: the same without the track refit (only when the refit is on);
- ``tracked (icp)``: the same with ego poses from scan-to-scan ICP (its drift is reported).

Metrics (a prediction is paired with the ground-truth car of its prompt; interpolated boxes are not
paired and do not enter AP, they are counted):
flipped headings (|yaw error| > 90 deg) over pairs located within 2 m, of moving cars (speed > 0.5 m/s)
and of all; AP3D@0.5 and @0.7 (R40) of cars beyond 40 m (ground truth farther than 40 m; a prediction
matching a nearer car is ignored, an unmatched one beyond 40 m is a false positive), AP3D@0.5 of all
cars; the
standard deviation of a car's box length over its frames (median and max over cars seen >= 5 times);
CLEAR-MOT MOTA and ID switches with a 2 m centre-distance match (computed here from the standard
definitions: motmetrics would change the requirements and rebuild the environment). Writes
``tracks.json``, ``tracks.md`` and ``tracks_bev.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.track_data import SEQ_SEED0, build_sequence, load_sequence, make_labeler  # noqa: E402

FAR_M = 40.0
MATCH_M = 2.0
MOVING_MPS = 0.5


def frame_labels(fr: dict):
    from autolabel_ros.core.types import Label3D

    from benchmarks.track_data import LABEL_METRICS

    n = len(fr['lab_id'])
    # the metrics the cache kept (heading confidence, LiDAR support; caches written before they were
    # kept have none) and the reasons of a rejection
    kept = [k for k in LABEL_METRICS if f'lab_{k}' in fr]
    metrics = [{k: float(fr[f'lab_{k}'][j]) for k in kept if not np.isnan(fr[f'lab_{k}'][j])}
               for j in range(n)]
    reasons = [[r for r in str(x).split(',') if r] for x in fr['lab_reasons']] if 'lab_reasons' in fr \
        else [[] for _ in range(n)]
    return [Label3D(center=b[:3], size=b[3:6], yaw=b[6], score=float(s), id=int(i), accepted=bool(a),
                    metrics=m, reasons=r)
            for b, s, i, a, m, r in zip(fr['lab_box'], fr['lab_score'], fr['lab_id'], fr['lab_accepted'],
                                        metrics, reasons)]


def make_refitter():
    """The track refit with the product's shape space and fit settings (the config the per-frame
    labels were made with)."""
    from autolabel_ros.config import AutolabelConfig
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.track.refit import TrackRefitter

    cfg = AutolabelConfig()
    al = Autolabeler(cfg)
    return TrackRefitter(al.sdf, cfg.fit, al.device)


def run_rows(seq: list[dict], icp_row: bool = True, refitter=None) -> tuple[dict, dict]:
    """Per row: list (per frame) of labels; plus the ICP drift. With ``refitter`` the tracked rows
    refit static tracks (track/refit.py) and ``tracked (tf), no refit`` is the same without."""
    from autolabel_ros.track.ego import drift, poses_from_icp
    from autolabel_ros.track.sequence import track_sequence

    labels = [frame_labels(fr) for fr in seq]
    stamps = [int(fr['stamp_ns']) for fr in seq]
    pts = [fr['points'] for fr in seq]
    gt_poses = [fr['T_world_lidar'] for fr in seq]
    cams = [(fr['K'], fr['T_cam_lidar'], int(fr['image_size'][0]), int(fr['image_size'][1])) for fr in seq]
    rows = {'single-frame': labels}
    if refitter is not None:
        rows['tracked (tf), no refit'] = track_sequence(labels, stamps, gt_poses, pts, cameras=cams).labels
    n0, c0 = (refitter.calls, refitter.cpu_s) if refitter is not None else (0, 0.0)
    t = time.perf_counter()
    rows['tracked (tf)'] = track_sequence(labels, stamps, gt_poses, pts, cameras=cams,
                                          refitter=refitter).labels
    t_track = time.perf_counter() - t
    refit_info = {}
    if refitter is not None:
        refit_info = {'refit_tracks': refitter.calls - n0, 'refit_cpu_s': refitter.cpu_s - c0}
    if not icp_row:
        return rows, {'track_s_per_frame': t_track / len(seq), **refit_info}
    t = time.perf_counter()
    icp = poses_from_icp(pts)
    t_icp = time.perf_counter() - t
    rows['tracked (icp)'] = track_sequence(labels, stamps, icp.poses, pts, cameras=cams,
                                           refitter=refitter).labels
    info = {'icp_drift': drift(icp.poses, gt_poses), 'icp_s_per_frame': t_icp / len(seq),
            'track_s_per_frame': t_track / len(seq), 'icp_notes': icp.notes, **refit_info}
    return rows, info


def _pairs(seq, out):
    """Per frame: list of (label, gt index or None)."""
    res = []
    for fr, labs in zip(seq, out):
        gid = {int(g): k for k, g in enumerate(fr['gt_id'])}
        row = []
        for lab in labs:
            if lab.metrics.get('interpolated'):
                row.append((lab, None))
                continue
            pid = int(lab.metrics.get('prompt_id', lab.id))
            row.append((lab, gid.get(pid)))
        res.append(row)
    return res


def flips(seq, pairs) -> dict:
    from autolabel_ros.core.types import wrap_angle

    n = {'moving': [0, 0], 'all': [0, 0]}
    for fr, row in zip(seq, pairs):
        for lab, k in row:
            if k is None:
                continue
            g = fr['gt_box'][k]
            if np.linalg.norm(lab.center[:2] - g[:2]) > MATCH_M:
                continue
            flip = abs(float(wrap_angle(lab.yaw - g[6]))) > np.pi / 2
            for key in ('moving', 'all'):
                if key == 'moving' and fr['gt_speed'][k] <= MOVING_MPS:
                    continue
                n[key][0] += int(flip)
                n[key][1] += 1
    return {k: {'flipped': v[0], 'n': v[1]} for k, v in n.items()}


def ap3d(seq, out, far: float | None, thr: float = 0.5) -> dict:
    """AP3D@``thr`` R40 of ground truth beyond ``far`` metres (None: all)."""
    from autolabel_ros.eval.iou import Boxes, iou_matrix
    from autolabel_ros.eval.kitti_eval import ap_r40
    from autolabel_ros.io.kitti_policy import kitti_predictions

    scores, tp, fp, n_gt = [], [], [], 0
    for fr, labs in zip(seq, out):
        preds = [lab for lab in kitti_predictions(labs) if not lab.metrics.get('interpolated')]
        gt = fr['gt_box']
        rng_gt = np.linalg.norm(gt[:, :2], axis=1)
        band = rng_gt > far if far is not None else np.ones(len(gt), bool)
        n_gt += int(band.sum())
        if not preds:
            continue
        pb = np.array([lab.box7 for lab in preds])
        iou = iou_matrix(Boxes.from_lidar(pb), Boxes.from_lidar(gt))[1] if len(gt) else np.zeros((len(pb), 0))
        used = np.zeros(len(gt), bool)
        for j in np.argsort([-lab.score for lab in preds], kind='stable'):
            cand = np.where(~used & (iou[j] >= thr))[0] if len(gt) else []
            in_band_pred = far is None or np.linalg.norm(pb[j, :2]) > far
            if len(cand):
                k = cand[np.argmax(iou[j, cand])]
                used[k] = True
                if band[k]:
                    scores.append(preds[j].score)
                    tp.append(True)
                    fp.append(False)
            elif in_band_pred:
                scores.append(preds[j].score)
                tp.append(False)
                fp.append(True)
    return {'ap': ap_r40(scores, tp, fp, np.zeros(len(scores), bool), n_gt), 'n_gt': n_gt}


def length_std(seq, pairs) -> dict:
    per = {}
    for fr, row in zip(seq, pairs):
        for lab, k in row:
            if k is not None and np.linalg.norm(lab.center[:2] - fr['gt_box'][k][:2]) <= MATCH_M:
                per.setdefault(int(fr['gt_id'][k]), []).append(lab.size[0])
    stds = [float(np.std(v)) for v in per.values() if len(v) >= 5]
    return {'median_m': float(np.median(stds)) if stds else None,
            'max_m': float(np.max(stds)) if stds else None, 'cars': len(stds)}


def clear_mot(seq, out) -> dict:
    """CLEAR-MOT (Bernardin & Stiefelhagen 2008): per frame keep last frame's pairs that are still
    within the threshold, Hungarian on the rest; a ground-truth object whose hypothesis id changed is
    an ID switch. MOTA = 1 - (FN + FP + IDSW) / GT."""
    from scipy.optimize import linear_sum_assignment

    last = {}
    fn = fp = idsw = n_gt = matches = 0
    for fr, labs in zip(seq, out):
        gids = [int(g) for g in fr['gt_id']]
        gt = fr['gt_box'][:, :2]
        hyp = {int(lab.id): lab.center[:2] for lab in labs if np.all(np.isfinite(lab.center))}
        n_gt += len(gids)
        pairs = {}
        for k, g in enumerate(gids):
            h = last.get(g)
            if h in hyp and h not in pairs.values() and np.linalg.norm(hyp[h] - gt[k]) <= MATCH_M:
                pairs[g] = h
        rest_g = [k for k, g in enumerate(gids) if g not in pairs]
        rest_h = [h for h in hyp if h not in pairs.values()]
        if rest_g and rest_h:
            D = np.array([[np.linalg.norm(hyp[h] - gt[k]) for h in rest_h] for k in rest_g])
            D[D > MATCH_M] = 1e6
            r, c = linear_sum_assignment(D)
            for i, j in zip(r, c):
                if D[i, j] < 1e6:
                    g = gids[rest_g[i]]
                    if g in last and last[g] != rest_h[j]:
                        idsw += 1
                    pairs[g] = rest_h[j]
        matches += len(pairs)
        fn += len(gids) - len(pairs)
        fp += len(hyp) - len(pairs)
        last.update(pairs)
    return {'mota': 1.0 - (fn + fp + idsw) / max(1, n_gt), 'idsw': idsw, 'fn': fn, 'fp': fp, 'gt': n_gt,
            'matches': matches}


def evaluate(seq, out) -> dict:
    pairs = _pairs(seq, out)
    return {'flips': flips(seq, pairs), 'ap_far': ap3d(seq, out, FAR_M), 'ap_all': ap3d(seq, out, None),
            'ap_far_07': ap3d(seq, out, FAR_M, 0.7),
            'length_std': length_std(seq, pairs), 'mot': clear_mot(seq, out),
            'interpolated': sum(int(bool(lab.metrics.get('interpolated'))) for labs in out for lab in labs)}


def combine(results: list[dict]) -> dict:
    """Pool the sequences: counts add up, APs are recomputed over the pooled rankings elsewhere; here
    the AP is the ground-truth-weighted mean of the sequences'."""
    out = {'flips': {}, 'mot': {}}
    for key in ('moving', 'all'):
        f = sum(r['flips'][key]['flipped'] for r in results)
        n = sum(r['flips'][key]['n'] for r in results)
        out['flips'][key] = {'flipped': f, 'n': n, 'pct': 100.0 * f / n if n else None}
    for key in ('ap_far', 'ap_all', 'ap_far_07'):
        n = sum(r[key]['n_gt'] for r in results)
        ok = [r for r in results if r[key]['n_gt'] and np.isfinite(r[key]['ap'])]
        n_ok = max(1, sum(r[key]['n_gt'] for r in ok))
        out[key] = {'ap': sum(r[key]['ap'] * r[key]['n_gt'] for r in ok) / n_ok, 'n_gt': n}
    stds = [r['length_std'] for r in results if r['length_std']['cars']]
    out['length_std'] = {'median_m': float(np.median([s['median_m'] for s in stds])) if stds else None,
                         'max_m': float(max(s['max_m'] for s in stds)) if stds else None,
                         'cars': sum(s['cars'] for s in stds)}
    for k in ('idsw', 'fn', 'fp', 'gt', 'matches'):
        out['mot'][k] = sum(r['mot'][k] for r in results)
    m = out['mot']
    m['mota'] = 1.0 - (m['fn'] + m['fp'] + m['idsw']) / max(1, m['gt'])
    out['interpolated'] = sum(r['interpolated'] for r in results)
    return out


def bev_figure(seq, out_labels, path: Path, title: str) -> None:
    """Bird's-eye view of one sequence in the world frame: the ego path, accumulated points (thinned)
    and every track's box centres, coloured by track id, with the last box drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from autolabel_ros.core.geometry import bev_corners, transform_points

    fig, ax = plt.subplots(figsize=(12, 5))
    for fr in seq[::5]:
        p = transform_points(fr['T_world_lidar'], fr['points'][::15])
        ax.scatter(p[:, 0], p[:, 1], s=0.2, c='0.75', rasterized=True)
    ego = np.array([fr['T_world_lidar'][:3, 3] for fr in seq])
    ax.plot(ego[:, 0], ego[:, 1], 'k-', lw=2, label='ego')
    cmap = plt.get_cmap('tab20')
    tracks = {}
    for fr, labs in zip(seq, out_labels):
        T = fr['T_world_lidar']
        for lab in labs:
            c = transform_points(T, lab.center[None])[0]
            yaw = lab.yaw + np.arctan2(T[1, 0], T[0, 0])
            tracks.setdefault(lab.id, []).append((c, lab.size, yaw, bool(lab.metrics.get('interpolated'))))
    for tid, items in tracks.items():
        col = cmap(tid % 20)
        cs = np.array([c for c, *_ in items])
        ax.plot(cs[:, 0], cs[:, 1], '-', color=col, lw=1.5)
        c, size, yaw, _ = items[-1]
        poly = bev_corners(c, size, yaw)
        ax.fill(poly[:, 0], poly[:, 1], color=col, alpha=0.5)
        ax.arrow(c[0], c[1], np.cos(yaw) * size[0] / 2, np.sin(yaw) * size[0] / 2, color='k', width=0.05)
        ax.text(c[0], c[1] + 1.5, str(tid), fontsize=7)
    ax.set_aspect('equal')
    ax.set_xlabel('x (m, world = first LiDAR frame)')
    ax.set_ylabel('y (m)')
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v, f='{:.1f}'):
    return '-' if v is None or (isinstance(v, float) and not np.isfinite(v)) else f.format(v)


def table(pooled: dict) -> str:
    lines = ['| LiDAR | row | flips moving | flips all | AP3D@0.5 >40 m | AP3D@0.7 >40 m | AP3D@0.5 all '
             '| length std median / max (cm) | MOTA | ID switches | interpolated |', '|' + '---|' * 11]
    for beams, rows in pooled.items():
        for name, r in rows.items():
            fm, fa = r['flips']['moving'], r['flips']['all']
            ls = r['length_std']
            mot = r['mot']
            tracked = name != 'single-frame'
            lines.append(
                f"| {beams} | {name} | {_fmt(fm['pct'], '{:.2f}')} % ({fm['flipped']}/{fm['n']}) "
                f"| {_fmt(fa['pct'], '{:.2f}')} % ({fa['flipped']}/{fa['n']}) | {_fmt(r['ap_far']['ap'])} "
                f"(n={r['ap_far']['n_gt']}) | {_fmt(r['ap_far_07']['ap'])} | {_fmt(r['ap_all']['ap'])} "
                f"| {_fmt(ls['median_m'] and 100 * ls['median_m'])} "
                f"/ {_fmt(ls['max_m'] and 100 * ls['max_m'])} "
                f"| {_fmt(mot['mota'] if tracked else None, '{:.3f}')} | {mot['idsw'] if tracked else '-'} "
                f"| {r['interpolated']} |")
    return '\n'.join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sequences', type=int, default=3)
    p.add_argument('--frames', type=int, default=20)
    p.add_argument('--beams', default='64,32')
    p.add_argument('--out', default=str(ROOT / 'benchmarks'))
    p.add_argument('--no-label', action='store_true', help='only sequences already in the cache')
    p.add_argument('--no-icp', action='store_true', help='no tracked (icp) row (ICP is the slow part)')
    p.add_argument('--no-refit', action='store_true', help='tracked rows without the track refit')
    p.add_argument('--seeds', default='', help='comma-separated sequence numbers (0-based) to run, '
                   'default all --sequences')
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    labeler = None
    refitter = None if a.no_refit else make_refitter()
    pooled, per_seq, icp = {}, {}, {}
    picked = [int(k) for k in a.seeds.split(',')] if a.seeds else list(range(a.sequences))
    for beams in (int(b) for b in a.beams.split(',')):
        results = {}
        for k in picked:
            seed = SEQ_SEED0 + k
            if not a.no_label:
                labeler = labeler or make_labeler()
                build_sequence(seed, beams, a.frames, labeler)
            try:
                seq = load_sequence(seed, beams, a.frames)
            except FileNotFoundError:
                print(f'[tracks] sequence {seed} b{beams} not in the cache: skipped')
                continue
            rows, info = run_rows(seq, icp_row=not a.no_icp, refitter=refitter)
            if 'refit_tracks' in info:
                per = info['refit_cpu_s'] / max(1, info['refit_tracks'])
                print(f"[tracks] {seed} b{beams}: track refit of {info['refit_tracks']} static tracks, "
                      f"{per:.2f} s thread CPU per track", flush=True)
            icp[f'{seed}_b{beams}'] = info
            for name, labs in rows.items():
                r = evaluate(seq, labs)
                results.setdefault(name, []).append(r)
                per_seq[f'{seed}_b{beams}_{name}'] = r
            if k == 0:
                bev_figure(seq, rows['tracked (tf)'], out / f'tracks_bev_b{beams}.png',
                           f'sequence {seed}, {beams} beams: tracks (tf ego poses), last box of each track')
            if 'icp_drift' in info:
                print(f'[tracks] {seed} b{beams}: ICP drift {info["icp_drift"]["final_m"]:.2f} m over '
                      f'{info["icp_drift"]["path_m"]:.1f} m', flush=True)
        if results:
            pooled[beams] = {name: combine(rs) for name, rs in results.items()}
    doc = {'pooled': pooled, 'per_sequence': per_seq, 'ego': icp,
           'settings': {'sequences': a.sequences, 'frames': a.frames, 'far_m': FAR_M, 'match_m': MATCH_M}}
    (out / 'tracks.json').write_text(json.dumps(doc, indent=1, default=float) + '\n')
    md = table(pooled)
    (out / 'tracks.md').write_text(md + '\n')
    print(md)
    return 0


if __name__ == '__main__':
    sys.exit(main())
