"""The run report of the offline tool: ``report/summary.json`` and figures to judge a run at a glance.

- ``summary.json``: input and pairing counts, frames (labelled / failed with reasons), objects
  (accepted / rejected, rejection reasons counted), per-frame counts, and under ``timing`` and ``run``
  the wall-clock numbers (percentiles, frames/s, workers) — the only part that differs between two
  runs over the same input.
- ``bev_sheet.png``: bird's-eye views (LiDAR points + boxes, green accepted / red rejected, heading
  tick) of up to 30 frames spread over the run, all frames of a shorter run. Each figure is drawn
  once per run: no figure per frame (one PNG per frame cost as much as the rest of the report).
- ``confidence.png``: histogram of label scores, accepted vs rejected, and the rejection reasons.
- ``timing.png``: per-frame time over the run and the stage breakdown.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from autolabel_ros.core.geometry import bev_corners
from autolabel_ros.core.prompts import count_reasons

SHEET_MAX = 30
TIMING_KEYS = ('frame_s', 'detect_s', 'segment_s', 'fit_s', 'total_s')


def percentiles(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return {}
    return {'n': int(len(v)), 'mean': float(v.mean()), 'p50': float(np.percentile(v, 50)),
            'p90': float(np.percentile(v, 90)), 'p99': float(np.percentile(v, 99)), 'max': float(v.max())}


def _source_keys(sources) -> tuple:
    src = sorted(sources or ()) or ['given']
    return tuple(src) + (('+'.join(src),) if len(src) > 1 else ())


def _flatten(counter: Counter) -> dict:
    """{source: objects it proposed (alone or with others), 'a+b': objects exactly a and b proposed}."""
    out: Counter = Counter()
    for keys, n in counter.items():
        for k in keys:
            out[k] += n
    return dict(sorted(out.items()))


def build_summary(records: Sequence[dict], failures: Sequence[dict], source_info: dict, pairing: dict,
                  selected: int, outputs: dict) -> dict:
    """Everything but the wall-clock parts (see :func:`timing_summary`)."""
    accepted = rejected = 0
    reasons: Counter = Counter()
    classes: Counter = Counter()
    scores_acc, scores_rej = [], []
    per_frame = []
    n_prompts = 0
    dropped: Counter = Counter()
    by_source: Counter = Counter()        # prompts per source (see proposals.source_counts)
    acc_by_source: Counter = Counter()
    for r in records:
        acc = [lab for lab in r['labels'] if lab['accepted']]
        rej = [lab for lab in r['labels'] if not lab['accepted']]
        accepted += len(acc)
        rejected += len(rej)
        n_prompts += len(r['prompts'])
        by_source.update(_source_keys(p.get('sources')) for p in r['prompts'])
        acc_by_source.update(_source_keys(lab.get('sources')) for lab in acc)
        classes.update(lab['cls'] for lab in acc)
        for lab in rej:
            reasons.update(lab['reasons'] or ['unspecified'])
        scores_acc += [lab['score'] for lab in acc]
        scores_rej += [lab['score'] for lab in rej]
        drop = count_reasons(r.get('dropped_prompts', []))
        dropped.update(drop)
        per_frame.append({'frame': r['name'], 'index': r['index'], 'stamp_ns': r['stamp_ns'],
                          'prompts': len(r['prompts']), 'accepted': len(acc), 'rejected': len(rej),
                          'dropped_prompts': drop,
                          'prompts_by_source': _flatten(Counter(_source_keys(p.get('sources'))
                                                                for p in r['prompts']))})
    fail_reasons = Counter(f['error'].split(':')[0] for f in failures)
    return {
        'input': source_info,
        'pairing': pairing,
        'frames': {'selected': selected, 'labelled': len(records), 'failed': len(failures),
                   'failed_frames': [{'frame': f['name'], 'index': f['index'], 'error': f['error']}
                                     for f in failures],
                   'failure_kinds': dict(sorted(fail_reasons.items()))},
        'objects': {'prompts': n_prompts, 'dropped_prompts': dict(sorted(dropped.items())),
                    'labels': accepted + rejected, 'accepted': accepted,
                    'rejected': rejected, 'rejection_reasons': dict(sorted(reasons.items())),
                    'accepted_by_class': dict(sorted(classes.items())),
                    'prompts_by_source': _flatten(by_source), 'accepted_by_source': _flatten(acc_by_source),
                    'score_accepted': percentiles(scores_acc), 'score_rejected': percentiles(scores_rej)},
        'per_frame': per_frame,
        'outputs': outputs,
    }


def timing_summary(records: Sequence[dict]) -> dict:
    keys = sorted({k for r in records for k in r.get('timings', {})})
    return {k: percentiles([r['timings'].get(k) for r in records]) for k in keys}


# -- figures -------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _draw_bev(ax, record: dict, bev: np.ndarray, xlim=(-5, 60), ylim=(-25, 25)):
    """One frame's bird's-eye view: ego marker, LiDAR points, boxes with heading ticks, title."""
    ax.plot(0, 0, marker='>', color='k', ms=5)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect('equal')
    ax.tick_params(labelsize=5)
    if bev is not None and len(bev):
        pts = np.asarray(bev, dtype=np.float32)
        ax.scatter(pts[:, 0], pts[:, 1], s=0.2, c='0.55', linewidths=0, rasterized=True)
    for lab in record['labels']:
        if not _finite_centre(lab):
            continue   # a prompt that could not be lifted at all (e.g. an empty box)
        color = 'tab:green' if lab['accepted'] else 'tab:red'
        c = bev_corners(lab['center'], lab['size'], lab['yaw'])
        poly = np.vstack([c, c[:1]])
        ax.plot(poly[:, 0], poly[:, 1], color=color, lw=1.2, ls='-' if lab['accepted'] else '--')
        front = np.asarray(lab['center'][:2]) + 0.5 * lab['size'][0] * np.array([np.cos(lab['yaw']),
                                                                                  np.sin(lab['yaw'])])
        ax.plot([lab['center'][0], front[0]], [lab['center'][1], front[1]], '-', color=color, lw=1.2)
        ax.text(c[:, 0].max(), c[:, 1].max(), f"{lab['id']}:{lab['score']:.2f}", fontsize=5, color=color,
                clip_on=True)
    n_acc = sum(lab['accepted'] for lab in record['labels'])
    ax.set_title(f"{record['name']}: {n_acc} ok / {len(record['labels']) - n_acc} rej "
                 f"({len(record['prompts'])} prompts)", fontsize=7)


def _finite_centre(lab: dict) -> bool:
    """A label with a centre (a prompt that could not be lifted has none: null in the saved JSON)."""
    c = lab.get('center')
    return c is not None and all(v is not None and np.isfinite(v) for v in c)


def _extent(records):
    """A common BEV window covering all labels (at least 0..50 m ahead, +-20 m aside)."""
    centres = [lab['center'] for r in records for lab in r['labels'] if _finite_centre(lab)]
    xs = [c[0] for c in centres] or [0.0]
    ys = [c[1] for c in centres] or [0.0]
    x_hi = float(np.clip(max(50.0, max(xs) + 8), 50, 80))
    y_hi = float(np.clip(max(20.0, max(abs(v) for v in ys) + 6), 20, 60))
    return (-5.0, x_hi), (-y_hi, y_hi)


def _tight_layout(fig):
    """Lay the figure out once and keep it: the engine ``tight_layout`` leaves on the figure makes
    every ``savefig`` lay it out again in an extra drawing pass (a third of a BEV figure's time)."""
    fig.tight_layout()
    fig.set_layout_engine(None)


def save_fig(fig, path: Path):
    """PNG without a timestamp in its metadata (matplotlib adds none for PNG besides 'Software')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={'Software': None})


def figure_count(n_records: int) -> int:
    """How many PNGs :func:`write_figures` writes for ``n_records`` frames (for a progress bar)."""
    return 3 if n_records else 2


def write_figures(report_dir: Path, records: Sequence[dict], bevs: dict, on_figure=None) -> list[str]:
    """All report PNGs; returns their paths relative to ``report_dir``. ``on_figure()`` is called after
    each PNG (a progress bar)."""
    plt = _plt()
    report_dir = Path(report_dir)
    written = []
    xlim, ylim = _extent(records)
    if records:
        idx = np.unique(np.linspace(0, len(records) - 1, min(SHEET_MAX, len(records))).round().astype(int))
        sel = [records[i] for i in idx]
        cols = min(4, len(sel))
        rows = int(np.ceil(len(sel) / cols))
        ratio = (ylim[1] - ylim[0]) / (xlim[1] - xlim[0])
        # one window for all panels: shared axes label only the outer ones (a fifth of the sheet's time)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, (4.2 * ratio + 0.45) * rows + 0.4),
                                 squeeze=False, sharex=True, sharey=True)
        for ax, r in zip(axes.ravel(), sel):
            _draw_bev(ax, r, bevs.get(r['index']), xlim, ylim)
        for ax in axes.ravel()[len(sel):]:
            ax.axis('off')
        fig.suptitle(f'bird\'s-eye views, {len(sel)} of {len(records)} frames (green accepted, red rejected)',
                     fontsize=9)
        _tight_layout(fig)
        save_fig(fig, report_dir / 'bev_sheet.png')
        plt.close(fig)
        written.append('bev_sheet.png')
        if on_figure:
            on_figure()

    # confidence histogram + rejection reasons
    acc = [lab['score'] for r in records for lab in r['labels'] if lab['accepted']]
    rej = [lab['score'] for r in records for lab in r['labels'] if not lab['accepted']]
    reasons = Counter(x for r in records for lab in r['labels'] if not lab['accepted']
                      for x in (lab['reasons'] or ['unspecified']))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    bins = np.linspace(0, 1, 21)
    a1.hist([acc, rej], bins=bins, stacked=True, color=['tab:green', 'tab:red'],
            label=[f'accepted ({len(acc)})', f'rejected ({len(rej)})'])
    a1.set_xlabel('label confidence')
    a1.set_ylabel('labels')
    a1.legend(fontsize=8)
    a1.set_title('confidence')
    if reasons:
        names = sorted(reasons)
        a2.barh(names, [reasons[n] for n in names], color='tab:red')
        a2.tick_params(labelsize=7)
    else:
        a2.text(0.5, 0.5, 'no rejected labels', ha='center', va='center')
        a2.set_axis_off()
    a2.set_title('rejection reasons')
    _tight_layout(fig)
    save_fig(fig, report_dir / 'confidence.png')
    plt.close(fig)
    written.append('confidence.png')
    if on_figure:
        on_figure()
    written.append(write_timing_figure(report_dir, records))
    if on_figure:
        on_figure()
    return written


def write_timing_figure(report_dir: Path, records: Sequence[dict]) -> str:
    """Per-frame wall time along the run and the per-stage distribution (changes from run to run)."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    t = [r['timings'].get('frame_s', np.nan) for r in records]
    a1.plot([r['index'] for r in records], t, '.-', color='tab:blue')
    a1.set_xlabel('frame index')
    a1.set_ylabel('seconds per frame')
    a1.set_title('time per frame (incl. detection)')
    keys = [k for k in TIMING_KEYS if any(k in r['timings'] for r in records)]
    data = [[r['timings'][k] for r in records if k in r['timings']] for k in keys]
    if data:
        a2.boxplot(data, tick_labels=keys, showfliers=True)
    a2.set_ylabel('seconds')
    a2.set_title('stages')
    a2.tick_params(labelsize=7)
    _tight_layout(fig)
    save_fig(fig, Path(report_dir) / 'timing.png')
    plt.close(fig)
    return 'timing.png'


def write_tracks_figure(path: Path, ego_xy: np.ndarray, tracks: dict, points_xy: np.ndarray | None = None,
                        title: str = '') -> None:
    """Bird's-eye view of a drive in its world frame: the ego path, thinned LiDAR points, and per
    track (``tracks``: id -> list of (center, size, yaw, interpolated) in the world frame) the path of
    its box centres (dotted where interpolated) and its last box with the heading arrow and the id."""
    from autolabel_ros.core.geometry import bev_corners

    plt = _plt()
    ego_xy = np.asarray(ego_xy, dtype=np.float64).reshape(-1, 2)
    xs = [ego_xy[:, 0]] + [np.array([c[0] for c, *_ in v]) for v in tracks.values()]
    ys = [ego_xy[:, 1]] + [np.array([c[1] for c, *_ in v]) for v in tracks.values()]
    x0, x1 = min(x.min() for x in xs) - 8, max(x.max() for x in xs) + 8
    y0, y1 = min(y.min() for y in ys) - 8, max(y.max() for y in ys) + 8
    fig, ax = plt.subplots(figsize=(12, max(3.5, min(9.0, 12 * (y1 - y0) / max(x1 - x0, 1.0)))))
    if points_xy is not None and len(points_xy):
        p = np.asarray(points_xy, dtype=np.float64)
        keep = (p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)
        ax.scatter(p[keep, 0], p[keep, 1], s=0.2, c='0.75', rasterized=True)
    ax.plot(ego_xy[:, 0], ego_xy[:, 1], 'k-', lw=2, label='ego path')
    cmap = plt.get_cmap('tab20')
    for tid, items in sorted(tracks.items()):
        col = cmap(int(tid) % 20)
        cs = np.array([c for c, *_ in items])
        ax.plot(cs[:, 0], cs[:, 1], '-', color=col, lw=1.5)
        interp = np.array([bool(i) for *_, i in items])
        if interp.any():
            ax.plot(cs[interp, 0], cs[interp, 1], 'x', color=col, ms=4)
        c, size, yaw, _ = items[-1]
        poly = bev_corners(c, size, yaw)
        ax.fill(poly[:, 0], poly[:, 1], color=col, alpha=0.5)
        ax.arrow(c[0], c[1], np.cos(yaw) * size[0] / 2, np.sin(yaw) * size[0] / 2, color='k', width=0.05,
                 length_includes_head=True)
        ax.text(c[0], c[1] + 1.2, str(tid), fontsize=7)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect('equal')
    ax.set_xlabel('x (m), world = the LiDAR frame of the first frame')
    ax.set_ylabel('y (m)')
    ax.set_title(title or 'tracks (x: interpolated boxes; last box of each track drawn)')
    ax.legend(loc='upper right', fontsize=7)
    _tight_layout(fig)
    save_fig(fig, Path(path))
    plt.close(fig)
