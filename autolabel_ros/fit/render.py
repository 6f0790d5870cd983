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
from autolabel_ros.fit.sdf import pair_backward, pair_grid, pair_values, stack_image


class Renderer(Protocol):
    def __call__(self, sdf, pose: torch.Tensor, codes: torch.Tensor, ray_o: torch.Tensor,
                 ray_d: torch.Tensor, n_samples: int, zeta: float,
                 scales: torch.Tensor | None = None, vols=None,
                 rays_on: torch.Tensor | None = None) -> torch.Tensor: ...


def sdf_at_samples(sdf, rs: RaySamples, codes: torch.Tensor, scales: torch.Tensor | None = None,
                   vols=None, t: torch.Tensor | None = None) -> torch.Tensor:
    """(Hr, T) signed distances of the shapes ``codes`` (B, d) at the ray samples, or at other
    positions ``t`` (Hr, T') along the same rays."""
    idx, hyp = rs.idx, rs.hyp
    o_h = rs.o[:, 0][hyp]                                                    # Hr, 3
    d_h = rs.d.reshape(-1, 3)[idx]                                           # Hr, 3
    g = o_h[:, None] + (rs.t if t is None else t)[..., None] * d_h[:, None]  # Hr, T, 3
    phi = sdf.sample(g, hyp, codes, vols)
    if scales is not None:
        phi = phi * scales.min(-1).values[hyp][:, None]
    return phi


def _parabola_min(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The vertex of the parabola through (a, b, c) at evenly spaced samples where ``inner`` (the middle
    sample is the smallest of the ray and not at its end), else b."""
    curv = (a + c - 2 * b).clamp_min(1e-6)
    vertex = b - (a - c) ** 2 / (8 * curv)
    return torch.where(inner, vertex, b)


def ray_min_sdf(phi: torch.Tensor) -> torch.Tensor:
    """(Hr,) smallest SDF along each ray (samples (Hr, T), evenly spaced): the smallest sample, refined
    by the vertex of the parabola through it and its two neighbours (a ray near the silhouette grazes
    the surface, where phi is about quadratic), so the estimate does not depend on where the samples
    happen to fall. The vertex lies within 1/8 of the parabola's curvature below the sample; a
    smallest sample at either end of the ray is taken as it is."""
    T = phi.shape[-1]
    b, k = phi.min(-1, keepdim=True)       # min over a dim: the first smallest, as argmin, but faster
    b = b[..., 0]
    if T < 3:
        return b
    j = k.clamp(1, T - 2)
    a, c = phi.gather(-1, j - 1)[..., 0], phi.gather(-1, j + 1)[..., 0]
    return _parabola_min(a, b, c, (j == k)[..., 0])


def _ray_points(o: torch.Tensor, d: torch.Tensor, t: torch.Tensor):
    """The three (R, T) coordinates of the samples o + t d of rays o, d (R, 3) at t (R, T), each
    contiguous (the lookups work ~5x faster on them than on the components of an (R, T, 3))."""
    return tuple(torch.addcmul(o[:, k:k + 1], t, d[:, k:k + 1]) for k in range(3))


class _RayMinSamples(torch.autograd.Function):
    """Grid values (R, 3) at the smallest of the T samples ``o + t d`` of each ray (R rays of hypotheses
    ``hyp`` (R,), normalized canonical coordinates o, d (R, 3), positions t (R, T)) and at its two
    neighbours, in one graph node: the forward pass looks all R x T samples up once in the decoded
    volumes ``vols`` (:meth:`autolabel_ros.fit.sdf.SdfModel.volumes` of volumes of ``shape``; trilinear,
    border, corners aligned, as 2D lookups: :func:`autolabel_ros.fit.sdf.pair_grid`), the backward pass
    runs the lookup's backward through the 3 x R kept samples only and carries their position
    gradients to o and d by hand (d g / d o = 1, d g / d d = t). ``smin`` (R,) > 0 scales the values for
    the search only (the caller multiplies the returned values by it, with gradient). Also returns, not
    differentiable, which of the three is the smallest (0, 1, 2) and the three positions (R, 3)."""

    @staticmethod
    def forward(ctx, vols, o, d, t, smin, hyp, shape):
        R, T = t.shape
        img = stack_image(vols)
        grid, wz, factors = pair_grid(_ray_points(o, d, t), hyp, shape, img.shape[2], grad=True)
        raw, diff = pair_values(img, grid, wz)
        k = (raw * smin[:, None]).min(-1, keepdim=True).indices                       # the first smallest
        j = k.clamp(1, T - 2)
        sel = torch.cat([j - 1, j, j + 1], -1)                                      # R, 3
        t3 = t.gather(-1, sel)
        kept = [x.gather(-1, sel) for x in (wz, diff) + factors]
        ctx.save_for_backward(img, grid.gather(1, sel[..., None, None].expand(R, 3, 2, 2)), t3, *kept)
        ctx.vol_shape = vols.shape
        pick = (k - j + 1)[..., 0]
        ctx.mark_non_differentiable(pick, t3)
        return raw.gather(-1, sel), pick, t3

    @staticmethod
    def backward(ctx, grad, _pick, _t3):
        img, grid3, t3, wz3, diff3, *factors = ctx.saved_tensors
        need_vol, need_o, need_d = ctx.needs_input_grad[:3]
        gv, gg = pair_backward(grad.contiguous(), img, grid3, wz3, diff3, factors, need_vol,
                               need_o or need_d)
        go = gd = None
        if need_o or need_d:
            go = gg.sum(1) if need_o else None
            gd = (gg * t3[..., None]).sum(1) if need_d else None
        return (gv.view(ctx.vol_shape) if need_vol else None), go, gd, None, None, None, None


def outline_min_sdf(sdf, rs: RaySamples, codes: torch.Tensor, scales: torch.Tensor | None = None,
                    vols=None) -> torch.Tensor:
    """:func:`ray_min_sdf` of the samples of :func:`sdf_at_samples` (the same values), with the
    gradient of the fit through the smallest sample and its two neighbours only (the others do not
    reach it): in decode mode one :class:`_RayMinSamples` node (without gradient: the same 2D lookups),
    otherwise the three are looked up again with gradient after a search over all T without it."""
    T = rs.t.shape[-1]
    if T < 3:
        return ray_min_sdf(sdf_at_samples(sdf, rs, codes, scales, vols))
    smin = None if scales is None else scales.min(-1).values[rs.hyp]              # Hr
    if getattr(sdf, 'mode', None) == 'decode':
        if vols is None:
            vols = sdf.volumes(codes)
        o_h = rs.o[:, 0][rs.hyp]                                                  # Hr, 3
        d_h = rs.d.reshape(-1, 3)[rs.idx]                                         # Hr, 3
        if not torch.is_grad_enabled():       # verification, pruning, final energy: the same 2D lookups
            img = stack_image(vols)
            grid, wz, _ = pair_grid(_ray_points(o_h, d_h, rs.t), rs.hyp, sdf.shape, img.shape[2])
            phi = pair_values(img, grid, wz)[0]
            return ray_min_sdf(phi if smin is None else phi * smin[:, None])
        s = torch.ones_like(rs.t[:, 0]) if smin is None else smin.detach()
        raw3, pick, _ = _RayMinSamples.apply(vols, o_h, d_h, rs.t, s, rs.hyp, sdf.shape)
        phi3 = raw3 if smin is None else raw3 * smin[:, None]
    else:
        grad = torch.is_grad_enabled()
        with torch.no_grad():
            phi = sdf_at_samples(sdf, rs, codes, scales, vols)
            if not grad:
                return ray_min_sdf(phi)
            k = phi.min(-1, keepdim=True).indices
            j = k.clamp(1, T - 2)
            t3 = rs.t.gather(-1, torch.cat([j - 1, j, j + 1], -1))            # Hr, 3
            pick = (k - j + 1)[..., 0]                                       # 0, 1, 2: the smallest
        phi3 = sdf_at_samples(sdf, rs, codes, scales, vols, t=t3)           # Hr, 3 with gradient
    b = phi3.gather(-1, pick[:, None])[..., 0]
    return _parabola_min(phi3[:, 0], b, phi3[:, 2], pick == 1)


SILHOUETTES = ('union', 'outline')


def composite_silhouette(phi: torch.Tensor, rs: RaySamples, zeta: float, mode: str = 'union') -> torch.Tensor:
    """(B, P) soft mask from the SDF samples of the hit rays (``mode``: see the module docstring);
    ``outline`` also takes the rays' smallest SDF (Hr,) (:func:`outline_min_sdf`) in place of ``phi``."""
    B, P = rs.shape
    if mode == 'outline':
        m = torch.sigmoid(-zeta * (phi if phi.dim() == 1 else ray_min_sdf(phi)))
    else:
        m = 1.0 - torch.exp(F.logsigmoid(zeta * phi).sum(-1))
    out = torch.zeros(B * P, device=phi.device, dtype=m.dtype)
    out = out.index_put((rs.idx,), m)
    return out.view(B, P)


def render_silhouettes(sdf, pose: torch.Tensor, codes: torch.Tensor, ray_o: torch.Tensor,
                       ray_d: torch.Tensor, n_samples: int, zeta: float,
                       scales: torch.Tensor | None = None, vols=None, rays_on: torch.Tensor | None = None,
                       mode: str = 'union') -> torch.Tensor:
    """Soft masks (B, P) of B hypotheses with poses (B, 4) and codes (B, d) for rays ray_d (B, P, 3)
    from ray_o (3,) (LiDAR frame); ``mode`` = ``fit.silhouette``. ``rays_on`` (B, P) bool: render only
    those rays, the others give 0 (the fit's Dice skips the pixels its occlusion map zeroes)."""
    B = ray_d.shape[0]
    half = sdf.extent.view(1, 1, 3) if scales is None else sdf.extent.view(1, 1, 3) * scales.view(B, 1, 3)
    rs = sample_rays(pose, ray_o, ray_d, half, n_samples, rays_on)
    if mode == 'outline':
        return composite_silhouette(outline_min_sdf(sdf, rs, codes, scales, vols), rs, zeta, mode)
    return composite_silhouette(sdf_at_samples(sdf, rs, codes, scales, vols), rs, zeta, mode)
