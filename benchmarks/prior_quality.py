"""Shape-prior quality: reconstruction of held-out models by the PCA prior, d = 1..8.

  python benchmarks/prior_quality.py [--train 150] [--heldout 50] [--folds 5] [--json out.json]

Metrics per held-out model, from its least-squares code (projection of its truncated SDF grid):
- ``sdf_err``: mean |phi_rec - phi_true| (metres) over samples near the surface (|phi_true| < 0.1 m),
- ``iou``: IoU of the occupancies {phi_rec < 0} and {phi_true < 0} on the grid,
- ``size``: mean |l, w, h error| (metres) of the tight box of the reconstruction's marching-cubes
  mesh against the model's true box, and ``box_iou``: IoU of the two centred boxes.
Sets: procedural cars (train seeds 0..N-1, held-out seeds 5000..), ApolloCar3D k-fold
leave-some-out (when ../shared/data is present), and the cross cases (Apollo models coded by the
procedural prior and vice versa). SDF stacks are cached in ~/.cache/autolabel_ros/prior_sdf_*.npz.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from autolabel_ros.shape.mesh import sdf_to_mesh, tight_extent
from autolabel_ros.shape.prior import (DEFAULT_EXTENT, DEFAULT_RESOLUTION, DEFAULT_TRUNCATION, compute_sdfs,
                                       pca_prior)

CACHE = Path.home() / '.cache' / 'autolabel_ros'
APOLLO = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'cars' / 'apollocar3d' / 'car_models_json'


def cached_sdfs(name: str, make_meshes):
    path = CACHE / f'prior_sdf_{name}_{"x".join(map(str, DEFAULT_RESOLUTION))}_T{DEFAULT_TRUNCATION}.npz'
    if path.exists():
        z = np.load(path)
        return z['sdfs'], z['sizes']
    sdfs, sizes = compute_sdfs(make_meshes(), progress=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, sdfs=sdfs.astype(np.float32), sizes=sizes)
    return sdfs, sizes


def reconstruction(train: np.ndarray, test: np.ndarray, ds, band: float = 0.1, f16: bool = False,
                   test_sizes=None):
    """{d: (sdf_err, iou[, size_err, box_iou])} averaged over the test models."""
    prior = pca_prior(train, np.zeros((len(train), 3)), max(ds), DEFAULT_RESOLUTION, DEFAULT_EXTENT,
                      DEFAULT_TRUNCATION)
    basis = prior.basis.reshape(prior.n_components, -1)
    if f16:
        basis = basis.astype(np.float16).astype(np.float32)
    mean = prior.mean.reshape(-1)
    out = {}
    for d in ds:
        errs, ious, size_errs, box_ious = [], [], [], []
        for i, t in enumerate(test.reshape(len(test), -1)):
            code = basis[:d] @ (t - mean)
            rec = mean + code @ basis[:d]
            near = np.abs(t) < band
            errs.append(np.abs(rec - t)[near].mean())
            a, b = rec < 0, t < 0
            ious.append((a & b).sum() / max((a | b).sum(), 1))
            if test_sizes is not None:
                _, size = tight_extent(sdf_to_mesh(rec.reshape(prior.grid_shape), prior))
                size_errs.append(np.abs(size - test_sizes[i]).mean())
                inter = np.prod(np.minimum(size, test_sizes[i]))
                box_ious.append(inter / (np.prod(size) + np.prod(test_sizes[i]) - inter))
        out[d] = (float(np.mean(errs)), float(np.mean(ious)))
        if test_sizes is not None:
            out[d] += (float(np.mean(size_errs)), float(np.mean(box_ious)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--train', type=int, default=150)
    ap.add_argument('--heldout', type=int, default=50)
    ap.add_argument('--folds', type=int, default=5)
    ap.add_argument('--json', default='')
    args = ap.parse_args(argv)
    from autolabel_ros.shape.cars import car_collection
    ds = list(range(1, 9))
    res = {}
    tr, _ = cached_sdfs(f'proc0-{args.train}', lambda: car_collection(range(args.train)))
    te, te_sizes = cached_sdfs(f'proc5000-{args.heldout}',
                               lambda: car_collection(range(5000, 5000 + args.heldout)))
    res['procedural held-out'] = reconstruction(tr, te, ds, test_sizes=te_sizes)
    res['procedural held-out, float16 basis'] = reconstruction(tr, te, ds, f16=True)
    res['procedural training models 0..49'] = reconstruction(tr, tr[:50], ds)
    if APOLLO.is_dir():
        from autolabel_ros.shape.mesh_io import load_collection
        ap_sdfs, ap_sizes = cached_sdfs('apollo', lambda: [m.mesh for m in load_collection(APOLLO)])
        folds = np.array_split(np.random.default_rng(0).permutation(len(ap_sdfs)), args.folds)
        per = []
        for f in folds:
            mask = np.ones(len(ap_sdfs), bool)
            mask[f] = False
            per.append(reconstruction(ap_sdfs[mask], ap_sdfs[f], ds, test_sizes=ap_sizes[f]))
        res[f'apollo {args.folds}-fold held-out'] = {
            d: tuple(float(np.average([p[d][i] for p in per], weights=[len(f) for f in folds]))
                     for i in range(4)) for d in ds}
        res['apollo models coded by the procedural prior'] = reconstruction(tr, ap_sdfs, ds,
                                                                            test_sizes=ap_sizes)
        res['procedural held-out coded by the apollo prior'] = reconstruction(ap_sdfs, te, ds)
    print(f'{"set":50s} ' + ' '.join(f'd={d:<11d}' for d in ds))
    for name, r in res.items():
        print(f'{name:50s} ' + ' '.join(f'{r[d][0] * 100:4.1f}cm/{r[d][1]:.3f}' for d in ds))
    print('(mean |SDF error| within 0.1 m of the surface / occupancy IoU)')
    print(f'\n{"set: mesh box of the reconstruction vs true box":50s} '
          + ' '.join(f'd={d:<11d}' for d in ds))
    for name, r in res.items():
        if len(r[1]) == 4:
            print(f'{name:50s} ' + ' '.join(f'{r[d][2] * 100:4.1f}cm/{r[d][3]:.3f}' for d in ds))
    print('(mean |l, w, h error| / IoU of the centred boxes)')
    if args.json:
        Path(args.json).write_text(json.dumps({k: {str(d): v for d, v in r.items()} for k, r in res.items()},
                                              indent=1))


if __name__ == '__main__':
    main()
