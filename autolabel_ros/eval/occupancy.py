"""Scores of an occupancy grid (track/occupancy.py classes) against a ground-truth grid (sim/occupancy.py).

- ``car_recall``: of the voxels inside the ground-truth cars listed in ``cars`` (those that have a
  label), the share labelled car with that car's instance (a predicted id is mapped to the ground
  truth car it overlaps most);
- ``car_precision``: of the voxels labelled car, the share within one voxel of that car;
- ``free_precision``: of the voxels labelled free, the share that is free (no surface within half a
  voxel diagonal, not inside a car, not under the road);
- ``ground_precision``: of the voxels labelled ground, the share within one voxel (vertically) of the
  road surface; ``other_precision``: of the voxels labelled other, the share within one voxel of any
  surface or car.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
from scipy import ndimage

from autolabel_ros.io.occupancy import CAR, FREE, GROUND, OTHER


def _share(num, den) -> Optional[float]:
    return float(num) / float(den) if den else None


def instance_map(pred_car: np.ndarray, pred_ids: np.ndarray, gt_ids: np.ndarray) -> dict:
    """Predicted instance (of the voxels ``pred_car``) -> the ground-truth car it overlaps most."""
    both = pred_car & (gt_ids > 0)
    out = {}
    if not both.any():
        return out
    pairs, n = np.unique(np.stack([pred_ids[both], gt_ids[both]], 1), axis=0, return_counts=True)
    for p in np.unique(pairs[:, 0]):
        sel = pairs[:, 0] == p
        out[int(p)] = int(pairs[sel][np.argmax(n[sel]), 1])
    return out


def occupancy_scores(labels: np.ndarray, instance: np.ndarray, gt_cls: np.ndarray, gt_ids: np.ndarray,
                     cars: Optional[Iterable[int]] = None) -> dict:
    mapping = instance_map(labels == CAR, instance, gt_ids)
    lut = np.zeros(int(instance.max()) + 1, np.int64)        # predicted id -> ground-truth car id
    for p, g in mapping.items():
        lut[p] = g
    mapped = np.where(labels == CAR, lut[instance.astype(np.int64)], 0)
    cars = set(int(c) for c in (cars if cars is not None else np.unique(gt_ids[gt_ids > 0])))
    gt_car = np.isin(gt_ids, list(cars)) if cars else np.zeros(gt_ids.shape, bool)
    hit = gt_car & (mapped == gt_ids)
    box = np.ones((3, 3, 3), bool)
    near_id = ndimage.grey_dilation(gt_ids, footprint=box)          # the car id one voxel around
    pred_car = labels == CAR
    surf = ndimage.binary_dilation(gt_cls != FREE, structure=box)
    ground_near = ndimage.binary_dilation(gt_cls == GROUND, structure=np.ones((1, 1, 3), bool))
    per_car = {}
    for c in sorted(cars):
        m = gt_ids == c
        per_car[c] = _share((hit & m).sum(), m.sum())
    return {
        'car_recall': _share(hit.sum(), gt_car.sum()),
        'car_precision': _share((pred_car & (mapped > 0) & (near_id == mapped)).sum(), pred_car.sum()),
        'free_precision': _share(((labels == FREE) & (gt_cls == FREE)).sum(), (labels == FREE).sum()),
        'ground_precision': _share(((labels == GROUND) & ground_near).sum(), (labels == GROUND).sum()),
        'other_precision': _share(((labels == OTHER) & surf).sum(), (labels == OTHER).sum()),
        'gt_car_voxels': int(gt_car.sum()), 'gt_other_voxels': int((gt_cls == OTHER).sum()),
        'gt_car_classes': int((gt_cls == CAR).sum()),
        'per_car_recall': per_car,
    }
