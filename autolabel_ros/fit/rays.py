"""Ray sampling of the silhouette renderer (the "raysampler" of an implicit renderer).

- crops: each object gets an S x S grid of camera rays through its padded 2D box (pixel centres of
  the area-resampled crop, :func:`crop_box`, :func:`crop_pixels`, :func:`crop_resample`,
  :func:`camera_rays`); the fit (S = ``fit.crop_size``) and the verification (``final_crop_size``)
  use the same builder;
- samples: :func:`sample_rays` moves each ray into a hypothesis' object frame (inverse pose),
  clips it to the canonical bounding volume of the shape (slab test) and places ``n`` samples
  inside that segment only; rays that miss the volume get none.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


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


def points_to_object(p: torch.Tensor, pose: torch.Tensor, hyp: torch.Tensor) -> torch.Tensor:
    """Points p (N, 3) in the LiDAR frame -> the object frames of their hypotheses' poses ``pose[hyp]``
    (pose (B, 4), hyp (N,)): :func:`to_object_frame` as one graph node, gradient on the poses only."""
    return _PointsToObject.apply(p, pose, hyp)


class _PointsToObject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, pose, hyp):
        c, s = torch.cos(pose[:, 3])[hyp], torch.sin(pose[:, 3])[hyp]                    # N each
        qx, qy, qz = (p - pose[hyp, :3]).unbind(1)
        out = torch.stack([c * qx + s * qy, c * qy - s * qx, qz], 1)
        ctx.save_for_backward(c, s, out, hyp)
        ctx.n_hyp = pose.shape[0]
        return out

    @staticmethod
    def backward(ctx, g):
        c, s, out, hyp = ctx.saved_tensors
        gx, gy, gz = g.unbind(1)
        # d out / d t = -rot^T (per point), d out / d yaw = (out_y, -out_x, 0); summed per hypothesis
        per = torch.stack([s * gy - c * gx, -s * gx - c * gy, -gz, gx * out[:, 1] - gy * out[:, 0]], 1)
        return None, per.new_zeros(ctx.n_hyp, 4).index_add_(0, hyp, per), None


def rotate_dirs(d: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    shape = (-1,) + (1,) * (d.dim() - 2)
    c = torch.cos(yaw).view(shape)
    s = torch.sin(yaw).view(shape)
    return torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], -1)


@dataclass
class RaySamples:
    """Sample positions along the rays that hit a hypothesis' bounding volume, in normalized canonical
    coordinates (the volume is [-1, 1]^3): point ``o + t d`` of ray ``idx`` (flat index b * P + p)."""

    o: torch.Tensor        # B, 1, 3 camera centre per hypothesis
    d: torch.Tensor        # B, P, 3 ray directions per hypothesis
    idx: torch.Tensor      # Hr flat indices of the rays that hit
    hyp: torch.Tensor      # Hr their hypothesis
    t: torch.Tensor        # Hr, T sample positions along each hit ray (no gradient)
    shape: tuple           # (B, P)


def sample_rays(pose: torch.Tensor, ray_o: torch.Tensor, ray_d: torch.Tensor, half: torch.Tensor,
                n_samples: int, rays_on: torch.Tensor | None = None) -> RaySamples:
    """Rays ray_d (B, P, 3) from ray_o (3,) (LiDAR frame) seen by hypotheses with poses (B, 4) and
    bounding-volume half sizes ``half`` (3,) or (B, 3): ``n_samples`` midpoint samples per ray inside the
    volume. Directions and origin carry the pose gradient; the sample positions do not. ``rays_on``
    (B, P) bool: only those rays are sampled (the others count as misses)."""
    B, P, _ = ray_d.shape
    o, d = _ObjectRays.apply(pose, half.view(-1, 1, 3), ray_o, ray_d)      # B, 1, 3 and B, P, 3
    with torch.no_grad():   # sample positions along the ray need no gradient; the SDF values do
        inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
        t1 = (-1.0 - o) * inv
        t2 = (1.0 - o) * inv
        tn = torch.minimum(t1, t2).amax(-1).clamp_min(0.0)
        tf = torch.maximum(t1, t2).amin(-1)
        hit = tf > tn
        if rays_on is not None:
            hit &= rays_on
        idx = hit.view(-1).nonzero().squeeze(1)
        frac = (torch.arange(n_samples, device=d.device, dtype=d.dtype) + 0.5) / n_samples
        tn_h, tf_h = tn.view(-1)[idx], tf.view(-1)[idx]
        ts = tn_h[:, None] + frac[None] * (tf_h - tn_h)[:, None]               # Hr, T
        hyp = idx // P
    return RaySamples(o=o, d=d, idx=idx, hyp=hyp, t=ts, shape=(B, P))


class _ObjectRays(torch.autograd.Function):
    """The camera centre ray_o (3,) and the rays ray_d (B, P, 3) in the object frames of poses (B, 4),
    over the bounding volumes' half sizes ``half`` (B or 1, 1, 3): :func:`to_object_frame` and
    :func:`rotate_dirs` divided by ``half``, as one graph node (the rotation as a product, its
    gradient in position, heading and half sizes by hand: a few ops where autograd took ~60 every
    silhouette step). No gradient on the rays."""

    @staticmethod
    def forward(ctx, pose, half, ray_o, ray_d):
        B = pose.shape[0]
        c, s = torch.cos(pose[:, 3]), torch.sin(pose[:, 3])
        z, one = torch.zeros_like(c), torch.ones_like(c)
        rot = torch.stack([c, -s, z, s, c, z, z, z, one], 1).view(B, 3, 3)     # row vectors times rot
        q = (ray_o.view(1, 3) - pose[:, :3]).view(B, 1, 3)
        o = torch.bmm(q, rot).div_(half)
        d = torch.bmm(ray_d, rot).div_(half)
        ctx.save_for_backward(c, s, rot, q, ray_d, half, o, d)
        return o, d

    @staticmethod
    def backward(ctx, go, gd):
        c, s, rot, q, ray_d, half, o, d = ctx.saved_tensors
        goh, gdh = go / half, gd / half
        # the gradient on rot, then on the heading through d rot / d yaw = [[-s, -c, 0], [c, -s, 0], 0]
        g_rot = torch.baddbmm(torch.bmm(q.transpose(1, 2), goh), ray_d.transpose(1, 2), gdh)
        g_yaw = c * (g_rot[:, 1, 0] - g_rot[:, 0, 1]) - s * (g_rot[:, 0, 0] + g_rot[:, 1, 1])
        g_pose = g_half = None
        if ctx.needs_input_grad[0]:
            g_pose = torch.cat([-torch.bmm(goh, rot.transpose(1, 2))[:, 0], g_yaw[:, None]], 1)
        if ctx.needs_input_grad[1]:
            g_half = -((goh * o).sum(1, keepdim=True) + (gdh * d).sum(1, keepdim=True))
            if half.shape[0] != g_half.shape[0]:
                g_half = g_half.sum(0, keepdim=True)
        return g_pose, g_half, None, None
