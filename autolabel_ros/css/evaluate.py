"""Quality of a CSS network on labelled patches: NOCS error and front/back accuracy.

- ``nocs_l1``: mean absolute NOCS error per channel on the mask cells (NOCS units: 1 = the diagonal);
- ``nocs_dist``: mean Euclidean NOCS error (x the car's diagonal, ~4.4 m, gives metres);
- ``frontback_acc``: on patches whose true |facing| > 0.3 (an end is visible), how often the sign of
  the predicted facing (:func:`autolabel_ros.css.cue.facing_from_nocs`) is right.
"""
from __future__ import annotations

import numpy as np
import torch

from autolabel_ros.css.cue import facing_from_nocs
from autolabel_ros.css.train import half_res_target


@torch.no_grad()
def predict_batches(net, rgb: torch.Tensor, mask: torch.Tensor, batch: int = 64):
    outs, dims = [], []
    for i in range(0, len(rgb), batch):
        n, d = net(torch.cat([rgb[i:i + batch], mask[i:i + batch]], 1))
        outs.append(n)
        dims.append(d)
    return torch.cat(outs), torch.cat(dims)


def facing_of_predictions(nocs: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    valid = (torch.nn.functional.avg_pool2d(mask, 2)[:, 0] > 0.49).numpy()
    n = nocs.permute(0, 2, 3, 1).numpy()
    return np.array([facing_from_nocs(n[i], valid[i]) for i in range(len(n))])


def evaluate_samples(net, data: dict, min_facing: float = 0.3) -> dict:
    """``data``: tensors of :func:`autolabel_ros.css.train.to_tensors`."""
    net.eval()
    pred, dims = predict_batches(net, data['rgb'], data['mask'])
    tgt, valid = half_res_target(data['nocs'], data['mask'])
    err = (pred - tgt) * valid
    nv = valid.sum().clamp(min=1)
    facing = facing_of_predictions(pred, data['mask'])
    true = data['facing'].numpy()
    ends = np.abs(true) > min_facing
    return {'n': int(len(pred)), 'nocs_l1': float(err.abs().sum() / (3 * nv)),
            'nocs_dist': float(err.norm(dim=1).sum() / nv),
            'dims_l1': float((dims - data['dims']).abs().mean()),
            'frontback_n': int(ends.sum()),
            'frontback_acc': (float(np.mean(np.sign(facing[ends]) == np.sign(true[ends])))
                              if ends.any() else None),
            'facing_corr': float(np.corrcoef(facing, true)[0, 1]) if len(true) > 2 else None}
