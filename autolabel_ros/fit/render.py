"""Differentiable silhouette renderer on small per-object crops.

Each object gets an S x S grid of camera rays through its padded 2D box (pixel centres of the
resampled crop). A ray is moved into the hypothesis' object frame (inverse pose), clipped to the
canonical bounding volume of the prior (slab test) and sampled only inside that segment. The mask
value of a ray is ``1 - prod_i sigmoid(zeta * phi_i)`` (phi > 0 outside), evaluated in log space:
``1 - exp(sum_i logsigmoid(zeta * phi_i))``. Rays that miss the volume cost nothing (mask 0).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def crop_box(box, width: int, height: int, pad_frac: float, min_pad: float = 4.0) -> np.ndarray:
    """Integer crop (x1, y1, x2, y2), x2/y2 exclusive, of a 2D box padded on each side; may extend
    outside the image (those pixels are masked out by the validity map)."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    px = max(min_pad, pad_frac * (x2 - x1))
    py = max(min_pad, pad_frac * (y2 - y1))
    return np.array([np.floor(x1 - px), np.floor(y1 - py), np.ceil(x2 + px), np.ceil(y2 + py)],
                    dtype=np.int64)


def crop_resample(mask: np.ndarray | None, crop: np.ndarray, size: int, shape: tuple[int, int]) -> np.ndarray:
    """Area-resample the part of a full-image mask under ``crop`` to size x size floats in [0, 1];
    ``mask=None`` gives the share of each crop pixel that lies inside the image (validity map)."""
    H, W = shape
    x1, y1, x2, y2 = (int(v) for v in crop)
    sub = np.zeros((y2 - y1, x2 - x1), np.float32)
    ax1, ay1, ax2, ay2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
    if ax2 > ax1 and ay2 > ay1:
        src = 1.0 if mask is None else mask[ay1:ay2, ax1:ax2].astype(np.float32)
        sub[ay1 - y1:ay2 - y1, ax1 - x1:ax2 - x1] = src
    return cv2.resize(sub, (size, size), interpolation=cv2.INTER_AREA)


def crop_pixels(crop: np.ndarray, size: int) -> np.ndarray:
    """(size*size, 2) pixel-centre coordinates (u, v) of the resampled crop, row-major."""
    x1, y1, x2, y2 = (float(v) for v in crop)
    us = x1 + (np.arange(size) + 0.5) * (x2 - x1) / size
    vs = y1 + (np.arange(size) + 0.5) * (y2 - y1) / size
    uu, vv = np.meshgrid(us, vs)
    return np.stack([uu.ravel(), vv.ravel()], -1)


def camera_rays(K: np.ndarray, T_cam_lidar: np.ndarray, pix: np.ndarray):
    """Camera centre (3,) and unit ray directions (P, 3) of pixels, in the LiDAR frame."""
    R = T_cam_lidar[:3, :3]
    t = T_cam_lidar[:3, 3]
    origin = -R.T @ t
    d = np.concatenate([pix, np.ones((len(pix), 1))], 1) @ np.linalg.inv(K).T
    d = d @ R                                  # R^T applied to row vectors
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return origin, d


def to_object_frame(p: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Points p (B, ..., 3) in the LiDAR frame -> object frames of poses (B, 4: x, y, z, yaw)."""
    shape = (-1,) + (1,) * (p.dim() - 2)
    c = torch.cos(pose[:, 3]).view(shape)
    s = torch.sin(pose[:, 3]).view(shape)
    q = p - pose[:, :3].view(shape + (3,))
    return torch.stack([c * q[..., 0] + s * q[..., 1], -s * q[..., 0] + c * q[..., 1], q[..., 2]], -1)


def rotate_dirs(d: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    shape = (-1,) + (1,) * (d.dim() - 2)
    c = torch.cos(yaw).view(shape)
    s = torch.sin(yaw).view(shape)
    return torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], -1)


def render_silhouettes(sdf, pose: torch.Tensor, codes: torch.Tensor, ray_o: torch.Tensor,
                       ray_d: torch.Tensor, n_samples: int, zeta: float,
                       scales: torch.Tensor | None = None, vols=None) -> torch.Tensor:
    """Soft masks (B, P) of B hypotheses with poses (B, 4) and codes (B, d) for rays ray_d (B, P, 3)
    from ray_o (3,) (LiDAR frame)."""
    B, P, _ = ray_d.shape
    o = to_object_frame(ray_o.view(1, 1, 3).expand(B, 1, 3), pose)          # B, 1, 3
    d = rotate_dirs(ray_d, pose[:, 3])                                      # B, P, 3
    # normalized canonical coordinates: the bounding volume is [-1, 1]^3
    half = sdf.extent.view(1, 1, 3) if scales is None else sdf.extent.view(1, 1, 3) * scales.view(B, 1, 3)
    o = o / half
    d = d / half
    with torch.no_grad():   # sample positions along the ray need no gradient; the SDF values do
        inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
        t1 = (-1.0 - o) * inv
        t2 = (1.0 - o) * inv
        tn = torch.minimum(t1, t2).amax(-1).clamp_min(0.0)
        tf = torch.maximum(t1, t2).amin(-1)
        hit = tf > tn
        idx = hit.view(-1).nonzero().squeeze(1)
        frac = (torch.arange(n_samples, device=d.device, dtype=d.dtype) + 0.5) / n_samples
        tn_h, tf_h = tn.view(-1)[idx], tf.view(-1)[idx]
        ts = tn_h[:, None] + frac[None] * (tf_h - tn_h)[:, None]               # Hr, T
        hyp = idx // P
    # fold the per-hypothesis volume offset into each ray (affine), then sample: g = o + t d
    o_h = sdf.fold(o[:, 0][hyp], hyp, B)                                     # Hr, 3
    d_h = sdf.fold(d.reshape(-1, 3)[idx], hyp, B, direction=True)            # Hr, 3
    g = o_h[:, None] + ts[..., None] * d_h[:, None]                          # Hr, T, 3
    phi = sdf.sample(g, hyp, codes, vols)
    if scales is not None:
        phi = phi * scales.min(-1).values[hyp][:, None]
    log_out = F.logsigmoid(zeta * phi).sum(-1)
    m = 1.0 - torch.exp(log_out)
    out = torch.zeros(B * P, device=d.device, dtype=m.dtype)
    out = out.index_put((idx,), m)
    return out.view(B, P)
