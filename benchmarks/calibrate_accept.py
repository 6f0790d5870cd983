"""Fit the accept model: P(label right) from the verification features, a logistic regression whose
coefficients go into autolabel_ros/fit/accept_model.py (fit/verify.py reads them).

One command, after any change to the fit (it refits the dumps that are out of date):

    AUTOLABEL_SHARED_DATA=../shared/data python benchmarks/calibrate_accept.py

It (1) fits the three benchmark sets once (benchmarks/fit_dump.py: procedural simulator 46 scenes,
ApolloCar3D simulator 40 scenes, KITTI 12 frames; GT 2D boxes, MobileSAM masks, default config), and the
fused prompts (detector + LiDAR proposals, no GT boxes) of the first simulator scenes of both kinds
(benchmarks/clutter_dump.py: the labels on no car are the negatives GT-box prompts never give), (2)
re-decides every heading with the configured cues and computes each label's features exactly as
fit/result.py does, (3) fits the model on the procedural scenes and the first half of the ApolloCar3D
scenes (0-19), both with their fused-prompt labels, holding each coefficient to its sign in
``ACCEPT_SIGNS`` (monotone), with a small L2 penalty, and a second one, P(tight) (IoU >= 0.7, not
flipped), the same way, (4) writes both models' coefficients and (5) prints the precision/recall of the
accept decision (``verify.min_confidence``) before (the rules it replaces: mask IoU >= 0.7 and surface
ratio >= 0.6) and after, on the training sets and the held-out ones (ApolloCar3D scenes 20-39, KITTI),
and (6) the KITTI AP of the labels ranked by each score kind (P(right), P(tight), their mean = the
shipped score, fit/verify.py label_score), evaluated from the dumps as the benchmark evaluates label
files.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.heading_cues import cue_records, decide, default_weights  # noqa: E402

MODEL_FILE = ROOT / 'autolabel_ros' / 'fit' / 'accept_model.py'
L2 = 1e-3
APOLLO_TRAIN = 20          # ApolloCar3D scenes 0..19 train, 20..39 are held out
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
FUSED_LABELS, FUSED_WEIGHT = 'all', 1.0


_SCANS: dict = {}


def scan_of(data, fid: str) -> np.ndarray:
    """The non-ground scan points of a frame of the KITTI-layout set at ``data``, as fit/lift.py splits
    them (the points fit/result.py reads the see-through share from); cached."""
    key = (str(data), fid)
    if key not in _SCANS:
        from autolabel_ros.config import from_dict
        from autolabel_ros.fit.lift import split_ground
        from autolabel_ros.io.kitti import KittiObjectDataset
        cfg = from_dict({})
        xyz = KittiObjectDataset(data).load_frame(fid).xyz.astype(np.float64)
        _, nonground = split_ground(xyz, cfg, np.random.default_rng(cfg.seed))
        _SCANS[key] = xyz[nonground]
    return _SCANS[key]


def features_of(rec: dict, k: int, heading_logit: float, data) -> np.ndarray:
    """The features fit/result.py computes for the label of hypothesis k (``data``: the set's folder)."""
    from autolabel_ros.fit.verify import accept_features, hypothesis_agreement, point_cover, see_through
    a = rec['alts'][k]
    return accept_features(a['terms']['mask_iou_hi'], a['surface_ratio'], len(rec['points']),
                           float(np.linalg.norm(a['box'][:2])), heading_logit, rec['occluded_share'],
                           a['energy'], *point_cover(rec['points'], a['box']),
                           *hypothesis_agreement(a['pose'], [(b['pose'], b['energy']) for b in rec['alts']]),
                           terms=a['terms'], see_through=see_through(scan_of(data, rec['frame']), a['box']))


def clutter_table(recs: list[dict], data, which: str = 'all') -> dict:
    """The fused-prompt labels of benchmarks/clutter_dump.py as training rows: a label on no car is
    right / tight only when its 3D box is (a box beside a car that fitted that car is); one on a car
    (``which`` 'all'; 'no-car': left out) is right / tight by its best 3D IoU and heading; labels mostly
    inside a DontCare region are left out. ``data``: the set's folder."""
    from autolabel_ros.fit.verify import (ACCEPT_FEATURES, accept_features, hypothesis_agreement, point_cover,
                                          points_outside_box, see_through)
    recs = [r for r in recs if (r['on_car'] and which == 'all') or not (r['on_car'] or r['ignored'])]
    X = [accept_features(r['mask_iou'], r['surface_ratio'], len(r['points']),
                         float(np.linalg.norm(r['box'][:2])), r['heading_logit'], r['occluded_share'],
                         r['energy'], *point_cover(r['points'], r['box']),
                         *hypothesis_agreement(r['pose'], r['hyps']), terms=r['terms'],
                         see_through=see_through(scan_of(data, r['frame']), r['box'])) for r in recs]
    # right / tight by the 3D box, as for the GT-box labels: a prompt box on half a car, wider than it
    # or beside it (benchmarks/clutter_dump.py's shifted boxes) can still give the car's right label
    ok = np.array([not r['flipped'] for r in recs], bool)
    iou = np.array([r['iou3d'] for r in recs])
    return dict(X=np.array(X).reshape(len(recs), len(ACCEPT_FEATURES)), right=ok & (iou >= 0.5),
                tight=ok & (iou >= 0.7),
                hard=np.array([bool(r['lift_reasons']) or points_outside_box(r['points'], r['box'])
                               for r in recs], bool),
                no_car=np.array([not r['on_car'] for r in recs], bool),
                old_acc=np.array([r['accepted'] for r in recs], bool),
                sources=['+'.join(sorted(r['sources'])) for r in recs])


def table_of(recs: list[dict], cues, weights, data) -> dict:
    """Per record: features, right (after the heading choice), hard rejection, and the old verdict
    (``data``: the set's folder)."""
    from autolabel_ros.fit.verify import points_outside_box
    d = decide(recs, cues, weights)
    X, right, tight, hard, old_acc, old_right, flips, old_flips = [], [], [], [], [], [], [], []
    boxes, ious = [], []
    for r, c in zip(recs, d):
        k = c['index']
        a = r['alts'][k]
        X.append(features_of(r, k, c['logit'], data))
        boxes.append(a['box'])
        right.append(a['iou3d'] >= 0.5 and not c['flipped'])
        tight.append(a['iou3d'] >= 0.7 and not c['flipped'])
        ious.append(0.0 if c['flipped'] else a['iou3d'])
        flips.append(c['flipped'])
        # lifting's reasons and the rule on the fitted box (fit/result.py)
        hard.append(bool(r['lift_reasons']) or points_outside_box(r['points'], a['box']))
        o = r['alts'][r['chosen']]
        old_flip = bool(np.cos(o['pose'][3] - r['gt']['yaw']) < 0)
        old_flips.append(old_flip)
        old_right.append(o['iou3d'] >= 0.5 and not old_flip)
        old_acc.append(r['accepted'])
    return dict(X=np.array(X), right=np.array(right), tight=np.array(tight), hard=np.array(hard),
                boxes=boxes, frames=[r['frame'] for r in recs], old_acc=np.array(old_acc),
                lift_reasons=[list(r['lift_reasons']) for r in recs],
                n_points=np.array([len(r['points']) for r in recs]), iou=np.array(ious),
                old_right=np.array(old_right), flips=np.array(flips), old_flips=np.array(old_flips))


def fit_logistic(X: np.ndarray, y: np.ndarray, signs, weight=None) -> tuple[np.ndarray, float]:
    """Sign-constrained L2 logistic regression (L-BFGS-B), each row weighted by ``weight`` (default 1):
    coefficients, intercept."""
    from scipy.optimize import minimize
    n, d = X.shape
    s = np.ones(n) if weight is None else np.asarray(weight, float) * n / np.sum(weight)

    def loss(w):
        z = X @ w[:d] + w[d]
        p = 1 / (1 + np.exp(-z))
        val = np.mean(s * (np.logaddexp(0, z) - y * z)) + L2 * np.sum(w[:d] ** 2)
        g = np.concatenate([X.T @ (s * (p - y)) / n + 2 * L2 * w[:d], [np.mean(s * (p - y))]])
        return val, g

    bounds = [(0, None) if s > 0 else (None, 0) for s in signs] + [(None, None)]
    res = minimize(loss, np.zeros(d + 1), jac=True, method='L-BFGS-B', bounds=bounds)
    return res.x[:d], float(res.x[d])


def pr(accepted: np.ndarray, right: np.ndarray) -> tuple:
    n_acc, n_right = int(accepted.sum()), int(right.sum())
    both = int((accepted & right).sum())
    return (100 * both / max(n_acc, 1), 100 * both / max(n_right, 1), n_acc, n_right)


def write_model(coef, intercept, tight_coef, tight_intercept, n_train: int, sets: str):
    from autolabel_ros.fit.verify import ACCEPT_FEATURES

    stamp = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())

    def tup(c):
        return '(' + ', '.join(f'{v:.4f}' for v in c) + ')'

    def wrap(text: str, indent: int) -> str:
        return '\n'.join(textwrap.wrap(text, 105, subsequent_indent=' ' * indent, break_on_hyphens=False))
    MODEL_FILE.write_text(
        '"""Coefficients of the accept model (fit/verify.py: P(label right) = sigmoid(INTERCEPT + COEF . '
        'features),\nright = IoU3D >= 0.5 and not flipped; P(tight) = sigmoid(TIGHT_INTERCEPT + TIGHT_COEF . '
        'features),\ntight = IoU3D >= 0.7 and not flipped).\n'
        'GENERATED by benchmarks/calibrate_accept.py -- do not edit by hand; rerun it after a change to the '
        'fit.\n'
        + wrap(f'Fitted on {n_train} labels ({sets}) at {stamp}.', 0)
        + '\n"""\n'
        + wrap(f'FEATURES = {tuple(ACCEPT_FEATURES)!r}', 12) + '\n'
        + wrap(f'COEF = {tup(coef)}', 8) + '\n'
        f'INTERCEPT = {intercept:.4f}\n'
        + wrap(f'TIGHT_COEF = {tup(tight_coef)}', 14) + '\n'
        f'TIGHT_INTERCEPT = {tight_intercept:.4f}\n')


def shipped_scores(tabs: dict) -> dict | None:
    """Each table's label scores by the model in accept_model.py as found (before this run rewrites it),
    when its features are among today's; else None."""
    import importlib

    import autolabel_ros.fit.accept_model as m
    from autolabel_ros.fit.verify import ACCEPT_FEATURES, label_score, right_probability
    m = importlib.reload(m)
    if not set(m.FEATURES) <= set(ACCEPT_FEATURES) or len(m.COEF) != len(m.FEATURES):
        return None
    idx = [ACCEPT_FEATURES.index(f) for f in m.FEATURES]
    return {n: np.array([label_score(right_probability(x[idx], m.COEF, m.INTERCEPT),
                                     right_probability(x[idx], m.TIGHT_COEF, m.TIGHT_INTERCEPT))
                         for x in t['X']]) for n, t in tabs.items()}


def ap_table(sets: dict, tabs: dict, scores: dict, thr: float) -> list[str]:
    """AP3D@0.5 / @0.7 moderate (autolabel_ros.eval, R40) of each set's labels ranked by each score kind,
    written as the KITTI label files are (io/kitti_policy.py: every label, a rejected one's score capped
    just below ``thr``). ``sets``: table name -> dump set ('sim', 'apollo', 'kitti'); ``scores``: kind ->
    (table name -> score per record)."""
    import tempfile

    from autolabel_ros.core.types import Label3D
    from autolabel_ros.eval import evaluate
    from autolabel_ros.io.kitti import KittiObjectDataset, read_image
    from autolabel_ros.io.kitti_policy import kitti_predictions
    from autolabel_ros.io.writers import write_kitti_frame_labels
    from benchmarks.fit_dump import SETS
    lines = ['| score | ' + ' | '.join(f'{n} @0.5 | {n} @0.7' for n in sets) + ' |',
             '|---|' + '---|---|' * len(sets)]
    sizes: dict = {}
    for kind, per_set in scores.items():
        cells = []
        for name, key in sets.items():
            t = tabs[name]
            ds = KittiObjectDataset(SETS[key][1])
            accepted = ~t['hard'] & (t['p_right'] >= thr)
            by_frame: dict = {}
            for i, fid in enumerate(t['frames']):
                b = t['boxes'][i]
                by_frame.setdefault(fid, []).append(Label3D(
                    center=np.asarray(b[:3], float), size=np.asarray(b[3:6], float), yaw=float(b[6]),
                    cls='Car', score=float(per_set[name][i]), accepted=bool(accepted[i])))
            with tempfile.TemporaryDirectory() as tmp:
                for fid, labs in by_frame.items():
                    if (key, fid) not in sizes:
                        sizes[key, fid] = read_image(ds.root / 'image_2' / f'{fid}.png').shape[:2]
                    h, w = sizes[key, fid]
                    write_kitti_frame_labels(Path(tmp), fid, kitti_predictions(labs, thr), ds.calib(fid),
                                             w, h)
                res = evaluate(ds.root / 'label_2', Path(tmp) / 'label_2', sorted(by_frame))
            cells.append(f'{res["3D@0.5"]["moderate"]:.1f} | {res["3D@0.7"]["moderate"]:.1f}')
        lines.append(f'| {kind} | ' + ' | '.join(cells) + ' |')
    return lines


def min_points_table(tabs: dict, thr: float, candidates=(1, 2, 3, 4, 5, 8)) -> list[str]:
    """Precision / recall % of the accept decision if lifting rejected 'too_few_points' below each
    candidate ``verify.min_points`` (1..4 points; 0 points stays 'no_lidar_points') and the model decided
    the rest; the other lifting reasons kept. Shows whether the rule rejects right labels the model keeps."""
    lines = ['| set | too_few_points labels (right) | ' + ' | '.join(f'min_points {m}' for m in candidates)
             + ' |', '|---|---|' + '---|' * len(candidates)]
    for name, t in tabs.items():
        other = np.array([any(x != 'too_few_points' for x in rs) for rs in t['lift_reasons']])
        few = np.array(['too_few_points' in rs for rs in t['lift_reasons']])
        cells = []
        for m in candidates:
            acc = (t['p_right'] >= thr) & ~other & ~((t['n_points'] > 0) & (t['n_points'] < m))
            c = pr(acc, t['right'])
            cells.append(f'{c[0]:.1f} / {c[1]:.1f} ({c[2]})')
        lines.append(f'| {name} | {int(few.sum())} ({int((few & t["right"]).sum())}) | ' + ' | '.join(cells)
                     + ' |')
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--no-dump', action='store_true', help='use the dumps as they are (no refit)')
    p.add_argument('--dry-run', action='store_true', help='print, do not write the coefficients')
    p.add_argument('--out', default='/tmp', help='folder for accept_calibration.md')
    p.add_argument('--fused-labels', choices=('all', 'no-car'), default=FUSED_LABELS,
                   help='which labels of the fused-prompt dumps join the training set')
    p.add_argument('--fused-weight', type=float, default=FUSED_WEIGHT,
                   help='weight of a fused-prompt label in the fit (a GT-prompt label weighs 1)')
    a = p.parse_args(argv)
    from autolabel_ros.config import from_dict
    from autolabel_ros.fit.verify import ACCEPT_FEATURES, ACCEPT_SIGNS, label_score, right_probability
    if not a.no_dump:
        from benchmarks.clutter_dump import run as run_clutter
        from benchmarks.fit_dump import run
        run(['sim', 'apollo', 'kitti'])
        run_clutter(['apollo', 'sim', 'kitti'])
    cfg = from_dict({})
    cues, weights, thr = cfg.fit.heading_cues, default_weights(), cfg.verify.min_confidence
    recs = {s: cue_records(s) for s in ('sim', 'apollo', 'kitti')}
    ap_train = [r for r in recs['apollo'] if int(r['frame']) < APOLLO_TRAIN]
    ap_test = [r for r in recs['apollo'] if int(r['frame']) >= APOLLO_TRAIN]
    parts = {'procedural sim (train)': recs['sim'], 'Apollo scenes 0-19 (train)': ap_train,
             'Apollo scenes 20-39 (held out)': ap_test, 'KITTI 12 (held out)': recs['kitti'],
             'Apollo all 40': recs['apollo']}
    from benchmarks.clutter_dump import SETS as CLUTTER_SETS, load as load_clutter
    from benchmarks.fit_dump import SETS as FIT_SETS
    part_set = dict(zip(parts, ('sim', 'apollo', 'apollo', 'kitti', 'apollo')))
    tabs = {k: table_of(v, cues, weights, FIT_SETS[part_set[k]][1]) for k, v in parts.items()}
    which = a.fused_labels
    fused = {'procedural sim, fused prompts (train)':
             clutter_table(load_clutter('sim'), CLUTTER_SETS['sim'][1], which),
             'Apollo scenes 0-11, fused prompts (train)':
             clutter_table(load_clutter('apollo'), CLUTTER_SETS['apollo'][1], which)}
    for t in fused.values():
        t['weight'] = a.fused_weight
    train = [tabs['procedural sim (train)'], tabs['Apollo scenes 0-19 (train)']] + list(fused.values())
    if load_clutter('kitti'):        # real clutter: a check, never trained on
        fused['KITTI 12, fused prompts (held out)'] = clutter_table(load_clutter('kitti'),
                                                                   CLUTTER_SETS['kitti'][1], which)
    X = np.concatenate([t['X'][~t['hard']] for t in train])
    y = np.concatenate([t['right'][~t['hard']] for t in train]).astype(float)
    w = np.concatenate([np.full(int((~t['hard']).sum()), t.get('weight', 1.0)) for t in train])
    before = shipped_scores(tabs)
    coef, intercept = fit_logistic(X, y, ACCEPT_SIGNS, w)
    y_tight = np.concatenate([t['tight'][~t['hard']] for t in train]).astype(float)
    tight_coef, tight_intercept = fit_logistic(X, y_tight, ACCEPT_SIGNS, w)
    if not a.dry_run:
        write_model(coef, intercept, tight_coef, tight_intercept, len(y),
                    'procedural sim 46 scenes + ApolloCar3D sim scenes 0-19, GT-box prompts; '
                    'the fused prompts of both sets\' first scenes, benchmarks/clutter_dump.py')
    for t in list(tabs.values()) + list(fused.values()):
        t['p_right'] = np.array([right_probability(x, coef, intercept) for x in t['X']])
        t['p_tight'] = np.array([right_probability(x, tight_coef, tight_intercept) for x in t['X']])
    lines = ['Accept model: ' + ', '.join(f'{n} {c:+.3f}' for n, c in zip(ACCEPT_FEATURES, coef))
             + f', intercept {intercept:+.3f}; accept at P >= {thr:g} (verify.min_confidence).', '',
             '| set | labels | flips before -> after | precision % before -> after | recall % before -> '
             'after | accepted before -> after | right before -> after | mean P of accepted / share right |',
             '|---|---|---|---|---|---|---|---|']
    for name, t in tabs.items():
        p_ = t['p_right']
        acc = (p_ >= thr) & ~t['hard']
        b, n = pr(t['old_acc'], t['old_right']), pr(acc, t['right'])
        lines.append(f'| {name} | {len(t["X"])} | {int(t["old_flips"].sum())} -> {int(t["flips"].sum())} | '
                     f'{b[0]:.1f} -> {n[0]:.1f} | {b[1]:.1f} -> {n[1]:.1f} | {b[2]} -> {n[2]} | '
                     f'{b[3]} -> {n[3]} | '
                     f'{p_[acc].mean() if acc.any() else float("nan"):.2f} / '
                     f'{t["right"][acc].mean() if acc.any() else float("nan"):.2f} |')
    lines += ['', 'Fused prompts (detector + LiDAR proposals, benchmarks/clutter_dump.py): accepted labels '
              'on no car before (the shipped model when dumped, duplicates rejected) -> after:', '',
              '| set | labels | on no car | accepted on no car before -> after | accepted | precision % | '
              'recall % |', '|---|---|---|---|---|---|---|']
    for name, t in fused.items():
        acc = (t['p_right'] >= thr) & ~t['hard']
        c = pr(acc, t['right'])
        lines.append(f'| {name} | {len(t["X"])} | {int(t["no_car"].sum())} | '
                     f'{int((t["old_acc"] & t["no_car"]).sum())} -> {int((acc & t["no_car"]).sum())} | '
                     f'{c[2]} | '
                     f'{c[0]:.1f} | {c[1]:.1f} |')
    lines += ['', 'Precision / recall % at other thresholds:', '',
              '| set | ' + ' | '.join(f'P >= {t:g}' for t in THRESHOLDS) + ' |',
              '|---' * (len(THRESHOLDS) + 1) + '|']
    for name, t in tabs.items():
        p_ = t['p_right']
        cells = [pr((p_ >= thr_) & ~t['hard'], t['right'])[:2] for thr_ in THRESHOLDS]
        lines.append(f'| {name} | ' + ' | '.join(f'{c[0]:.1f} / {c[1]:.1f}' for c in cells) + ' |')
    sets = {'procedural sim (train)': 'sim', 'Apollo scenes 20-39 (held out)': 'apollo',
            'KITTI 12 (held out)': 'kitti'}
    was = {'before: the score of accept_model.py as found': {n: before[n] for n in sets}} if before else {}
    scores = {**was,
              'P(right)': {n: tabs[n]['p_right'] for n in sets},
              'P(tight)': {n: tabs[n]['p_tight'] for n in sets},
              'mean (label_score, shipped)': {n: np.array([label_score(pr_, pt) for pr_, pt in
                                                           zip(tabs[n]['p_right'], tabs[n]['p_tight'])])
                                              for n in sets},
              'oracle: true 3D IoU (0 if flipped), the bound of any ranking':
                  {n: tabs[n]['iou'] for n in sets}}
    lines += ['', 'P(tight) model: ' + ', '.join(f'{n} {c:+.3f}' for n, c in zip(ACCEPT_FEATURES, tight_coef))
              + f', intercept {tight_intercept:+.3f}.', '',
              'AP3D moderate (R40) of the dumped labels ranked by each score (same boxes; rejected labels '
              'capped below the threshold as io/kitti_policy.py writes them):', '']
    lines += ap_table(sets, tabs, scores, thr)
    lines += ['', "The lifting rule 'too_few_points' (verify.min_points): precision / recall % "
              '(accepted) of the accept decision with each candidate value:', '']
    lines += min_points_table(tabs, thr)
    text = '\n'.join(lines) + '\n'
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / 'accept_calibration.md').write_text(text)
    print(text)


if __name__ == '__main__':
    main()
