"""DeepSDF-style shape space (SDFLabel's): an auto-decoder MLP ``f(x; z) -> sdf`` with a small latent z
projected onto the unit sphere after every training step, trained on SDF grids of car models.

Design
------
- **Metric, like the PCA prior.** x is a canonical point in metres (x forward, y left, z up, origin at
  the box centre; :mod:`autolabel_ros.shape.prior`), the output a metric SDF squashed into
  ``[-T, T]`` by ``T tanh``. The paper resizes models to unit diameter and fits the scale apart; here
  size is part of the shape, as in the PCA prior, so the fitter treats both spaces alike (its per-axis
  log scales still refine the size).
- **Latents near one pole.** Codes start at ``pole + noise`` and a weak pull ``1 - z . pole`` keeps
  them in one cap of the sphere (the paper's sphere constraint with DeepSDF's code prior), so the
  space has a centre: the normalised mean code.
- **Baked for the fit.** The fitter reads shapes through grids (:class:`autolabel_ros.fit.sdf.SdfModel`:
  one ``grid_sample`` per lookup, batched over hypotheses). :func:`bake_prior` evaluates the decoder
  on the prior grid at the centre code and its derivative along the tangent directions of the sphere
  there (``latent - 1`` of them): a :class:`ShapePrior` whose codes are tangent-plane (log-map)
  coordinates. The fit therefore moves in the decoder's first-order neighbourhood of the centre; the
  decoder itself stays available for exact queries and analytic normals (:meth:`DeepSdf.sdf`,
  :meth:`DeepSdf.normals`, :meth:`DeepSdf.decode_code`).
- **Files.** One ``.pt`` with the decoder's ``state_dict``, the training latents, sizes, the baked
  grids (float16) and plain metadata, loaded with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autolabel_ros.core.train_clock import TrainClock
from autolabel_ros.shape.prior import (DEFAULT_EXTENT, DEFAULT_RESOLUTION, DEFAULT_TRUNCATION, PriorError,
                                       ShapePrior, grid_points)

FORMAT = 'autolabel-deepsdf-1'


class DeepSdf(torch.nn.Module):
    """f(x; z): canonical points (N, 3) in metres and unit latents (N, L) or (L,) -> SDF (N,) in metres."""

    def __init__(self, latent: int = 3, width: int = 128, depth: int = 4, extent=DEFAULT_EXTENT,
                 truncation: float = DEFAULT_TRUNCATION):
        super().__init__()
        self.latent, self.width, self.depth = int(latent), int(width), int(depth)
        self.truncation = float(truncation)
        self.register_buffer('extent', torch.as_tensor(np.asarray(extent, np.float32)).reshape(3))
        ins = 3 + self.latent
        layers = []
        for k in range(self.depth):
            # DeepSDF's skip: the input joins again half way
            n_in = ins if k == 0 else self.width + (ins if k == self.depth // 2 else 0)
            layers.append(torch.nn.Linear(n_in, self.width))
        self.layers = torch.nn.ModuleList(layers)
        self.out = torch.nn.Linear(self.width, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 1:
            z = z.expand(x.shape[0], -1)
        inp = torch.cat([x / self.extent, z], -1)
        h = inp
        for k, layer in enumerate(self.layers):
            if k == self.depth // 2 and k > 0:
                h = torch.cat([h, inp], -1)
            h = F.silu(layer(h))
        return self.truncation * torch.tanh(self.out(h)[..., 0] / self.truncation)

    def normals(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sdf (N,), unit outward normals (N, 3)) at x: the normalised SDF gradient by autograd."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            phi = self(xg, z.detach())
            (g,) = torch.autograd.grad(phi.sum(), xg)
        return phi.detach(), F.normalize(g, dim=-1)


def sphere(z: torch.Tensor) -> torch.Tensor:
    return F.normalize(z, dim=-1)


def tangent_frame(centre: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """(L - 1, L) orthonormal tangent directions at the unit ``centre``, ordered by how much the
    training latents spread along them (principal directions of their log map)."""
    c = centre / np.linalg.norm(centre)
    proj = np.eye(len(c)) - np.outer(c, c)
    basis = np.linalg.svd(proj)[0][:, :len(c) - 1].T          # any orthonormal tangent basis
    logs = log_map(c, latents) @ basis.T
    _, _, vt = np.linalg.svd(logs - logs.mean(0), full_matrices=False)
    return vt @ basis


def log_map(centre: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Tangent vectors at ``centre`` (L,) of unit latents z (N, L): direction times geodesic angle."""
    z = np.atleast_2d(z)
    cos = np.clip(z @ centre, -1.0, 1.0)
    v = z - cos[:, None] * centre
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(n > 1e-9, v / np.maximum(n, 1e-9) * np.arccos(cos)[:, None], 0.0)


def exp_map(centre: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit latents of tangent vectors v (N, L) at ``centre``: the inverse of :func:`log_map`."""
    v = np.atleast_2d(v)
    a = np.linalg.norm(v, axis=1, keepdims=True)
    d = np.where(a > 1e-9, v / np.maximum(a, 1e-9), 0.0)
    return np.cos(a) * centre + np.sin(a) * d


def _sample_batch(grids: torch.Tensor, near: list, extent: torch.Tensor, models: torch.Tensor,
                  n: int, gen: torch.Generator, spacing: torch.Tensor):
    """n points per model: 70 % around near-surface grid nodes (jittered by a voxel), 30 % uniform
    in the box; targets by trilinear interpolation of the model's grid."""
    pts = []
    n_near = int(0.7 * n)
    for m in models.tolist():
        idx = near[m][torch.randint(0, len(near[m]), (n_near,), generator=gen)]
        p_near = idx + (torch.rand(n_near, 3, generator=gen) - 0.5) * spacing * 2
        p_uni = (torch.rand(n - n_near, 3, generator=gen) * 2 - 1) * extent
        pts.append(torch.cat([p_near, p_uni]))
    pts = torch.stack(pts)                                                  # B, n, 3
    g = (pts / extent).clamp(-1, 1).view(len(models), 1, 1, n, 3)
    tgt = F.grid_sample(grids[models], g, align_corners=True, padding_mode='border').view(len(models), n)
    return pts, tgt


def train_deepsdf(sdfs: np.ndarray, extent=DEFAULT_EXTENT, truncation: float = DEFAULT_TRUNCATION,
                  latent: int = 3, width: int = 128, depth: int = 4, steps: int = 3000,
                  minutes: float = 10.0, batch_models: int = 8, points: int = 2048, lr: float = 1e-3,
                  lr_latent: float = 1e-2, w_pole: float = 1e-3, seed: int = 0, log=print):
    """Auto-decoder training on SDF grids (M, nz, ny, nx) (metres, phi > 0 outside). Returns
    (decoder, unit latents (M, L) as numpy, per-step losses). L1 on the SDF, near-surface samples
    weighted x4 (the surface is what the fit reads)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    M = len(sdfs)
    grids = torch.as_tensor(np.asarray(sdfs, np.float32))[:, None]          # M, 1, nz, ny, nx
    nz, ny, nx = grids.shape[2:]
    ext = torch.as_tensor(np.asarray(extent, np.float32))
    pts = torch.as_tensor(grid_points((nx, ny, nz), extent).reshape(-1, 3), dtype=torch.float32)
    spacing = 2 * ext / torch.tensor([nx - 1, ny - 1, nz - 1], dtype=torch.float32)
    near = [pts[(g.reshape(-1).abs() < 0.15)] for g in grids[:, 0]]
    net = DeepSdf(latent, width, depth, extent, truncation)
    pole = torch.zeros(latent)
    pole[0] = 1.0
    z = torch.nn.Parameter(sphere(pole + 0.1 * torch.randn(M, latent, generator=gen)))
    opt = torch.optim.Adam([{'params': net.parameters(), 'lr': lr}, {'params': [z], 'lr': lr_latent}])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + np.cos(np.pi * min(k, steps) / steps)))
    losses, clock = [], TrainClock(steps, minutes, 200, log, stop_prefix='deepsdf: ')
    for step in range(steps):
        models = torch.randint(0, M, (min(batch_models, M),), generator=gen)
        p, tgt = _sample_batch(grids, near, ext, models, points, gen, spacing)
        pred = net(p.reshape(-1, 3), z[models].repeat_interleave(points, 0)).view_as(tgt)
        w = 1.0 + 3.0 * (tgt.abs() < 0.1).float()
        loss = ((pred - tgt).abs() * w).sum() / w.sum() + w_pole * (1 - z[models] @ pole).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            z.copy_(sphere(z))                           # SDFLabel: project onto the sphere every step
        losses.append(float(loss.detach()))
        if clock.due(step):
            clock.report(f'deepsdf step {step:5d}  L1 {np.mean(losses[-200:]) * 100:.2f} cm')
        if clock.expired(step):
            break
    return net.eval(), z.detach().numpy().astype(np.float64), losses


def fit_latent(net: DeepSdf, sdf_grid: np.ndarray, centre: np.ndarray, steps: int = 150,
               points: int = 4096, seed: int = 0) -> np.ndarray:
    """Auto-decoder inference: the unit latent whose decoded SDF best matches a new model's grid
    (L1 on near-surface and uniform samples, Adam from the centre code, projected every step)."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.as_tensor(np.asarray(sdf_grid, np.float32))[None, None]
    nz, ny, nx = grid.shape[2:]
    ext = net.extent
    pts = torch.as_tensor(grid_points((nx, ny, nz), ext.numpy()).reshape(-1, 3), dtype=torch.float32)
    near = [pts[grid.reshape(-1).abs() < 0.15]]
    spacing = 2 * ext / torch.tensor([nx - 1, ny - 1, nz - 1], dtype=torch.float32)
    z = torch.nn.Parameter(torch.as_tensor(centre, dtype=torch.float32).clone())
    opt = torch.optim.Adam([z], lr=2e-2)
    for _ in range(steps):
        p, tgt = _sample_batch(grid, near, ext, torch.zeros(1, dtype=torch.long), points, gen, spacing)
        loss = (net(p[0], sphere(z)) - tgt[0]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.copy_(sphere(z))
    return z.detach().numpy().astype(np.float64)


@torch.no_grad()
def decode_grid(net: DeepSdf, z: np.ndarray, resolution=DEFAULT_RESOLUTION, extent=None,
                chunk: int = 65536) -> np.ndarray:
    """(nz, ny, nx) SDF grid of one unit latent (the prior grid layout)."""
    extent = net.extent.numpy() if extent is None else extent
    pts = torch.as_tensor(grid_points(resolution, extent).reshape(-1, 3), dtype=torch.float32)
    zt = torch.as_tensor(np.asarray(z, np.float32))
    out = torch.cat([net(pts[i:i + chunk], zt) for i in range(0, len(pts), chunk)])
    return out.numpy().reshape(tuple(reversed([int(r) for r in resolution])))


def bake_prior(net: DeepSdf, latents: np.ndarray, sizes: np.ndarray, resolution=DEFAULT_RESOLUTION,
               step_rad: float = 0.02, meta: dict | None = None) -> ShapePrior:
    """The decoder's first-order neighbourhood of its centre code as a :class:`ShapePrior` (see the
    module docstring): mean = f(grid; c), basis_k = d f / d t along tangent direction k (central
    differences along the geodesic), codes = the training latents' tangent coordinates."""
    z = np.asarray(latents, np.float64)
    centre = z.mean(0)
    centre /= np.linalg.norm(centre)
    frame = tangent_frame(centre, z)
    codes = log_map(centre, z) @ frame.T                                       # M, L - 1
    mean = decode_grid(net, centre, resolution)
    basis = np.stack([(decode_grid(net, exp_map(centre, step_rad * e)[0], resolution)
                       - decode_grid(net, exp_map(centre, -step_rad * e)[0], resolution)) / (2 * step_rad)
                      for e in frame])
    meta = dict(meta or {}, kind='deepsdf', centre=centre.tolist(), tangent=frame.tolist(), n_models=len(z))
    return ShapePrior(grid_res=tuple(resolution), extent=net.extent.numpy().astype(np.float64), mean=mean,
                      basis=basis, codes=codes, sizes=np.asarray(sizes, np.float32), stdev=codes.std(0),
                      truncation=net.truncation, meta=meta)


class DeepSdfSpace:
    """A trained decoder with its latents and its baked grids (:func:`bake_prior`)."""

    def __init__(self, net: DeepSdf, latents: np.ndarray, prior: ShapePrior):
        self.net, self.latents, self.prior = net, np.asarray(latents, np.float64), prior
        self.centre = np.asarray(prior.meta['centre'], np.float64)
        self.tangent = np.asarray(prior.meta['tangent'], np.float64)

    def latent_of(self, code) -> np.ndarray:
        """The unit latent of a baked (tangent-coordinate) code."""
        return exp_map(self.centre, np.asarray(code, np.float64) @ self.tangent)[0]

    def decode_code(self, code, resolution=None) -> np.ndarray:
        """Exact decoder grid (not the first-order bake) of a baked code."""
        return decode_grid(self.net, self.latent_of(code), resolution or self.prior.grid_res)

    def save(self, path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        p = self.prior
        blob = {'format': FORMAT, 'latent': self.net.latent, 'width': self.net.width, 'depth': self.net.depth,
                'truncation': self.net.truncation,
                'state_dict': {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                'latents': torch.as_tensor(self.latents), 'grid_res': list(p.grid_res),
                'mean': torch.as_tensor(p.mean).half(), 'basis': torch.as_tensor(p.basis).half(),
                'codes': torch.as_tensor(p.codes), 'sizes': torch.as_tensor(p.sizes),
                'stdev': torch.as_tensor(p.stdev),
                'meta': {k: (v if isinstance(v, (list, int, float)) else str(v)) for k, v in p.meta.items()}}
        torch.save(blob, path)

    @classmethod
    def load(cls, path) -> 'DeepSdfSpace':
        path = Path(path)
        try:
            blob = torch.load(path, map_location='cpu', weights_only=True)
        except FileNotFoundError as exc:
            raise PriorError(f'{path}: DeepSDF file not found') from exc
        except Exception as exc:  # noqa: BLE001 - any unpickling error means "not our file"
            raise PriorError(f'{path}: not a DeepSDF shape space ({exc.__class__.__name__})') from exc
        if not isinstance(blob, dict) or blob.get('format') != FORMAT:
            raise PriorError(f'{path}: not a DeepSDF shape space (format {FORMAT} expected)')
        net = DeepSdf(blob['latent'], blob['width'], blob['depth'], truncation=blob['truncation'])
        net.load_state_dict(blob['state_dict'])
        prior = ShapePrior(grid_res=tuple(blob['grid_res']), extent=net.extent.numpy().astype(np.float64),
                           mean=blob['mean'].float().numpy(), basis=blob['basis'].float().numpy(),
                           codes=blob['codes'].numpy(), sizes=blob['sizes'].numpy(),
                           stdev=blob['stdev'].numpy(), truncation=net.truncation, meta=dict(blob['meta']))
        return cls(net.eval(), blob['latents'].numpy(), prior)


def build_deepsdf(sdfs: np.ndarray, sizes: np.ndarray, resolution=DEFAULT_RESOLUTION, extent=DEFAULT_EXTENT,
                  truncation: float = DEFAULT_TRUNCATION, source: str = '', log=print,
                  **train_kw) -> DeepSdfSpace:
    """Train the decoder on the grids and bake it (``autolabel-build-prior --kind deepsdf``)."""
    t0 = time.perf_counter()
    net, z, losses = train_deepsdf(sdfs, extent, truncation, log=log, **train_kw)
    meta = dict(source=source, train_steps=len(losses), train_s=round(time.perf_counter() - t0, 1),
                final_l1_cm=round(float(np.mean(losses[-100:])) * 100, 3),
                build_date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    return DeepSdfSpace(net, z, bake_prior(net, z, sizes, resolution, meta=meta))


def default_deepsdf_path() -> Path:
    return Path(__file__).resolve().parents[1] / 'data' / 'deepsdf_procedural.pt'
