"""SDFLabel's surfel renderer and its two losses, batched over hypotheses (objects x headings).

- **Surfels.** Seeds are the fit grid's nodes within ``band`` of the mean shape's surface (fixed per
  frame). For each hypothesis they are projected onto its surface, ``p = x - n phi(x)``, with ``n`` the
  normalised SDF gradient by autograd (no gradient through ``n``; phi carries the shape code's), and
  each is a tangent disc of radius ``radius`` with normal ``n``.
- **NOCS colour** of a surfel = its canonical position / the hypothesis' box diagonal + 0.5
  (:mod:`autolabel_ros.core.nocs`).
- **Rendering** (:func:`render_nocs`): every pixel ray meets every disc's plane; a soft in-disc weight
  times a softmax over the (normalised) hit depths, sharpness ``sigma``, blends the surfel colours:
  a NOCS image and its coverage, differentiable in pose and shape.
- **2D NOCS correspondence loss** (:func:`nocs_loss`): each surfel the camera sees (facing it and
  first in its cell of the prediction grid) is matched, without gradient, to the predicted NOCS cell
  nearest in colour (within ``match_radius``); the loss is the robust image distance between the
  surfel's projection and that cell, in patch sides. Its gradient moves the projection, i.e. pose,
  scale and shape.
- **3D loss** (:func:`surface_loss`): camera-facing surfels to their nearest LiDAR point of the object
  (within ``trunc``, 0.25 m, the paper's), measured along the surfel normal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from autolabel_ros.fit.rays import rotate_dirs, to_object_frame


@dataclass
class NocsTargets:
    """The CSS predictions of a frame's objects as tensors: N objects, their mask cells packed (C of
    them at most, padding invalid)."""

    uv: torch.Tensor         # N, C, 2 image coordinates of the cell centres
    nocs: torch.Tensor       # N, C, 3 predicted NOCS
    valid: torch.Tensor      # N, C bool: a mask cell (not padding)
    origin: torch.Tensor     # N, 2 image coordinates of the patch's corner
    side: torch.Tensor       # N, patch side in pixels (the loss unit)
    grid: int                # G: the prediction is G x G cells
    K: torch.Tensor          # 3, 3
    T_cam_lidar: torch.Tensor  # 4, 4


def nocs_targets(preds: list, K: np.ndarray, T_cam_lidar: np.ndarray, device) -> NocsTargets | None:
    """Tensors of per-object :class:`autolabel_ros.css.predict.NocsPrediction` s (None entries: no
    cell valid); None when no object has one."""
    if all(p is None for p in preds):
        return None
    g = next(p for p in preds if p is not None).nocs.shape[0]
    N = len(preds)
    C = max(1, max(int(p.valid.sum()) for p in preds if p is not None))
    uv, nocs, valid = np.zeros((N, C, 2)), np.zeros((N, C, 3)), np.zeros((N, C), bool)
    origin, side = np.zeros((N, 2)), np.ones(N)
    for k, p in enumerate(preds):
        if p is None:
            continue
        x0, y0, s = p.window
        c = (np.arange(g) + 0.5) * s / g
        uu, vv = np.meshgrid(x0 + c, y0 + c)
        m = p.valid.ravel()
        n = int(m.sum())
        uv[k, :n] = np.stack([uu.ravel(), vv.ravel()], -1)[m]
        nocs[k, :n] = p.nocs.reshape(-1, 3)[m]
        valid[k, :n] = True
        origin[k], side[k] = (x0, y0), s
    f32 = dict(dtype=torch.float32, device=device)
    return NocsTargets(uv=torch.as_tensor(uv, **f32), nocs=torch.as_tensor(nocs, **f32),
                       valid=torch.as_tensor(valid, device=device), origin=torch.as_tensor(origin, **f32),
                       side=torch.as_tensor(side, **f32), grid=g,
                       K=torch.as_tensor(K, **f32), T_cam_lidar=torch.as_tensor(T_cam_lidar, **f32))


@dataclass
class Seeds:
    """Surfel seeds: canonical grid nodes near the mean surface and the mean shape's normals there."""

    x: torch.Tensor          # S, 3
    n: torch.Tensor          # S, 3 unit normals of the mean shape (autograd of its SDF)
    g: torch.Tensor          # S, |grad phi| there (a truncated, interpolated SDF is not a unit-slope one)


def surface_seeds(sdf, band: float = 0.12, max_points: int = 400, seed: int = 0) -> Seeds:
    """The shape space's fit-grid nodes within ``band`` of the mean surface (a seeded random subset of
    at most ``max_points``) with the mean shape's normals."""
    vol = sdf.vol[0]                                            # nz, ny, nx (mean SDF)
    nz, ny, nx = vol.shape
    ext = sdf.extent
    axes = [torch.linspace(-float(e), float(e), n, device=vol.device) for e, n in zip(ext, (nx, ny, nz))]
    zz, yy, xx = torch.meshgrid(axes[2], axes[1], axes[0], indexing='ij')
    pts = torch.stack([xx, yy, zz], -1)[vol.abs() < band]
    if len(pts) > max_points:
        g = torch.Generator().manual_seed(seed)
        pts = pts[torch.randperm(len(pts), generator=g)[:max_points].to(pts.device)]
    zero = torch.zeros(1, sdf.d, device=pts.device)
    n, g = normals(sdf, pts[None], zero)
    return Seeds(x=pts, n=n[0], g=g[0])


def normals(sdf, x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit outward normals (B, S, 3) at canonical points x (B, S, 3) of shapes ``codes`` (B, d) and the
    gradient's norm (B, S): the SDF gradient by autograd (no gradient flows through them)."""
    hyp = torch.arange(codes.shape[0], device=codes.device)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        phi = sdf.query(xg, hyp, codes.detach(), None if scales is None else scales.detach())
        (grad,) = torch.autograd.grad(phi.sum(), xg)
    return torch.nn.functional.normalize(grad, dim=-1), grad.norm(dim=-1).clamp(0.5, 2.0)


def surfels(sdf, seeds: Seeds, codes: torch.Tensor, scales: torch.Tensor | None = None,
            exact_normals: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface points (B, S, 3) and unit normals (B, S, 3) of B shapes, canonical (scaled) frame:
    ``p = x - n phi(x) / |grad phi|`` (a Newton step onto the zero level). The fit uses the mean
    shape's normals (the codes move the surface by
    centimetres, the normals hardly turn; one autograd pass less per step); ``exact_normals`` takes
    each shape's own and a second Newton step (the interpolated, truncated SDF's slope is not 1)."""
    B = codes.shape[0]
    x = seeds.x[None].expand(B, -1, -1)
    n = seeds.n[None].expand(B, -1, -1)
    g = seeds.g[None].expand(B, -1)
    if scales is not None:
        x = x * scales[:, None, :]
        n = torch.nn.functional.normalize(n / scales[:, None, :], dim=-1)
    hyp = torch.arange(B, device=codes.device)
    if exact_normals:          # rendering: each shape's own normals and a second Newton step
        n, g = normals(sdf, x, codes, scales)
        x = x - n * (sdf.query(x, hyp, codes, scales) / g)[..., None]
        n, g = normals(sdf, x, codes, scales)
    phi = sdf.query(x, hyp, codes, scales)
    return x - n * (phi / g)[..., None], n


def _to_lidar(p: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(pose[:, 3])[:, None], torch.sin(pose[:, 3])[:, None]
    return torch.stack([c * p[..., 0] - s * p[..., 1] + pose[:, None, 0],
                        s * p[..., 0] + c * p[..., 1] + pose[:, None, 1], p[..., 2] + pose[:, None, 2]], -1)


def project(pts: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image coordinates (..., 2) and camera depth (...) of LiDAR-frame points (..., 3)."""
    cam = pts @ T[:3, :3].T + T[:3, 3]
    z = cam[..., 2]
    uvw = cam @ K.T
    return uvw[..., :2] / z.clamp_min(1e-3)[..., None], z


def nocs_colours(p: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """NOCS (B, S, 3) of canonical points p (B, S, 3) of boxes of size (B, 3)."""
    return p / torch.linalg.norm(size, dim=-1)[:, None, None] + 0.5


def visible(p_obj: torch.Tensor, n: torch.Tensor, cam_obj: torch.Tensor, uv: torch.Tensor, z: torch.Tensor,
            cell: torch.Tensor, origin: torch.Tensor, grid: int, depth_tol: float = 0.15) -> torch.Tensor:
    """(B, S) bool, no gradient: surfels facing the camera and within ``depth_tol`` of the nearest one
    in their cell of a grid x grid raster (cell size ``cell`` (B,) pixels from ``origin`` (B, 2))."""
    with torch.no_grad():
        facing = ((cam_obj[:, None, :] - p_obj) * n).sum(-1) > 0
        ij = torch.floor((uv - origin[:, None, :]) / cell[:, None, None]).long()
        inside = ((ij >= 0) & (ij < grid)).all(-1) & (z > 0.5) & facing
        B, S = z.shape
        flat = (torch.arange(B, device=z.device)[:, None] * grid * grid
                + ij[..., 1].clamp(0, grid - 1) * grid + ij[..., 0].clamp(0, grid - 1))
        zb = torch.full((B * grid * grid,), float('inf'), device=z.device)
        zb = zb.scatter_reduce(0, flat[inside], z[inside], reduce='amin')
        return inside & (z <= zb[flat] + depth_tol)


def nocs_loss(sdf, p, n, pose, codes, scales, obj, tg: NocsTargets, match_radius: float = 0.12,
              robust: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) 2D NOCS correspondence loss of hypotheses with surfels p, n (B, S, 3) (:func:`surfels`),
    pose (B, 4), codes, scales and object index obj, and (B,) the share of visible surfels that found
    a match (0 where the object has no prediction)."""
    size = (sdf.size_of(codes) * (scales if scales is not None else 1.0)).detach()
    col = nocs_colours(p.detach(), size)
    uv, z = project(_to_lidar(p, pose), tg.K, tg.T_cam_lidar)
    R = tg.T_cam_lidar[:3, :3]
    cam = -R.T @ tg.T_cam_lidar[:3, 3]
    cam_obj = to_object_frame(cam.view(1, 1, 3).expand(len(pose), 1, 3), pose)[:, 0]
    side = tg.side[obj]
    g = tg.grid
    vis = visible(p.detach(), n, cam_obj.detach(), uv.detach(), z.detach(), side / g, tg.origin[obj], g)
    with torch.no_grad():
        d = torch.cdist(col, tg.nocs[obj])                                  # B, S, C
        d = torch.where(tg.valid[obj][:, None, :], d, torch.full_like(d, 1e3))
        dmin, j = d.min(-1)
        keep = vis & (dmin < match_radius)
    target = torch.gather(tg.uv[obj], 1, j[..., None].expand(-1, -1, 2))   # B, S, 2
    err = torch.linalg.norm(uv - target, dim=-1) / side[:, None]
    rho = robust * torch.tanh(err / robust)
    w = keep.float()
    loss = (rho * w).sum(-1) / w.sum(-1).clamp_min(1.0)
    share = w.sum(-1) / vis.float().sum(-1).clamp_min(1.0)
    return loss, share


def surface_loss(p, n, pose, pts: torch.Tensor, w: torch.Tensor, cam: torch.Tensor,
                 trunc: float = 0.25) -> torch.Tensor:
    """(B,) SDFLabel's 3D loss: for the camera-facing surfels p, n (B, S, 3) with a LiDAR point of the
    object (pts (B, M, 3), weights w (B, M), 0 = padding) within ``trunc``, the distance to the nearest
    one along the surfel's normal (point to plane: a surfel between two scan lines is not pulled
    sideways onto one of them), truncated at ``trunc``; surfels with no point that near say nothing."""
    cam_obj = to_object_frame(cam.view(1, 1, 3).expand(len(pose), 1, 3), pose)[:, 0].detach()
    q = to_object_frame(pts, pose)
    with torch.no_grad():
        facing = ((cam_obj[:, None, :] - p) * n).sum(-1) > 0
        d = torch.cdist(p, q)
        d = torch.where(w[:, None, :] > 0, d, torch.full_like(d, 1e3))
        dmin, j = d.min(-1)
        near = facing & (dmin < trunc)
    qj = torch.gather(q, 1, j[..., None].expand(-1, -1, 3))
    e = ((qj - p) * n).sum(-1).abs().clamp(max=trunc)
    f = near.float()
    return (e * f).sum(-1) / f.sum(-1).clamp_min(1.0)


def render_nocs(sdf, seeds, pose, codes, scales, ray_o: torch.Tensor, ray_d: torch.Tensor,
                radius: float | None = None, sigma: float = 0.02, chunk: int = 2048
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """NOCS image (B, P, 3) and coverage (B, P) of B hypotheses seen along rays ray_d (B, P, 3) from
    ray_o (3,) (LiDAR frame): tangent discs of radius ``radius`` (default: the seed spacing) blended by
    a softmax over their hit depths, normalised by the nearest hit (sharpness ``sigma``)."""
    p, n = surfels(sdf, seeds, codes, scales, exact_normals=True)
    if radius is None:
        radius = float((2 * sdf.extent / (torch.tensor(sdf.vol.shape[1:][::-1], device=p.device) - 1)).max())
    size = sdf.size_of(codes) * (scales if scales is not None else 1.0)
    col = nocs_colours(p, size)
    o = to_object_frame(ray_o.view(1, 1, 3).expand(len(pose), 1, 3), pose)        # B, 1, 3
    d = rotate_dirs(ray_d, pose[:, 3])                                            # B, P, 3
    imgs, covs = [], []
    for a in range(0, d.shape[1], chunk):
        dc = d[:, a:a + chunk]                                                    # B, Pc, 3
        den = torch.einsum('bpk,bsk->bps', dc, n)
        num = ((p - o) * n).sum(-1)[:, None, :]                                   # B, 1, S
        t = num / torch.where(den.abs() < 1e-6, torch.full_like(den, -1e-6), den)  # hit depth
        q = o[:, :, None, :] + t[..., None] * dc[:, :, None, :]                   # B, Pc, S, 3
        r2 = ((q - p[:, None]) ** 2).sum(-1)
        inside = torch.sigmoid((radius ** 2 - r2) / (0.1 * radius ** 2)) * (t > 0).float()
        tn = t / t.detach().where(inside > 0.5, torch.full_like(t, 1e4)).amin(-1, keepdim=True).clamp_min(0.1)
        logit = torch.where(inside > 1e-3, -(tn - 1.0) / sigma + torch.log(inside.clamp_min(1e-6)),
                            torch.full_like(t, -1e4))
        wgt = torch.softmax(logit, -1)
        imgs.append(torch.einsum('bps,bsk->bpk', wgt, col))
        covs.append(inside.max(-1).values)
    return torch.cat(imgs, 1), torch.cat(covs, 1)
