"""The "heading cues" table: flipped headings with each front/back cue alone and together, on the
procedural simulator set, the ApolloCar3D simulator set and the 12 KITTI development frames.

The heading choice is a post-hoc ranking of each object's surviving hypotheses (the best fit and
its flip, :func:`autolabel_ros.fit.heading.choose`), so the table re-decides from a fit dump
(benchmarks/fit_dump.py: one fit per set) instead of refitting per cue: every cue value is
computed by the fitter's own :meth:`Fitter.heading_cues` on the re-lifted evidence of the frame
(the same lift, masks and config as the fit), then each row runs :func:`choose` with its cues.
Numbers are exactly what the fit gives with ``fit.heading_cues`` set to the row's cues.

    python benchmarks/heading_cues.py [--sets kitti,sim,apollo] [--out DIR]

writes DIR/heading_cues.md (default /tmp) and prints it. ``--by-occlusion``: how often each cue calls
the right end of a flip pair, by the share of the 2D box nearer objects hide; ``--cross-validate``:
whether re-choosing the shipped cues' weights carries over to frames it was not chosen on.
The cue values are cached next to the dump.
"""
from __future__ import annotations

import argparse
import copy
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fit_dump import SETS, dump_dir, load  # noqa: E402

ALL_CUES = ('lamps', 'headlamps', 'mean_shape', 'shape_code', 'profile', 'neighbours', 'lane', 'css',
            'end_look', 'mean_box', 'hidden_shape')
# bump when what cue_records computes changes (the cached cue values are recomputed)
CUES_VERSION = 4
NAMES = {'sim': 'procedural sim (46)', 'apollo': 'ApolloCar3D sim (40)', 'kitti': 'KITTI (12)',
         'sim_heldout': 'held-out procedural sim (46)', 'apollo_heldout': 'held-out ApolloCar3D sim (40)'}


def alt_fits(rec: dict) -> list:
    """The record's surviving hypotheses as ObjectFits (best-energy first, as the fit returns them)."""
    from autolabel_ros.fit.optimize import ObjectFit
    alts = [ObjectFit(pose=a['pose'], code=a['code'], scales=a['scales'], energy=a['energy'],
                      terms=dict(a['terms'], n_points=float(len(rec['points'])),
                                          occluded=float(rec['occluded_share']))) for a in rec['alts']]
    alts[0].alternatives = alts
    return alts


class _Captured(Exception):
    """Stops Autolabeler.label at the fit: relift needs what the pipeline hands the fitter, not a fit."""


def relift(al, ds, dataset: str, fid: str):
    """The frame, the evidence the fit of ``fid`` saw and the per-object CSS cues: the pipeline's own
    steps (``al.label`` with the same prompts and cached masks; ``al.cfg`` must list ``css`` in
    ``fit.heading_cues`` for the cues), stopped where the fitter would start."""
    from benchmarks.run_all import CachedSegmenter
    frame = ds.load_frame(fid)
    prompts = ds.prompts(fid, mode='gt-boxes', seed=al.cfg.seed)
    seg = CachedSegmenter(al, f'{dataset}_gt-boxes')
    seg.fid = fid
    al._segmenter = seg
    seen = {}
    fit0 = al.fitter.fit

    def capture(fr, evidence, cues=None, nocs=None):
        seen.update(ev=evidence, cues=cues)
        raise _Captured

    al.fitter.fit = capture
    try:
        al.label(frame, prompts)
    except _Captured:
        pass
    finally:
        al.fitter.fit = fit0
    return frame, seen['ev'], seen['cues']


def alt_check(al, a, rec: dict, scan: np.ndarray) -> dict:
    """What the label of hypothesis ``a`` would be checked with: the surface ratio of the scan, its
    tight box (LiDAR frame) and that box's 3D IoU with the ground truth."""
    import torch

    from autolabel_ros.eval.iou import iou3d_lidar
    from autolabel_ros.fit.result import box_from_fit, canonical_mesh
    from autolabel_ros.fit.verify import surface_ratio
    sdf, vc = al.sdf, al.cfg.verify
    scales = a.scales if al.cfg.fit.log_scales else None
    ratio, n_near = surface_ratio(sdf, a.pose, a.code, scales, scan, vc.surface_band, vc.near_distance)
    mesh = canonical_mesh(sdf.decode_full(a.code), sdf.arrays.extent, scales)
    code = torch.as_tensor(a.code[None], dtype=torch.float32, device=sdf.device)
    size0 = sdf.size_of(code)[0].cpu().numpy()
    center, size, yaw, _ = box_from_fit(a.pose, mesh, size0)
    g = rec['gt']
    box = np.concatenate([center, size, [yaw]])
    iou = iou3d_lidar(box, np.concatenate([g['center'], g['size'], [g['yaw']]]))
    return dict(surface_ratio=ratio, n_near=n_near, box=box, iou3d=iou)


def cue_records(name: str) -> list[dict]:
    """The dumped records of a set with every cue's value in each hypothesis' terms (cached; the
    profile and end-look cues, cheap and refitted by calibrate_heading.py / train_end_look.py, are
    recomputed on every call)."""
    from autolabel_ros.config import from_dict
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.pipeline import Autolabeler
    cache = dump_dir(name) / 'cues.pkl'
    recs = load(name)
    stamp = [CUES_VERSION] + [(r['frame'], r['line'], r['alts'][0]['energy']) for r in recs]
    if cache.exists():
        with open(cache, 'rb') as fh:
            c = pickle.load(fh)
        if c['stamp'] == stamp:
            return with_profile(name, c['records'])
    dataset, data, _ = SETS[name]
    al = Autolabeler(from_dict({'fit': {'heading_cues': list(ALL_CUES)}}))   # with the CSS network's cue
    ds = KittiObjectDataset(data)
    by_frame: dict = {}
    for r in recs:
        by_frame.setdefault(r['frame'], []).append(r)
    for fid, rs in by_frame.items():
        frame, ev, css = relift(al, ds, dataset, fid)
        objs = {o.index: o for o in ev.objects}
        todo = [(objs[r['index']], r) for r in rs]
        fits = [alt_fits(r)[0] for _, r in todo]
        css = {o.index: c for o, c in zip(ev.objects, css)}
        al.fitter.heading_cues(frame, [o for o, _ in todo], fits, ALL_CUES, [css[o.index] for o, _ in todo])
        for f, (_, r) in zip(fits, todo):
            for a, d in zip(f.alternatives, r['alts']):
                d['terms'] = dict(a.terms)
                d.update(alt_check(al, a, r, ev.scan_nonground))
    with open(cache, 'wb') as fh:
        pickle.dump({'stamp': stamp, 'records': recs}, fh)
    return with_profile(name, recs)


def full_mask(rec: dict, image_hw) -> np.ndarray:
    """The record's object mask (H x W bool) from its dumped crop."""
    from benchmarks.fit_dump import uncrop
    (x0, y0), crop = uncrop(rec['mask'], None)
    out = np.zeros(image_hw, bool)
    h, w = crop.shape
    out[y0:y0 + h, x0:x0 + w] = crop[:image_hw[0] - y0, :image_hw[1] - x0]
    return out


def with_profile(name: str, recs: list[dict], coef=None, intercept=None) -> list[dict]:
    """Sets each hypothesis' profile features (``profile_x``), facing and profile cue value (the model
    ``coef``, ``intercept``; default: the shipped fit/profile_model.py) as the fitter computes them."""
    from autolabel_ros.config import from_dict
    from autolabel_ros.fit.heading import profile_cue, profile_features
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.fit.end_look import end_look_cues
    from autolabel_ros.io.kitti import read_image
    al = Autolabeler(from_dict({}))
    ds = KittiObjectDataset(SETS[name][1])
    cams, image = {}, {}
    for r in recs:
        fid = r['frame']
        if fid not in cams:
            calib = ds.calib(fid)
            cams = {fid: (np.linalg.inv(calib.T_cam_lidar) @ [0.0, 0.0, 0.0, 1.0])[:3]}
            image = {fid: (read_image(Path(SETS[name][1]) / 'image_2' / f'{fid}.png'), calib)}
        cam = cams[fid]
        im, calib = image[fid]
        sizes = al.fitter.cue_sizes(alt_fits(r))
        look = (end_look_cues(im, calib.K, calib.T_cam_lidar, cam, [d['pose'] for d in r['alts']], sizes,
                              len(r['points']), r['occluded_share'],
                              mask=full_mask(r, im.shape[:2]))
                if len(r['alts']) > 1 else [0.0] * len(r['alts']))
        for d, size, v in zip(r['alts'], sizes, look):
            d['profile_x'], d['facing'] = profile_features(r['points'], d['pose'], size, cam)
            d['terms']['cue_profile'] = profile_cue(r['points'], d['pose'], size, cam, coef, intercept)
            d['terms']['cue_end_look'] = v
    return recs


def decide(recs: list[dict], cues, weights: dict, w_select_iou: float = 0.0,
           tiebreak: tuple = ()) -> list[dict]:
    """Per record: the chosen hypothesis' index, whether it is flipped, its flip margin and heading logit
    (``tiebreak``: cues that only break the others' ties, fit/heading.py pick)."""
    from autolabel_ros.fit.heading import choose
    out = []
    by_frame: dict = {}
    for r in recs:
        by_frame.setdefault(r['frame'], []).append(r)
    for rs in by_frame.values():
        fits = [alt_fits(r)[0] for r in rs]
        chosen = choose(copy.deepcopy(fits), cues, weights, w_select_iou, tiebreak)
        for r, f in zip(rs, chosen):
            k = next(i for i, a in enumerate(f.alternatives) if a is f)
            out.append(dict(index=k, flipped=bool(np.cos(f.pose[3] - r['gt']['yaw']) < 0),
                            margin=f.terms['flip_margin'], logit=f.terms['heading_logit']))
    return out


def default_weights() -> dict:
    from autolabel_ros.config import from_dict
    fc = from_dict({}).fit
    return {'lamps': fc.w_lamps, 'headlamps': fc.w_headlamps, 'mean_shape': fc.w_mean_shape,
            'shape_code': fc.w_shape_code, 'profile': fc.w_profile, 'neighbours': fc.w_neighbours,
            'lane': fc.w_lane, 'css': fc.w_css, 'end_look': fc.w_end_look, 'mean_box': fc.w_mean_box,
            'hidden_shape': fc.w_hidden_shape}


def rows(weights: dict) -> list[tuple[str, list]]:
    out = [('none (fit energy alone)', ['none'])]
    out += [(f'{c} alone', [c]) for c in ALL_CUES]
    out.append(('all together', list(ALL_CUES)))
    return out


def table(sets, weights: dict) -> list[str]:
    from autolabel_ros.config import from_dict
    default = from_dict({}).fit.heading_cues
    data = {s: cue_records(s) for s in sets}
    head = '| cues | ' + ' | '.join(f'{NAMES[s]}: flips / cars' for s in sets) + ' |'
    lines = [head, '|---' * (len(sets) + 1) + '|']
    extra = [(f'default ({", ".join(default)})', default, ()),
             ('default + css voting (method hybrid before css.cue_tiebreak)', list(default) + ['css'], ()),
             ('default + css breaking ties (method hybrid)', list(default) + ['css'], ('css',))]
    for label, cues, tiebreak in [(lb, c, ()) for lb, c in rows(weights)] + extra:
        cells = []
        for s in sets:
            d = decide(data[s], cues, weights, tiebreak=tiebreak)
            n = sum(x['flipped'] for x in d)
            cells.append(f'{n} / {len(d)} ({100 * n / max(len(d), 1):.1f} %)')
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return lines


# weight grids of the search (cue values: colour cues in [-1, 1], mean-shape residual in metres,
# shape code in prior variances; the fit energies of a flip pair differ by ~0.001-0.05)
GRID = {'lamps': [0.01, 0.02, 0.05, 0.1, 0.2], 'headlamps': [0.005, 0.01, 0.02, 0.05, 0.1],
        'mean_shape': [0.25, 0.5, 1.0, 2.0, 4.0], 'shape_code': [0.005, 0.01, 0.02, 0.05, 0.1],
        'profile': [0.01, 0.02, 0.05, 0.1, 0.2], 'neighbours': [0.005, 0.01, 0.02, 0.05],
        'lane': [0.005, 0.01, 0.02, 0.05, 0.1],
        'css': [0.01, 0.02, 0.05, 0.1, 0.2], 'end_look': [0.005, 0.01, 0.02, 0.05, 0.1],
        'mean_box': [0.02, 0.05, 0.1, 0.2, 0.5], 'hidden_shape': [0.05, 0.1, 0.2, 0.3, 0.4]}


def search(train_sets, check_sets, rounds: int = 2, cues=ALL_CUES) -> dict:
    """Weights chosen on ``train_sets`` (fewest flips in all): each cue alone over its grid, then
    coordinate descent over the cues together (a cue whose best weight brings no gain stays off);
    prints the flips on ``check_sets`` beside them."""
    data = {s: cue_records(s) for s in set(train_sets) | set(check_sets)}

    def flips(sets, cues, w):
        return sum(sum(x['flipped'] for x in decide(data[s], cues, w)) for s in sets)

    def show(label, cues, w):
        print(f'{label}: train {flips(train_sets, cues, w)}  check '
              + ', '.join(f'{s} {flips([s], cues, w)}' for s in check_sets))
    show('none', ['none'], {})
    for c in cues:
        for v in GRID[c]:
            show(f'{c} {v:g}', [c], {c: v})
    w, on = {}, []
    best = flips(train_sets, ['none'], w)
    for _ in range(rounds):
        for c in cues:
            for v in [0.0] + GRID[c]:
                trial = dict(w, **{c: v})
                cues = [k for k, x in trial.items() if x > 0] or ['none']
                n = flips(train_sets, cues, trial)
                if n < best:
                    best, w = n, trial
        on = [k for k, x in w.items() if x > 0]
        show('together ' + ', '.join(f'{k} {w[k]:g}' for k in on), on or ['none'], w)
    return w


# occluded-share bins of the per-cue accuracy (fit/heading.py hidden_gate ramps over 0.3-0.7)
OCCLUSION_BINS = ((0.0, 0.3), (0.3, 0.7), (0.7, 0.9), (0.9, 1.01))
ACCURACY_CUES = ('energy', 'lamps', 'headlamps', 'profile', 'end_look', 'mean_box', 'hidden_shape',
                 'shape_code', 'mean_shape', 'css')


def flip_pair(rec: dict):
    """(right, wrong): the lowest-energy hypothesis heading within 90 deg of the truth and the lowest
    heading the other way, or None when the survivors all head one way."""
    yaw = rec['gt']['yaw']
    right = [a for a in rec['alts'] if np.cos(a['pose'][3] - yaw) >= 0]
    wrong = [a for a in rec['alts'] if np.cos(a['pose'][3] - yaw) < 0]
    if not right or not wrong:
        return None
    return min(right, key=lambda a: a['energy']), min(wrong, key=lambda a: a['energy'])


def cue_accuracy(recs: list[dict], bins=OCCLUSION_BINS, cues=ACCURACY_CUES) -> list[dict]:
    """Per occluded-share bin: the flip pairs and, per cue, how many it calls right / how many it calls
    at all (a cue whose value is the same for both, e.g. no evidence, calls nothing)."""
    out = []
    for lo, hi in bins:
        pairs = [fp for r in recs if lo <= r['alts'][0]['terms'].get('occluded', 0.0) < hi
                 for fp in [flip_pair(r)] if fp is not None]
        row = {'bin': (lo, hi), 'pairs': len(pairs)}
        for c in cues:
            diff = np.array([(w['energy'] - r['energy']) if c == 'energy'
                             else w['terms'].get(f'cue_{c}', 0.0) - r['terms'].get(f'cue_{c}', 0.0)
                             for r, w in pairs])
            row[c] = (int(np.sum(diff > 1e-9)), int(np.sum(np.abs(diff) > 1e-9)))
        out.append(row)
    return out


def accuracy_table(sets) -> list[str]:
    """The per-cue accuracy per occluded-share bin (:func:`cue_accuracy`), one block per set."""
    lines = []
    for s in sets:
        rows = cue_accuracy(cue_records(s))
        lines += [f'{NAMES[s]}: flip pairs whose cue calls the right end / calls at all, by the share of '
                  'the 2D box nearer objects hide', '',
                  '| hidden | pairs | ' + ' | '.join(ACCURACY_CUES) + ' |',
                  '|---' * (len(ACCURACY_CUES) + 2) + '|']
        for r in rows:
            cells = [f'{a}/{n}' if n else '-' for a, n in (r[c] for c in ACCURACY_CUES)]
            lines.append(f"| {r['bin'][0]:.1f}-{min(r['bin'][1], 1.0):.1f} | {r['pairs']} | "
                         + ' | '.join(cells) + ' |')
        lines.append('')
    return lines


def frame_fold(recs: list[dict], fold: int) -> list[dict]:
    """Every other frame of a set (sorted ids, from ``fold``): a 2-fold split that keeps a frame whole."""
    keep = set(sorted({r['frame'] for r in recs})[fold::2])
    return [r for r in recs if r['frame'] in keep]


def refine(data: dict, cues, w0: dict, rounds: int = 2) -> dict:
    """Coordinate descent of the weights of ``cues`` from ``w0`` (each over 0, its GRID and 0.25-2x its
    value) to the fewest flips summed over ``data`` (set -> records)."""
    def flips(w):
        on = [c for c in cues if w.get(c, 0.0) > 0] or ['none']
        return sum(sum(x['flipped'] for x in decide(r, on, w)) for r in data.values())
    w = dict(w0)
    best = flips(w)
    for _ in range(rounds):
        for c in cues:
            for v in sorted({0.0, *GRID[c], *(w[c] * f for f in (0.25, 0.5, 0.7, 1.4, 2.0))}):
                trial = dict(w, **{c: v})
                n = flips(trial)
                if n < best:
                    best, w = n, trial
    return w


def cross_validate(sets=('sim', 'apollo')) -> list[str]:
    """Does re-choosing the shipped cues' weights on the present fit carry over? Twice: refine them
    (:func:`refine`) on half the frames of ``sets``, count the flips on the other half with the shipped
    and with the refined weights; and once on all frames (what a re-choice would ship)."""
    from autolabel_ros.config import from_dict
    cues = [c for c in from_dict({}).fit.heading_cues]
    w0 = default_weights()
    data = {s: cue_records(s) for s in sets}

    def flips(recs, w):
        on = [c for c in cues if w.get(c, 0.0) > 0] or ['none']
        return sum(x['flipped'] for x in decide(recs, on, w))

    def changed(w):
        return ', '.join(f'{c} {w0[c]:g} -> {w[c]:g}' for c in cues if w[c] != w0[c]) or 'none'
    lines = []
    for fold in (0, 1):
        w = refine({s: frame_fold(data[s], fold) for s in sets}, cues, w0)
        held = {s: frame_fold(data[s], 1 - fold) for s in sets}
        lines.append(f'fold {fold}: refined on its half ({changed(w)}); held-out half, shipped -> refined: '
                     + ', '.join(f'{s} {flips(held[s], w0)} -> {flips(held[s], w)}' for s in sets))
    w = refine(data, cues, w0)
    lines.append(f'all frames: {changed(w)}; ' + ', '.join(f'{s} {flips(data[s], w0)} -> {flips(data[s], w)}'
                                                          for s in sets))
    return lines


def tiebreak_sweep(sets, margins=(0.0, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, float('inf'))) -> None:
    """Flips per set of the default cues with css breaking ties below each margin (inf: css votes on
    every object at fit.w_css, as method hybrid did before css.cue_tiebreak)."""
    import autolabel_ros.fit.heading as heading
    from autolabel_ros.config import from_dict
    w = default_weights()
    cues = list(from_dict({}).fit.heading_cues) + ['css']
    data = {s: cue_records(s) for s in sets}
    keep = heading.TIEBREAK_UNDECIDED
    try:
        for m in margins:
            heading.TIEBREAK_UNDECIDED = m
            flips = {s: sum(x['flipped'] for x in decide(data[s], cues, w, tiebreak=('css',))) for s in sets}
            print(f'css breaks ties below margin {m:g}: ' + ', '.join(f'{s} {n}' for s, n in flips.items()))
    finally:
        heading.TIEBREAK_UNDECIDED = keep


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sets', default='sim,apollo,kitti')
    p.add_argument('--out', default='/tmp')
    p.add_argument('--search', action='store_true',
                   help='choose the weights on sim + apollo (printed), then check on kitti')
    p.add_argument('--cues', default=','.join(ALL_CUES), help='cues the search may turn on')
    p.add_argument('--tiebreak-sweep', action='store_true',
                   help="flips of the default cues + css as a tie-breaker per margin (fit/heading.py "
                   'TIEBREAK_UNDECIDED): choose on sim + apollo, check on kitti')
    p.add_argument('--by-occlusion', action='store_true',
                   help='per cue: how often it calls the right end of a flip pair, by occluded share')
    p.add_argument('--cross-validate', action='store_true',
                   help="re-choose the shipped cues' weights on half the frames of sim + apollo, count the "
                   'flips on the other half')
    a = p.parse_args(argv)
    sets = [s for s in a.sets.split(',') if s]
    if a.by_occlusion or a.cross_validate:
        lines = accuracy_table(sets) if a.by_occlusion else []
        lines += cross_validate([s for s in sets if s != 'kitti']) if a.cross_validate else []
        print('\n'.join(lines))
        return
    if a.tiebreak_sweep:
        tiebreak_sweep(sets)
        return
    if a.search:
        search([s for s in sets if s != 'kitti'], [s for s in sets], cues=[c for c in a.cues.split(',') if c])
        return
    w = default_weights()
    lines = ['Flipped headings (error > 90 deg) per front/back cue, GT 2D boxes, MobileSAM masks; weights '
             + ', '.join(f'{k} {v:g}' for k, v in w.items()) + ' (fit.w_*).', ''] + table(sets, w)
    text = '\n'.join(lines) + '\n'
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / 'heading_cues.md').write_text(text)
    print(text)


if __name__ == '__main__':
    main()
