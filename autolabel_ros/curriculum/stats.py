"""Curriculum loops over several fine-tuning seeds: mean and spread per loop, and paired comparisons of
two loops within each seed (a sign test over the seeds, a bootstrap over the evaluation cars).

A loop's AP on a dozen labelled frames moves by a car's worth (~5 points) when one fit changes, and
the fine-tuning seed alone moves it by as much as a loop does; one chain per seed on the same pools
and the same evaluation cars lets the loops be compared car by car instead.
"""
from __future__ import annotations

import numpy as np

# per-loop measures: AP over the matched moderate cars, then the all-car ones of car_summary
MEASURES = ('3D@0.5_mod', '3D@0.7_mod', 'BEV@0.7_mod', 'mean_iou3d_all', 'iou_ge_0.5', 'iou_ge_0.7',
            'flips_all', 'css_frontback')
PERCENT = {'flips_all', 'css_frontback', 'iou_ge_0.5', 'iou_ge_0.7'}
LOWER_IS_BETTER = {'flips_all'}


def car_summary(cars: list[dict]) -> dict:
    """All-car measures of one evaluation: mean 3D IoU of every car's fitted box (0 where none was
    fitted), shares with IoU >= 0.5 / 0.7, share with the heading > 90 deg off, the network's
    front/back right (cars with an end towards the camera)."""
    if not cars:
        return {}
    iou = np.array([c['iou3d'] for c in cars])
    yaw = np.array([c['yaw_err_deg'] for c in cars])
    ends = [c['end_right'] for c in cars if c['end_right'] is not None]
    return {'mean_iou3d_all': float(iou.mean()), 'iou_ge_0.5': float(np.mean(iou >= 0.5)),
            'iou_ge_0.7': float(np.mean(iou >= 0.7)), 'flips_all': float(np.mean(yaw > 90.0)),
            'n_cars': len(cars), 'css_frontback': float(np.mean(ends)) if ends else None,
            'css_ends': len(ends)}


def _value(row: dict, key: str):
    v = row.get(key)
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def per_loop(chains: dict) -> list[dict]:
    """``chains``: seed -> that seed's loop rows (loop 0 first). Per loop: mean, sample std and n over
    the seeds of each measure."""
    n_loops = max(len(rows) for rows in chains.values())
    out = []
    for k in range(n_loops):
        rows = [rows[k] for rows in chains.values() if len(rows) > k]
        d = {'loop': k, 'level': rows[0].get('level', '-'), 'seeds': len(rows)}
        for key in MEASURES:
            v = [x for x in (_value(r, key) for r in rows) if x is not None]
            if v:
                d[key] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
        out.append(d)
    return out


def sign_test(diffs) -> float:
    """Two-sided sign test p of paired differences (ties dropped); 1.0 without any untied pair."""
    from scipy.stats import binomtest
    d = np.asarray(diffs, float)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    return float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0


def car_bootstrap(chains: dict, a: int, b: int, key: str = 'iou3d', n_boot: int = 4000,
                  seed: int = 0) -> tuple[float, float, float, int]:
    """Mean over cars of (loop b - loop a) of a per-car value averaged over the seeds, and its 95 %
    bootstrap interval resampling the cars (the seeds' chains are paired car by car). Returns
    (mean, lo, hi, cars)."""
    diffs = []
    for rows in chains.values():
        if len(rows) <= max(a, b) or 'cars' not in rows[a] or 'cars' not in rows[b]:
            continue
        va = {c['car']: c[key] for c in rows[a]['cars']}
        diffs.append({c['car']: c[key] - va[c['car']] for c in rows[b]['cars'] if c['car'] in va})
    if not diffs:
        return float('nan'), float('nan'), float('nan'), 0
    common = sorted(set.intersection(*(set(d) for d in diffs)))
    per_car = np.array([np.mean([d[c] for d in diffs]) for c in common])
    if not len(per_car):
        return float('nan'), float('nan'), float('nan'), 0
    rng = np.random.default_rng(seed)
    boots = per_car[rng.integers(0, len(per_car), (n_boot, len(per_car)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(per_car.mean()), float(lo), float(hi), len(per_car)


def paired(chains: dict, a: int, b: int) -> dict:
    """Loop b against loop a within each seed: per measure the per-seed differences (b - a), their mean,
    the seeds where b is better / worse (``wins`` / ``losses``; fewer flips is better) and the sign test;
    and the car bootstrap of the 3D IoU difference."""
    out = {'a': a, 'b': b}
    for key in MEASURES:
        d = []
        for rows in chains.values():
            if len(rows) > max(a, b):
                va, vb = _value(rows[a], key), _value(rows[b], key)
                if va is not None and vb is not None:
                    d.append(vb - va)
        if d:
            better = -np.array(d) if key in LOWER_IS_BETTER else np.array(d)
            out[key] = {'diffs': d, 'mean': float(np.mean(d)), 'wins': int(np.sum(better > 0)),
                        'losses': int(np.sum(better < 0)), 'p_sign': sign_test(d)}
    out['car_iou3d'] = car_bootstrap(chains, a, b)
    return out


def _fmt(key: str, v) -> str:
    scale = 100.0 if key in PERCENT or key == 'mean_iou3d_all' else 1.0
    return format(v * scale, '.1f')


def seeds_table(chains: dict) -> str:
    """Markdown: mean +- std over the seeds per loop, then loop 1 vs 0 and loop 2 vs 1 (and any further
    pair of consecutive loops) within the seeds."""
    names = {'3D@0.5_mod': '3D@0.5 mod', '3D@0.7_mod': '3D@0.7 mod', 'BEV@0.7_mod': 'BEV@0.7 mod',
             'mean_iou3d_all': 'mean IoU3D x100 (all cars)', 'iou_ge_0.5': 'IoU3D >= 0.5 (all)',
             'iou_ge_0.7': 'IoU3D >= 0.7 (all)', 'flips_all': 'flips (all cars)',
             'css_frontback': 'network front/back'}
    summ = per_loop(chains)
    lines = [f'{len(chains)} fine-tuning seeds ({", ".join(str(s) for s in chains)}): mean +- std over the '
             'seeds (all-car measures over every evaluation car, fitted box accepted or not)', '',
             '| loop | level | ' + ' | '.join(names[k] for k in MEASURES) + ' |',
             '| --- ' * (2 + len(MEASURES)) + '|']
    for d in summ:
        cells = [f'{_fmt(k, d[k][0])} +- {_fmt(k, d[k][1])}' if k in d else 'n/a' for k in MEASURES]
        lines.append(f"| {d['loop']} | {d['level']} | " + ' | '.join(cells) + ' |')
    lines += ['', '| comparison | ' + ' | '.join(names[k] for k in MEASURES)
              + ' | per-car IoU3D x100, 95 % CI |',
              '| --- ' * (2 + len(MEASURES)) + '|']
    for k in range(1, len(summ)):
        pr = paired(chains, k - 1, k)
        cells = []
        for key in MEASURES:
            if key not in pr:
                cells.append('n/a')
                continue
            q = pr[key]
            cells.append(f"{'+' if q['mean'] >= 0 else ''}{_fmt(key, q['mean'])} "
                         f"({q['wins']}/{q['losses']}, p {q['p_sign']:.2f})")
        m, lo, hi, n = pr['car_iou3d']
        ci = 'n/a' if not n else f'{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] ({n} cars)'
        lines.append(f'| loop {k} - loop {k - 1} | ' + ' | '.join(cells) + f' | {ci} |')
    lines += ['', 'comparison cells: mean of the per-seed differences (seeds better / worse, two-sided sign '
              'test p); last column: the per-car 3D IoU difference averaged over the seeds, its mean over '
              'the cars and a 95 % bootstrap interval over the cars.']
    return '\n'.join(lines)


def plot_seeds(chains: dict, path) -> None:
    """Per measure, each seed's chain (thin) and the mean +- std (thick)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = [('3D@0.5_mod', 1.0), ('3D@0.7_mod', 1.0), ('mean_iou3d_all', 100.0), ('css_frontback', 100.0)]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    summ = per_loop(chains)
    for i, (key, scale) in enumerate(keys):
        col = f'C{i}'
        for rows in chains.values():
            pts = [(r['loop'], _value(r, key)) for r in rows if _value(r, key) is not None]
            if pts:
                ax.plot(*zip(*[(x, y * scale) for x, y in pts]), color=col, alpha=0.25, lw=0.8)
        pts = [(d['loop'], d[key]) for d in summ if key in d]
        if pts:
            ax.errorbar([x for x, _ in pts], [m * scale for _, (m, _, _) in pts],
                        yerr=[s * scale for _, (_, s, _) in pts], color=col, marker='o', capsize=3,
                        label=key.replace('_', ' ').replace('mean iou3d all', 'mean IoU3D x100')
                        .replace('css frontback', 'network front/back %'))
    ax.set_xlabel(f'curriculum loop (0 = simulator weights), {len(chains)} seeds')
    ax.set_ylabel('AP R40 / % ')
    ax.set_xticks([d['loop'] for d in summ])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
