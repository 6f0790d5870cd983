"""PCA prior vs DeepSDF shape space on procedural cars NOT used to build either (seeds 20000+).

Per held-out car: the SDF grid (96 x 40 x 38), then the best reconstruction each space allows:
- PCA d=5 (the packaged prior) and d=2: least-squares codes (projection on the basis);
- DeepSDF exact: auto-decoder inference of the latent on the sphere (shape/deepsdf.fit_latent), decoded
  by the MLP;
- DeepSDF baked: least-squares codes in the baked first-order grids, i.e. what the fitter can reach.
Error = mean |phi error| where the true |phi| < 0.1 m; IoU of the occupancies (phi < 0).

    python benchmarks/shape_space_quality.py [--deepsdf FILE] [--cars 12] [--out RESULT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def scores(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    near = np.abs(true) < 0.1
    err = float(np.abs(pred - true)[near].mean())
    a, b = pred < 0, true < 0
    return err, float((a & b).sum() / max(1, (a | b).sum()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--deepsdf', default='')
    ap.add_argument('--cars', type=int, default=12)
    ap.add_argument('--grids', default='', help='cached held-out grids .npz (sdf, sizes)')
    ap.add_argument('--out', default='')
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from autolabel_ros.shape.deepsdf import DeepSdfSpace, default_deepsdf_path, fit_latent
    from autolabel_ros.shape.prior import compute_sdfs, load_prior
    pca = load_prior(None)
    space = DeepSdfSpace.load(a.deepsdf or default_deepsdf_path())
    if a.grids:
        sdfs = np.load(a.grids)['sdf'][:a.cars].astype(np.float32)
    else:
        from autolabel_ros.shape.cars import DEFAULT_SIZE_SCALE, car_collection
        sdfs, _ = compute_sdfs(car_collection(range(20000, 20000 + a.cars), size_scale=DEFAULT_SIZE_SCALE))
    rows = {k: [] for k in ('pca d=5', 'pca d=2', 'deepsdf exact', 'deepsdf baked')}
    baked = space.prior
    for g in sdfs:
        for d, key in ((5, 'pca d=5'), (2, 'pca d=2')):
            rows[key].append(scores(pca.decode(pca.encode(g, d)), g))
        z = fit_latent(space.net, g, space.centre)
        from autolabel_ros.shape.deepsdf import decode_grid
        rows['deepsdf exact'].append(scores(decode_grid(space.net, z, baked.grid_res), g))
        B = baked.basis.reshape(baked.n_components, -1)
        c, *_ = np.linalg.lstsq(B.T, (g - baked.mean).reshape(-1), rcond=None)
        rows['deepsdf baked'].append(scores(baked.decode(c), g))
    res = {k: {'sdf_err_cm': round(100 * float(np.mean([r[0] for r in v])), 2),
               'iou': round(float(np.mean([r[1] for r in v])), 3)} for k, v in rows.items()}
    res['n_cars'] = len(sdfs)
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
