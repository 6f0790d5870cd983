"""How full are the cars' ends: the procedural family (the shipped prior's cars) against the
ApolloCar3D models (read from ../shared/data at run time, never copied).

Where the scan sees both ends of an ApolloCar3D car its fitted box still comes out ~0.3 m short
(benchmarks/length_evidence.py), and not with the ApolloCar3D prior: a property of the procedural
family. This measures one candidate: how the ends taper. Per car (its own frame: x forward, y left,
z up), from surface samples: within ``DEPTHS`` metres of each end's tip, the widest point as a share
of the half-width (plan view: 1 = a square end, less = rounded corners) and the height band the end
occupies (shares of the height). A boxy end explains a scan of rounded corners with a shorter box.

    python benchmarks/end_shape.py [--procedural 40]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEPTHS = (0.05, 0.15, 0.3)     # m in from the tip
SAMPLES = 20000                # surface samples per car


def end_fullness(mesh: trimesh.Trimesh, depths=DEPTHS, samples: int = SAMPLES) -> dict:
    """{'front'|'rear': [(half-width share, lowest, highest height share) per depth]} of a car mesh."""
    pts, _ = trimesh.sample.sample_surface(mesh, samples, seed=0)
    lo, hi = pts.min(0), pts.max(0)
    half_w, height, mid_y = (hi[1] - lo[1]) / 2, hi[2] - lo[2], (hi[1] + lo[1]) / 2
    out = {}
    for end, tip, sign in (('front', hi[0], 1.0), ('rear', lo[0], -1.0)):
        inward = sign * (tip - pts[:, 0])
        rows = []
        for d in depths:
            sel = pts[inward < d]
            z = (sel[:, 2] - lo[2]) / height
            rows.append((float(np.abs(sel[:, 1] - mid_y).max() / half_w), float(z.min()), float(z.max())))
        out[end] = rows
    return out


def table(sets: dict, depths=DEPTHS) -> list[str]:
    """Markdown rows: per set and end, the mean half-width share and height band at each depth."""
    head = '| cars | end | ' + ' | '.join(f'within {d:g} m: width, height band' for d in depths) + ' |'
    lines = [head, '|---' * (len(depths) + 2) + '|']
    for name, meshes in sets.items():
        prof = [end_fullness(m, depths) for m in meshes]
        for end in ('front', 'rear'):
            cells = []
            for k in range(len(depths)):
                w, zl, zh = np.mean([p[end][k] for p in prof], axis=0)
                cells.append(f'{w:.2f}, {zl:.2f}-{zh:.2f}')
            lines.append(f'| {name} ({len(meshes)}) | {end} | ' + ' | '.join(cells) + ' |')
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--procedural', type=int, default=40, help='procedural cars (prior seeds 0..N-1)')
    a = p.parse_args(argv)
    from autolabel_ros.shape.cars import car_collection
    sets = {'procedural': car_collection(range(a.procedural))}
    try:
        from benchmarks.apollo_cars import load_models
        sets['ApolloCar3D'] = list(load_models())
    except FileNotFoundError as e:
        print(f'ApolloCar3D models skipped: {e}')
    print('\n'.join(table(sets)))


if __name__ == '__main__':
    main()
