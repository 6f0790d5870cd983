"""Differentiable silhouette renderer of an SDF shape space, split like an implicit renderer:

1. ray sampling (:func:`autolabel_ros.fit.rays.sample_rays`): the crop rays of every hypothesis,
   clipped to its bounding volume, with midpoint samples inside it;
2. SDF sampling (:func:`sdf_at_samples`): the shape's signed distance at those samples;
3. silhouette compositing (:func:`composite_silhouette`), ``fit.silhouette``:
   - ``outline`` (the config's default): ``sigmoid(-zeta * min_t phi(t))``, the smallest SDF along the
     ray refined between samples (:func:`ray_min_sdf`): 0.5 exactly on the outline whatever ``zeta``
     and the sample count, so widths and heights follow the mask;
   - ``union``: ``1 - prod_i sigmoid(zeta * phi_i)`` (phi > 0 outside), evaluated in log space; it
     grows the silhouette with every sample near the surface, and a ray grazing a car's long side or
     roof meets many (an end-on car's sides and roof run along the ray), so the silhouette term
     asked for narrower, lower cars (ApolloCar3D scenes: 0.15 m narrow, 0.11 m low; 3D@0.7 47 vs 75
     with outline on the first 10 scenes). The length of an end-on car is seen by neither mode (its
     energy is flat within 0.2 % over +-20 % of length once the near face stays put): the prior and
     the common scale decide it;
   rays that miss the volume give 0.

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


def ray_min_sdf(phi: torch.Tensor) -> torch.Tensor:
    """(Hr,) smallest SDF along each ray (samples (Hr, T), evenly spaced): the smallest sample, refined
    by the vertex of the parabola through it and its two neighbours (a ray near the silhouette grazes
    the surface, where phi is about quadratic), so the estimate does not depend on where the samples
    happen to fall. The vertex lies within 1/8 of the parabola's curvature below the sample; a
    smallest sample at either end of the ray is taken as it is."""
    T = phi.shape[-1]
    k = phi.argmin(-1, keepdim=True)
    b = phi.gather(-1, k)[..., 0]
    if T < 3:
        return b
    j = k.clamp(1, T - 2)
    a, c = phi.gather(-1, j - 1)[..., 0], phi.gather(-1, j + 1)[..., 0]
    curv = (a + c - 2 * b).clamp_min(1e-6)
    vertex = b - (a - c) ** 2 / (8 * curv)
    return torch.where(j == k, vertex[..., None], b[..., None])[..., 0]


SILHOUETTES = ('union', 'outline')


def composite_silhouette(phi: torch.Tensor, rs: RaySamples, zeta: float, mode: str = 'union') -> torch.Tensor:
    """(B, P) soft mask from the SDF samples of the hit rays (``mode``: see the module docstring)."""
    B, P = rs.shape
    if mode == 'outline':
        m = torch.sigmoid(-zeta * ray_min_sdf(phi))
    else:
        m = 1.0 - torch.exp(F.logsigmoid(zeta * phi).sum(-1))
    out = torch.zeros(B * P, device=phi.device, dtype=m.dtype)
    out = out.index_put((rs.idx,), m)
    return out.view(B, P)


def render_silhouettes(sdf, pose: torch.Tensor, codes: torch.Tensor, ray_o: torch.Tensor,
                       ray_d: torch.Tensor, n_samples: int, zeta: float,
                       scales: torch.Tensor | None = None, vols=None, mode: str = 'union') -> torch.Tensor:
    """Soft masks (B, P) of B hypotheses with poses (B, 4) and codes (B, d) for rays ray_d (B, P, 3)
    from ray_o (3,) (LiDAR frame); ``mode`` = ``fit.silhouette``."""
    B = ray_d.shape[0]
    half = sdf.extent.view(1, 1, 3) if scales is None else sdf.extent.view(1, 1, 3) * scales.view(B, 1, 3)
    rs = sample_rays(pose, ray_o, ray_d, half, n_samples)
    return composite_silhouette(sdf_at_samples(sdf, rs, codes, scales, vols), rs, zeta, mode)
