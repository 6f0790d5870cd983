"""SDFLabel-style verification of a fitted label: mask agreement and LiDAR surface agreement."""
from __future__ import annotations

import numpy as np
import torch

from autolabel_ros.fit.rays import to_object_frame
from autolabel_ros.fit.render import Renderer, render_silhouettes


def mask_ious(sdf, pose: torch.Tensor, codes: torch.Tensor, scales, ray_o, ray_d, target: np.ndarray,
              valid: np.ndarray, n_samples: int = 32, zeta: float = 60.0,
              renderer: Renderer = render_silhouettes) -> np.ndarray:
    """IoU (per object) between the hard rendered silhouette (mask > 0.5) and the instance mask
    (> 0.5) over the valid (unoccluded, inside-image) pixels of each crop."""
    with torch.no_grad():
        m = renderer(sdf, pose, codes, ray_o, ray_d, n_samples, zeta, scales).cpu().numpy()
    r = m > 0.5
    y = target > 0.5
    v = valid > 0.5
    inter = (r & y & v).sum(1)
    union = ((r | y) & v).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def surface_ratio(sdf, pose: np.ndarray, code: np.ndarray, scales, points: np.ndarray, band: float,
                  near: float) -> tuple[float, int]:
    """Share of nearby points (non-ground scan points with SDF < ``near``, inside included) that lie
    within ``band`` of the surface; and how many nearby points there were."""
    if len(points) == 0:
        return 0.0, 0
    d = np.linalg.norm(points[:, :2] - pose[None, :2], axis=1)
    cand = points[d < 4.0]
    if len(cand) == 0:
        return 0.0, 0
    dev = sdf.extent.device
    with torch.no_grad():
        p = torch.as_tensor(cand, dtype=torch.float32, device=dev)[None]
        po = torch.as_tensor(np.asarray(pose, np.float32)[None], device=dev)
        q = to_object_frame(p, po)[0]
        c = torch.as_tensor(np.asarray(code, np.float32)[None], device=dev)
        s = None if scales is None else torch.as_tensor(np.asarray(scales, np.float32)[None], device=dev)
        phi = sdf.query(q[None], torch.zeros(1, dtype=torch.long, device=dev), c, s)[0].cpu().numpy()
    nearby = phi < near
    n = int(nearby.sum())
    if n == 0:
        return 0.0, 0
    return float((np.abs(phi[nearby]) <= band).sum() / n), n
