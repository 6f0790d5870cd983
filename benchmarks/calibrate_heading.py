"""Fit the front/back models on the simulator sets: the profile cue and the heading confidence.

    AUTOLABEL_SHARED_DATA=../shared/data python benchmarks/calibrate_heading.py [--dry-run]

Over the fit dumps (benchmarks/fit_dump.py) with every cue's value (benchmarks/heading_cues.py), on
the procedural simulator scenes and ApolloCar3D scenes 0-19 (ApolloCar3D 20-39 and KITTI held out):

1. the profile cue (fit/heading.py :func:`profile_features`): a logistic regression of "the end
   nearer the camera is the front" on the scan's side profile;
2. the heading confidence (fit/heading.py :func:`heading_logit`): over the flip pairs (one
   hypothesis right, the other flipped), P(the chosen is right) = sigmoid(c . (terms of the other -
   terms of the chosen)) over ``LOGIT_TERMS`` (energy, 1 - fine mask IoU, cues), every c >= 0, no
   intercept (both orderings of each pair);

writes both to autolabel_ros/fit/heading_model.py and prints the profile model's accuracy, the
confidence's log-loss per set, and the flips the confidence's coefficients would give as selection
weights (c / c_energy) beside the shipped weights (chosen by flip count, heading_cues.py --search).
The accept model reads the confidence: rerun benchmarks/calibrate_accept.py after this.
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

from benchmarks.calibrate_accept import APOLLO_TRAIN  # noqa: E402
from benchmarks.heading_cues import cue_records, decide, default_weights, with_profile  # noqa: E402

MODEL_FILE = ROOT / 'autolabel_ros' / 'fit' / 'heading_model.py'
L2 = 1e-2


def flipped(alt: dict, rec: dict) -> bool:
    return bool(np.cos(alt['pose'][3] - rec['gt']['yaw']) < 0)


def profile_samples(recs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(features, near end is the front) of each record's first hypothesis."""
    X, y = [], []
    for r in recs:
        a = r['alts'][0]
        X.append(a['profile_x'])
        y.append((a['facing'] >= 0) == (not flipped(a, r)))
    return np.array(X), np.array(y, float)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float, bounds=None, intercept: bool = True):
    """L2 logistic regression (L-BFGS-B) on standardised features; coefficients in the raw feature space."""
    from scipy.optimize import minimize
    mu = X.mean(0) if intercept else np.zeros(X.shape[1])
    sd = X.std(0) + 1e-6
    Z = (X - mu) / sd
    n, d = Z.shape

    def loss(w):
        z = Z @ w[:d] + w[d]
        p = 1 / (1 + np.exp(-z))
        val = np.mean(np.logaddexp(0, z) - y * z) + l2 * np.sum(w[:d] ** 2)
        return val, np.concatenate([Z.T @ (p - y) / n + 2 * l2 * w[:d], [np.mean(p - y)]])

    b = (list(bounds) if bounds else [(None, None)] * d) + [(None, None) if intercept else (0, 0)]
    w = minimize(loss, np.zeros(d + 1), jac=True, method='L-BFGS-B', bounds=b).x
    coef = w[:d] / sd
    return coef, float(w[d] - coef @ mu)


def pair_samples(recs: list[dict]) -> np.ndarray:
    """Per flip pair (one hypothesis right, the other flipped): LOGIT_TERMS of the wrong minus the right
    (the frame-level cues as the shipped heading choice sets them)."""
    from autolabel_ros.config import from_dict
    from autolabel_ros.fit.heading import LOGIT_TERMS, logit_terms, pick
    from benchmarks.heading_cues import alt_fits
    fc = from_dict({}).fit
    # the dumps carry every cue, the shipped fit computes only its heading_cues (the others read 0 there)
    always = ('energy', 'select_iou', 'shape_code')
    live = np.array([t in always or t in fc.heading_cues for t in LOGIT_TERMS])
    by_frame: dict = {}
    for r in recs:
        by_frame.setdefault(r['frame'], []).append(r)
    out = []
    for rs in by_frame.values():
        fits = [alt_fits(r) for r in rs]
        pick([f[0] for f in fits], fc.heading_cues, default_weights(), fc.w_select_iou)
        for r, f in zip(rs, fits):
            if len(r['alts']) < 2 or flipped(r['alts'][0], r) == flipped(r['alts'][1], r):
                continue
            right, wrong = sorted(range(2), key=lambda k: flipped(r['alts'][k], r))
            out.append((logit_terms(f[wrong]) - logit_terms(f[right])) * live)
    return np.array(out)


def fit_confidence(recs: list[dict]) -> np.ndarray:
    """LOGIT_COEF: sign-constrained (>= 0) logistic over the flip pairs, both orderings, no intercept."""
    D = pair_samples(recs)
    coef, _ = fit_logistic(np.vstack([D, -D]), np.r_[np.ones(len(D)), np.zeros(len(D))], L2,
                           bounds=[(0, None)] * D.shape[1], intercept=False)
    return coef


def log_loss(recs: list[dict], coef) -> float:
    D = pair_samples(recs)
    return float(np.mean(np.logaddexp(0, -D @ coef)))


def coef_rows(coef, per_row: int = 8) -> str:
    """The body of a generated coefficient tuple: per_row numbers to an indented line."""
    return ''.join('    ' + ' '.join(f'{c:.4f},' for c in coef[i:i + per_row]) + '\n'
                   for i in range(0, len(coef), per_row))


def write_model(profile: tuple, logit_coef, n: int, sets: str):
    from autolabel_ros.fit.heading import LOGIT_TERMS, PROFILE_BINS
    coef, intercept = profile
    rows = coef_rows(coef)
    terms = textwrap.fill(' '.join(f'{t!r},' for t in LOGIT_TERMS), 100, initial_indent='    ',
                          subsequent_indent='    ')
    head = (f'Front/back models of fit/heading.py. GENERATED by benchmarks/calibrate_heading.py -- do not\n'
            f'edit by hand; rerun it (then benchmarks/calibrate_accept.py) after a change to the fit.\n'
            f'Fitted on {n} labels ({sets})\nat {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.\n\n'
            f'PROFILE_*: logit(near end is the front) = PROFILE_INTERCEPT + PROFILE_COEF . features\n'
            f'(profile_features: {PROFILE_BINS[0]} x {PROFILE_BINS[1]} length x height point shares, the '
            f'90th-percentile height\nper length bin, |facing|). LOGIT_COEF: the heading confidence over '
            f'LOGIT_TERMS (heading_logit).\n')
    MODEL_FILE.write_text(
        f'"""{head}"""\nPROFILE_COEF = (\n{rows})\nPROFILE_INTERCEPT = {intercept:.4f}\n'
        f'LOGIT_TERMS = (\n{terms}\n)\n'
        f'LOGIT_COEF = ({", ".join(f"{c:.4f}" for c in logit_coef)})\n')


def n_flips(recs, cues, weights, w_select_iou=0.0) -> int:
    return sum(d['flipped'] for d in decide(recs, cues, weights, w_select_iou))


def main(argv=None):
    from autolabel_ros.config import from_dict
    from autolabel_ros.fit.heading import LOGIT_TERMS, profile_logit
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dry-run', action='store_true', help='print, do not write fit/heading_model.py')
    a = p.parse_args(argv)
    recs = {s: cue_records(s) for s in ('sim', 'apollo', 'kitti')}
    parts = {'procedural sim (train)': recs['sim'],
             'Apollo 0-19 (train)': [r for r in recs['apollo'] if int(r['frame']) < APOLLO_TRAIN],
             'Apollo 20-39 (held out)': [r for r in recs['apollo'] if int(r['frame']) >= APOLLO_TRAIN],
             'KITTI 12 (held out)': recs['kitti']}
    train = parts['procedural sim (train)'] + parts['Apollo 0-19 (train)']
    X, y = profile_samples(train)
    profile = fit_logistic(X, y, L2)
    for s, rs in recs.items():
        with_profile(s, rs, *profile)
    logit_coef = fit_confidence(train)
    if not a.dry_run:
        write_model(profile, logit_coef, len(y), 'procedural sim 46 scenes + ApolloCar3D sim scenes 0-19')
        import importlib

        from autolabel_ros.fit import heading_model
        importlib.reload(heading_model)   # the table below reads the model just written
    fc = from_dict({}).fit
    shipped = default_weights()
    fitted = dict(shipped, **{c: float(k / logit_coef[0]) for c, k in zip(LOGIT_TERMS[2:], logit_coef[2:])})
    coefs = ', '.join(f'{t} {c:.4g}' for t, c in zip(LOGIT_TERMS, logit_coef))
    lines = [f'Heading confidence coefficients: {coefs}', '',
             '| set | profile: near end read right | confidence log-loss (flip pairs) | flips, shipped '
             'weights | flips, confidence coefficients as weights |', '|---|---|---|---|---|']
    for name, rs in parts.items():
        Xp, yp = profile_samples(rs)
        lg = np.array([profile_logit(x, *profile) for x in Xp])
        ship = n_flips(rs, fc.heading_cues, shipped, fc.w_select_iou)
        fit = n_flips(rs, list(LOGIT_TERMS[2:]), fitted, logit_coef[1] / logit_coef[0])
        lines.append(f'| {name} | {np.mean((lg > 0) == (yp > 0.5)) * 100:.1f} % of {len(yp)} | '
                     f'{log_loss(rs, logit_coef):.3f} | {ship} / {len(rs)} | {fit} / {len(rs)} |')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
