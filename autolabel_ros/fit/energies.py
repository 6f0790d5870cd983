"""Energies of a batch of hypotheses (B = objects x headings); each returns a (B,) tensor.

- mask: Dice between the rendered silhouette and the instance mask, both times the occlusion/validity
  map O, on the object's crop. O is 0 on pixels owned by nearer objects (median LiDAR depth order),
  on pixels of LiDAR returns in front of the object (a pole or cyclist the prompts do not name) and
  outside the image, so the render is not asked to explain what it cannot see, and a mask that
  leaks onto an occluder does not pull the shape there.
- lidar: robust mean |phi| of the object's frustum points, ``tau * tanh(|phi| / tau)`` (outliers
  left by the clustering saturate instead of dragging the shape), plus the first-hit term
  approximated by free-space samples: K points on each LiDAR ray just in front of the measured
  point (between sensor and point) must lie outside the model; ``relu(-phi(q))`` penalises a model
  surface hit before the point (the model explaining a point with its back side). The samples are
  fixed in the LiDAR frame, so they cost one more SDF lookup per sample and no ray casting.
- ground: the car stands on the road under it: ``gap^2`` with gap = minimum over the shape's vertical grid
  columns of (height of the column's lowest surface crossing - plane height under the column), both in the
  LiDAR frame; the plane is the frame's, moved to the median height of its inliers within
  ``fit.ground_local_radius`` of the object (one plane over 40 m of real road misses its camber and slope
  changes by ~0.1 m at the far cars). Read off the shape itself (not a size regression), because near the
  mean code the PCA blurs the tyre contacts and the shape's lowest point floats ~8 cm above where a
  regressed height puts it; the label's box is the mesh's tight extent, so its bottom is what must touch
  the ground. The fit searches all columns every ``ground_refresh`` steps and in between only those among
  each hypothesis' ``ground_columns`` nearest the plane (the lowest one moves little between steps; the
  pruning and the final energy search all).
- nocs, surfel3d (SDFLabel, when the batch carries CSS predictions): the 2D NOCS correspondence loss
  and the 3D surfel-to-LiDAR loss of :mod:`autolabel_ros.fit.surfels`.
- shape: ``|s / stdev|^2 / d`` (code in prior standard deviations).
- scale, scale_common: the per-axis log scales split into their mean (the whole car larger or smaller,
  same proportions) and the rest (other proportions): ``scale_common = mean^2``, ``scale = |log
  scales - mean|^2 / 3``. The common part is cheap (``w_scale_common`` << ``w_scale``): a car whose
  width and height the data shows larger than the prior's grows in length too (cars' sizes go
  together), which is what an end-on car, whose length nothing observes, should do; a length the
  scan or the silhouette does see still wins over it.
"""
from __future__ import annotations

import torch

from autolabel_ros.fit.batch import FitBatch
from autolabel_ros.fit.rays import points_to_object, to_object_frame
from autolabel_ros.fit.render import Renderer, render_silhouettes
from autolabel_ros.fit.surfels import nocs_loss, surface_loss, surfels
from autolabel_ros.core.stage_clock import no_clock


def dice_energy(render: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                target_sum: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) 1 - soft Dice of renders and targets (B, P) on the valid pixels; ``target_sum``: the sums of
    ``target`` when it is already times ``valid`` (:meth:`FitBatch.views_of`)."""
    r = render * valid
    if target_sum is None:
        target = target * valid          # occluded pixels say nothing either way
        target_sum = target.sum(-1)
    inter = (r * target).sum(-1)
    return 1.0 - (2 * inter + 1.0) / (r.sum(-1) + target_sum + 1.0)


def _column_gaps(sdf, pose: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor | None,
                 plane: torch.Tensor, cols: torch.Tensor | None = None):
    """Without gradient: (B, C) height above its plane (B, 3) of the lowest surface crossing of each of the
    shape's bottom columns (1e3 for a column that misses the shape) and (B, C) its first inside node;
    ``cols`` (B, K): only those columns of each hypothesis ((B, K) results). Planes: one per hypothesis
    (B, 3), as :meth:`FitBatch.ground_of` gives them."""
    with torch.no_grad():
        zc, valid, first = sdf.bottom_heights(codes, cols)                   # B, C
        # the plane height under column (x, y) of hypothesis b is P0_b + x Px_b + y Py_b (rotation and
        # scales folded into the three coefficients)
        x, y, _, yaw = pose.unbind(1)
        c, s = torch.cos(yaw), torch.sin(yaw)
        sx, sy = scales.unbind(1)[:2] if scales is not None else (1.0, 1.0)
        a, b, c0 = plane.unbind(1)
        coef = torch.stack([a * x + b * y + c0, sx * (a * c + b * s), sy * (b * c - a * s)], 1)
        _, xy = sdf.bottom_columns(cols)
        under = _plane_under(coef[:, :1], coef[:, 1:], xy)                                # B, C
        top = pose[:, 2:3] + (zc if scales is None else zc * scales[:, 2:3])
        return torch.where(valid, top - under, torch.full_like(zc, 1e3)), first


def _plane_under(c0: torch.Tensor, kxy: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """(B, C) c0 (B, 1) + the columns' canonical (x, y) (C, 2, or B, C, 2 per hypothesis) times kxy (B, 2)."""
    if xy.dim() == 2:
        return torch.addmm(c0, kxy, xy.T)
    return torch.baddbmm(c0[:, :, None], xy, kxy[:, :, None])[..., 0]


def ground_columns(sdf, pose: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor | None,
                   plane: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) each hypothesis' k bottom columns nearest its plane: where its lowest column stays while its
    pose and code move a little (:func:`ground_gap`'s ``cols``; the union over the hypotheses, one set
    for the batch, was 3-6 times more columns to search every step)."""
    gap, _ = _column_gaps(sdf, pose, codes, scales, plane)
    k = min(int(k), gap.shape[1])
    return gap.topk(k, 1, largest=False, sorted=False).indices


def ground_gap(sdf, pose: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor | None,
               plane: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) height of the shape's lowest point above its plane z = a x + b y + c ((B, 3), one per
    hypothesis: the road under its object; negative: it sinks
    in): the minimum over the shape's grid columns (a soft minimum would sit below the true one by
    ~tau log(n) over the many near-lowest columns of a flat floor, lifting the car). ``cols`` (B, K):
    search only those columns of each hypothesis (:func:`ground_columns`; None: all of them).
    Differentiable in pose, codes and scales through the lowest column (one graph node,
    :class:`_GroundGap`)."""
    return _GroundGap.apply(pose, codes, scales, plane, sdf, cols)


class _GroundGap(torch.autograd.Function):
    """:func:`ground_gap` as one graph node: the forward pass finds the lowest column without gradient
    and computes the gap there with its derivatives in pose, code and scales by hand (the plane is
    linear, the crossing height linear in the two nodes around it); the backward pass scales them.
    Some forty small ops with gradient and their backward were a tenth of a fit step."""

    @staticmethod
    def forward(ctx, pose, codes, scales, plane, sdf, cols):
        gap, jac = _gap_and_jacobian(sdf, pose, codes, scales, plane, cols)
        ctx.save_for_backward(*jac)
        return gap

    @staticmethod
    def backward(ctx, grad):
        j_pose, j_codes, j_scales = ctx.saved_tensors
        g = grad[:, None]
        need = ctx.needs_input_grad
        return (g * j_pose if need[0] else None, g * j_codes if need[1] else None,
                g * j_scales if need[2] and j_scales.numel() else None, None, None, None)


def _gap_and_jacobian(sdf, pose, codes, scales, plane, cols):
    """Without gradient: (B,) gap of :func:`ground_gap` and its derivatives in pose (B, 4), codes (B, d)
    and scales (B, 3) (empty when scales is None), with autograd's conventions at the clamps (a
    clamped value passes no gradient, a boundary value does). The column search of
    :func:`_column_gaps`, sharing its terms with the derivatives."""
    B = codes.shape[0]
    zc, valid, first = sdf.bottom_heights(codes, cols)                       # B, K
    x, y, z, yaw = pose.unbind(1)
    a, b, c0 = plane.unbind(1)
    c, s = torch.cos(yaw), torch.sin(yaw)
    ac_bs, bc_as = a * c + b * s, b * c - a * s
    if scales is None:
        kx, ky, top = ac_bs, bc_as, zc
    else:
        sx, sy, sz = scales.unbind(1)
        kx, ky, top = ac_bs * sx, bc_as * sy, zc * sz[:, None]
    # the plane under column (u, v) of hypothesis b: a x + b y + c0 + kx u + ky v
    _, xy = sdf.bottom_columns(cols)
    under = _plane_under((a * x + b * y + c0)[:, None], torch.stack([kx, ky], 1), xy)
    gap_all = z[:, None] + top - under
    ar = torch.arange(B, device=codes.device)
    j = torch.where(valid, gap_all, 1e3).argmin(1)
    gap = gap_all[ar, j]
    col = j if cols is None else cols[ar, j]
    f = first[ar, j]
    z1 = zc[ar, j]
    # d z1 / d code: the crossing t = p / max(p - q, 1e-6) between the SDF p of node f - 1 and q of node
    # f (z1 = z[f - 1] + t dz), zero where the clamp of t to [0, 1] cuts or f == 0 (the node itself)
    v = sdf.bot_vol[:, torch.stack([(f - 1).clamp_min(0), f], 1), col[:, None]]      # 1+d, B, 2
    pq = v[0] + (codes[:, :, None] * v[1:].transpose(0, 1)).sum(1)                 # B, 2
    p, q = pq.unbind(1)
    diff = p - q
    den = diff.clamp_min(1e-6)
    tr = p / den
    r = (p / den ** 2) * (diff >= 1e-6)
    zn = sdf.bot_z
    live = ((f > 0) & (tr >= 0.0) & (tr <= 1.0)) * (zn[1] - zn[0])
    dz1 = torch.bmm(v[1:].permute(1, 0, 2), torch.stack([(1.0 / den - r) * live, r * live], 1)[:, :, None])
    dz1 = dz1[:, :, 0]                                                               # B, d
    u, w = sdf.bot_xy[col].unbind(1)
    U, W = (u, w) if scales is None else (u * sx, w * sy)
    # d gap / d yaw = -(a dX + b dY), dX = -s U - c W, dY = c U - s W (X, Y: the column in the LiDAR frame)
    j_pose = torch.stack([-a, -b, torch.ones_like(a), ac_bs * W - bc_as * U], 1)
    if scales is None:
        return gap, (j_pose, dz1, codes.new_zeros(0))
    return gap, (j_pose, dz1 * sz[:, None], torch.stack([-ac_bs * u, -bc_as * w, z1], 1))


def compute_energies(sdf, batch: FitBatch, obj: torch.Tensor, pose: torch.Tensor, code_n: torch.Tensor,
                     log_scale: torch.Tensor | None, cfg, zeta: float, on=None,
                     renderer: Renderer = render_silhouettes, clock=no_clock,
                     ground_cols: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Energy terms (unweighted) for hypotheses ``obj`` (B,) with poses (B, 4), normalized codes (B, d)
    and optional log scales (B, 3); ``on`` = the enabled terms (default: ``cfg.energies``).
    A new term is computed here under its name and weighted in :func:`total_energy`. ``clock``: a
    :class:`autolabel_ros.core.stage_clock.StageClock` that times each term's forward pass. ``ground_cols``
    (K,): the bottom columns the ground term searches (:func:`ground_columns`; None: all)."""
    on = set(cfg.energies if on is None else on)
    with clock('fwd.decode'):
        codes = code_n * sdf.stdev
        scales = torch.exp(log_scale) if log_scale is not None else None
        # the stacked volumes serve the silhouette only (the point lookups read the prior's channels)
        vols = sdf.volumes(codes) if 'mask' in on else None
    B = pose.shape[0]
    out: dict[str, torch.Tensor] = {}
    zero = torch.zeros(B, device=pose.device)
    if 'mask' in on:
        with clock('fwd.mask'):
            out['mask'] = _mask_term(sdf, batch, obj, pose, codes, scales, vols, cfg, zeta, renderer, zero)
    if 'lidar' in on:
        with clock('fwd.lidar'):
            out['lidar'], out['freespace'] = _lidar_terms(sdf, batch, obj, pose, codes, scales, cfg)
    if batch.seeds is not None and ({'nocs', 'surfel3d'} & on):
        p, n = surfels(sdf, batch.seeds, codes, scales)
        if 'nocs' in on and batch.nocs is not None:
            e, _ = nocs_loss(sdf, p, n, pose, codes, scales, obj, batch.nocs)
            out['nocs'] = torch.where(batch.nocs.valid[obj].any(-1), e, zero)
        if 'surfel3d' in on:
            out['surfel3d'] = surface_loss(p, n, pose, batch.pts[obj], batch.w[obj], batch.ray_o)
    if 'ground' in on and batch.ground is not None:
        with clock('fwd.ground'):
            out['ground'] = ground_gap(sdf, pose, codes, scales, batch.ground_of(obj), ground_cols) ** 2
    out['shape'] = (code_n ** 2).mean(-1)
    if log_scale is not None:
        common = log_scale.mean(-1, keepdim=True)
        out['scale'] = ((log_scale - common) ** 2).mean(-1)
        out['scale_common'] = common[:, 0] ** 2
    return out


def _mask_term(sdf, batch, obj, pose, codes, scales, vols, cfg, zeta, renderer, zero):
    """(B,) Dice of the soft render vs the mask on the valid pixels (0 for an empty mask). The pixels the
    occlusion map zeroes are not rendered: they add exactly 0 to the Dice and to its gradient."""
    v = batch.views_of(obj)
    m = renderer(sdf, pose, codes, batch.ray_o, v.ray_d, cfg.ray_samples, zeta, scales, vols,
                 rays_on=v.rays_on)
    e = dice_energy(m, v.target, v.valid, v.target_sum)
    return torch.where(v.has_mask, e, zero)


def _lidar_terms(sdf, batch, obj, pose, codes, scales, cfg):
    """(B,) robust surface distance of the fit points and (B,) free-space violation (weighted means over
    each object's points; an object without points gets 0). The free-space samples are moved into the
    object frames and looked up without gradient first; only those inside the model (phi < 0, the
    others add exactly 0 to the term and to its gradient) are moved and looked up again with it,
    together with the points (the pose's gradient runs through those rows only)."""
    B = pose.shape[0]
    lr = batch.lidar_rows
    pts, fsp, w, hyp = lr.gathered(obj)                             # Hq, 3; Hq, K, 3; Hq; Hq
    Hq, K = fsp.shape[0], fsp.shape[1]
    with torch.no_grad():
        q_fs = to_object_frame(fsp, pose[hyp])                      # Hq, K, 3
        r, k = (sdf.query(q_fs, hyp, codes, scales) < 0).nonzero(as_tuple=True)
    hh = torch.cat([hyp, hyp[r]])
    q = points_to_object(torch.cat([pts, fsp[r, k]]), pose, hh)[:, None]   # Hq + inside samples, 1, 3
    phi = sdf.query(q, hh, codes, scales)[:, 0]
    tau = cfg.lidar_robust
    rho = tau * torch.tanh(phi[:Hq].abs() / tau) * w
    fs = torch.zeros(Hq, device=phi.device, dtype=phi.dtype).index_add(0, r, torch.relu(-phi[Hq:])) / K * w
    zero = torch.zeros(B, device=pose.device, dtype=phi.dtype)
    wsum = lr.wsum[obj]
    return zero.index_add(0, hyp, rho) / wsum, zero.index_add(0, hyp, fs) / wsum


def total_energy(terms: dict[str, torch.Tensor], cfg) -> torch.Tensor:
    weights = {'mask': cfg.w_mask, 'lidar': cfg.w_lidar, 'freespace': cfg.w_lidar * cfg.w_freespace,
               'ground': cfg.w_ground, 'shape': cfg.w_shape, 'scale': cfg.w_scale,
               'scale_common': cfg.w_scale_common, 'nocs': cfg.w_nocs, 'surfel3d': cfg.w_surfel3d}
    # the stacked terms times their weights, summed per row (three graph nodes where a weighted sum took
    # two per term, every fit step); not a matrix-vector product: the BLAS rounds a row differently with
    # the number of rows, and a hypothesis' energy (its pruning, early stop, ranking) must not depend on
    # how many others are fitted with it
    t = torch.stack(list(terms.values()), 1)
    return (t * torch.tensor([weights[k] for k in terms], dtype=t.dtype, device=t.device)).sum(1)
