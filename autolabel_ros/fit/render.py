"""Differentiable silhouette renderer of an SDF shape space, split like an implicit renderer:

1. ray sampling (:func:`autolabel_ros.fit.rays.sample_rays`): the crop rays of every hypothesis,
   clipped to its bounding volume, with midpoint samples inside it;
2. SDF sampling (:func:`sdf_at_samples`): the shape's signed distance at those samples;
3. silhouette compositing (:func:`composite_silhouette`): the mask value of a ray is
   ``1 - prod_i sigmoid(zeta * phi_i)`` (phi > 0 outside), evaluated in log space as
   ``1 - exp(sum_i logsigmoid(zeta * phi_i))``; rays that miss the volume give 0.

:func:`render_silhouettes` chains them; the fit's soft render and the verification's hard render
both call it. Another renderer (e.g. surfels) is any callable with its signature.
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from autolabel_ros.fit.rays import RaySamples, sample_rays


class Renderer(Protocol):
    def __call__(self, sdf, pose: torch.Tensor, codes: torch.Tensor, ray_o: torch.Tensor,
                 ray_d: torch.Tensor, n_samples: int, zeta: float,
                 scales: torch.Tensor | None = None, vols=None) -> torch.Tensor: ...


def sdf_at_samples(sdf, rs: RaySamples, codes: torch.Tensor, scales: torch.Tensor | None = None,
                   vols=None) -> torch.Tensor:
    """(Hr, T) signed distances of the shapes ``codes`` (B, d) at the ray samples."""
    B = rs.shape[0]
    # fold the per-hypothesis volume offset into each ray (affine), then sample: g = o + t d
    o_h = sdf.fold(rs.o[:, 0][rs.hyp], rs.hyp, B)                              # Hr, 3
    d_h = sdf.fold(rs.d.reshape(-1, 3)[rs.idx], rs.hyp, B, direction=True)     # Hr, 3
    g = o_h[:, None] + rs.t[..., None] * d_h[:, None]                          # Hr, T, 3
    phi = sdf.sample(g, rs.hyp, codes, vols)
    if scales is not None:
        phi = phi * scales.min(-1).values[rs.hyp][:, None]
    return phi


def composite_silhouette(phi: torch.Tensor, rs: RaySamples, zeta: float) -> torch.Tensor:
    """(B, P) soft mask from the SDF samples of the hit rays."""
    B, P = rs.shape
    log_out = F.logsigmoid(zeta * phi).sum(-1)
    m = 1.0 - torch.exp(log_out)
    out = torch.zeros(B * P, device=phi.device, dtype=m.dtype)
    out = out.index_put((rs.idx,), m)
    return out.view(B, P)


def render_silhouettes(sdf, pose: torch.Tensor, codes: torch.Tensor, ray_o: torch.Tensor,
                       ray_d: torch.Tensor, n_samples: int, zeta: float,
                       scales: torch.Tensor | None = None, vols=None) -> torch.Tensor:
    """Soft masks (B, P) of B hypotheses with poses (B, 4) and codes (B, d) for rays ray_d (B, P, 3)
    from ray_o (3,) (LiDAR frame)."""
    B = ray_d.shape[0]
    half = sdf.extent.view(1, 1, 3) if scales is None else sdf.extent.view(1, 1, 3) * scales.view(B, 1, 3)
    rs = sample_rays(pose, ray_o, ray_d, half, n_samples)
    return composite_silhouette(sdf_at_samples(sdf, rs, codes, scales, vols), rs, zeta)
