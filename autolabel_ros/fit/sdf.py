"""Batched, differentiable SDF lookup of a PCA shape prior: ``phi(p; s) = mean(p) + sum_k s_k basis_k(p)``.

The prior volume is metric, in the canonical box frame (x forward, y left, z up, origin at the box
centre), sampled on an R^3 grid spanning ``[-extent, +extent]`` per axis. Inside the grid the SDF is
read by trilinear interpolation (``grid_sample``); outside, the distance to the grid box is added to
the value at the nearest grid point, so points far from the object still pull it closer.

Two equivalent lookup modes (see benchmarks/RESULTS.md for the timing of both):
- ``decode``: build one R^3 volume per hypothesis (``mean + codes @ basis``, cheap at R=32),
  stack them along one axis and sample every point with a single ``grid_sample`` call, at a stacked
  coordinate that is exact in float32 (:func:`stack_rows`), so a hypothesis' values and gradients do not
  depend on how many others share the stack or where it sits in it (the silhouette's ray samples);
- ``shared``: sample the (1+d)-channel prior volume once per point and combine the channels with the
  point's hypothesis code (no per-hypothesis volume, but 1+d channels to interpolate).
:meth:`SdfModel.query` (the LiDAR, free-space, surfel and heading lookups: few points) reads the channels
in both modes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from autolabel_ros.shape.prior import grid_axes


@dataclass
class PriorArrays:
    """What the fitter needs from a shape prior, as plain arrays (grids ordered [iz, iy, ix], the
    layout of :class:`autolabel_ros.shape.prior.ShapePrior` and of ``grid_sample``)."""

    mean: np.ndarray      # nz x ny x nx metric SDF (phi > 0 outside)
    basis: np.ndarray     # d x nz x ny x nx
    stdev: np.ndarray     # d, standard deviation of the codes (regulariser scale)
    extent: np.ndarray    # 3, half-size of the grid box in metres (grid points at +-extent)
    sizes: np.ndarray     # M x 3, (l, w, h) per prior model
    codes: np.ndarray     # M x d
    name: str = 'prior'


def prior_arrays(prior) -> PriorArrays:
    """Adapt a :class:`autolabel_ros.shape.prior.ShapePrior` (or a PriorArrays) to the fitter."""
    if isinstance(prior, PriorArrays):
        return prior
    extent = np.broadcast_to(np.asarray(prior.extent, dtype=np.float64), (3,)).copy()
    return PriorArrays(mean=np.asarray(prior.mean, np.float32), basis=np.asarray(prior.basis, np.float32),
                       stdev=np.asarray(prior.stdev, np.float32), extent=extent,
                       sizes=np.asarray(prior.sizes, np.float64), codes=np.asarray(prior.codes, np.float64),
                       name=str(getattr(prior, 'meta', {}).get('name', 'prior')
                                if isinstance(getattr(prior, 'meta', None), dict) else 'prior'))


def analytic_prior(res: int = 32) -> PriorArrays:
    """A small analytic car-like prior (body box + set-back cabin, rounded), with 5 basis volumes =
    derivatives w.r.t. length, width, height, cabin offset and cabin length. Used by unit tests and
    as a fallback when no prior file exists; the real default is the packaged procedural-car prior."""
    extent = np.array([2.8, 1.2, 1.0])
    axes = [np.linspace(-e, e, res) for e in extent]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing='ij')
    P = np.stack([xx, yy, zz], -1)                    # [iz, iy, ix] layout

    def rbox(p, c, half, r):
        q = np.abs(p - c) - (np.asarray(half) - r)
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0) - r

    def car(theta):
        L, W, H, off, cl = theta
        body = rbox(P, np.array([0, 0, -H * 0.2]), [L / 2, W / 2, H * 0.3], 0.12)
        cabin = rbox(P, np.array([off, 0, H * 0.25]), [cl / 2, W * 0.42, H * 0.25], 0.15)
        return np.minimum(body, cabin)

    theta0 = np.array([4.2, 1.7, 1.45, -0.35, 2.2])
    mean = car(theta0)
    stdev = np.array([0.25, 0.08, 0.1, 0.15, 0.2])
    basis = np.stack([(car(theta0 + np.eye(5)[k] * 1e-2) - car(theta0 - np.eye(5)[k] * 1e-2)) / 2e-2
                      for k in range(5)])
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(40, 5)) * stdev
    sizes = np.stack([[c[0] + theta0[0], c[1] + theta0[1], theta0[2] + c[2]] for c in codes])
    return PriorArrays(mean=mean.astype(np.float32), basis=basis.astype(np.float32),
                       stdev=stdev.astype(np.float32), extent=extent, sizes=sizes, codes=codes,
                       name='analytic')


def _crossing(z: torch.Tensor, p0, p1, first):
    """Height of the zero crossing between node ``first - 1`` (SDF p0 > 0) and ``first`` (p1 <= 0) of
    a column with node heights z, by linear interpolation (the node itself when first == 0)."""
    t = (p0 / (p0 - p1).clamp_min(1e-6)).clamp(0.0, 1.0)
    return z[(first - 1).clamp_min(0)] + torch.where(first > 0, t, torch.zeros_like(t)) * (z[1] - z[0])


def _lowest_crossings(vol: torch.Tensor, z: torch.Tensor, codes: torch.Tensor):
    """Lowest zero crossing of each column of a (1+d, C, k) slab of prior channels (k nodes per column,
    bottom first; or (B, 1+d, C, k): each hypothesis' own columns) for codes (B, d), without gradient:
    heights (B, C), validity (B, C) and the first inside node (B, C)."""
    with torch.no_grad():
        C, k = vol.shape[-2:]
        if vol.dim() == 3:
            phi = torch.addmm(vol[0].reshape(1, C * k), codes.detach(),
                              vol[1:].reshape(vol.shape[0] - 1, C * k))
        else:
            B = vol.shape[0]
            phi = torch.baddbmm(vol[:, :1].reshape(B, 1, C * k), codes.detach()[:, None],
                                vol[:, 1:].reshape(B, -1, C * k))
        phi = phi.view(-1, C, k)
        # the lowest inside node: the first largest of the 0/1 inside flags along the contiguous node
        # axis (max over a dim returns the first, 0 for a column with none, and the largest flag is the
        # column's validity; one pass, ~4x faster than argmax over this short axis on CPU)
        inside = phi <= 0
        valid, first = inside.view(torch.uint8).max(-1)
        valid = valid.bool()
        p0 = phi.gather(2, (first - 1).clamp_min(0)[..., None])[..., 0]
        p1 = phi.gather(2, first[..., None])[..., 0]
        return _crossing(z, p0, p1, first), valid, first

# ----------------------------------------------------------------------------- the stacked layout
# The decode mode's B volumes share one tensor: hypothesis b's grid row y (canonical y) is stack row
# b ny + y, and each stack row holds the nz x nx (z, x) plane of that row. The samplers read the stack
# row at a float32 coordinate; for a hypothesis' fit not to depend on the others, that coordinate must
# round the same whatever b and the stack size: the local y is put on a grid of 1/ROW_STEPS of a voxel
# and the stack has a power-of-two number of rows n (zero rows pad it), so the row b ny + y, its
# normalized coordinate (align_corners=False: (2 row + 1) / n - 1) and the sampler's way back are all
# exact in float32 while n ROW_STEPS <= 2^24 (n <= 8192 rows: 409 hypotheses at ny = 20; float64 has
# 2^40 steps for the same n, for gradchecks); the sampler's
# weights are then the local fraction itself and its row derivative is scaled by n / 2, a power of two
# that the chain rule takes back exactly. The other axes never see b. Beyond 8192 rows the lookup is
# still right, only no longer batch-invariant to the last bit. (The quantum is ~7e-5 m of the fitting
# grid's y; before, the float32 step of the stacked coordinate moved a hypothesis' SDF by up to 2e-5 m
# with the stack size, which 80 Adam steps turned into IoU changes of 0.005-0.017.)
ROW_STEPS = 2.0 ** 11
STACK_ROWS_EXACT = 8192


def row_steps(dtype) -> float:
    """Steps per voxel of the stack's local y for ``dtype`` (ROW_STEPS for float32)."""
    return ROW_STEPS if dtype == torch.float32 else ROW_STEPS * 2.0 ** -23 / torch.finfo(dtype).eps


def stack_rows(n_hyp: int, ny: int) -> int:
    """Rows of the stacked volumes of n_hyp hypotheses (grid rows ny each): a power of two."""
    return 1 << max(int(n_hyp * ny - 1).bit_length(), 1)


def _stack_row(gy: torch.Tensor, hyp_rows: torch.Tensor, ny: int, n_rows: int, grad: bool = False):
    """Normalized stack-row coordinates (align_corners=False) of normalized canonical y ``gy`` (no
    gradient) of hypotheses ``hyp_rows`` (broadcast to gy), exact (see above) and, with ``grad``, the
    factors d row / d gy: (ny - 1) / n strictly inside the grid's y range, 0 on and beyond its border (the
    samplers' border convention); (ny - 1) / n is exact, so the sampler's row derivative (n / 2 times
    the one per row) times it rounds once to the same bits for any n. The local position is kept one
    step inside its block: the sampler never meets the stack's own border (which it treats apart)."""
    steps = row_steps(gy.dtype)
    half = 0.5 * (ny - 1) * steps                      # the grid's half height in steps
    ys = gy * half + half                              # y in steps of the stack's grid, 0 .. 2 half
    yq = ys.clamp(1.0, 2 * half - 1.0).round_()
    # hypothesis b's first row, normalized: exact (b ny < n, n a power of two)
    first = torch.add(torch.tensor(1.0 / n_rows - 1.0, dtype=gy.dtype), hyp_rows, alpha=2.0 * ny / n_rows)
    if first.dim() < yq.dim():
        first = first.view(first.shape + (1,) * (yq.dim() - first.dim()))
    row = torch.add(first, yq, alpha=2.0 / (n_rows * steps))
    if not grad:
        return row, None
    return row, ys.sub_(half).abs_().lt_(half).to(yq.dtype).mul_((ny - 1) / n_rows)


# ----------------------------------------------------------------------------- slice-pair lookups
# The decode mode's trilinear lookup as bilinear ones, for the silhouette's many ray samples (torch's 2D
# grid sampler has a vectorized CPU kernel, ~6x faster per point than the 3D one; a dozen more small
# ops per lookup, so the few LiDAR points keep the 3D one): the stack of :meth:`SdfModel.volumes` viewed
# as one image, stack row b ny + y by column k nx + x (slice k of the canonical z); a point reads the
# bilinear values of the two slices around it and interpolates them in z. The same values as the
# trilinear lookup with border padding and aligned corners, with y on the stack's grid (above).

def stack_image(vols: torch.Tensor) -> torch.Tensor:
    """The stacked volumes (1, 1, n, nz, nx) of :meth:`SdfModel.volumes` as the (1, 1, n, nz nx) image."""
    return vols.view(1, 1, vols.shape[2], -1)


def pair_grid(g, hyp_rows: torch.Tensor, shape: tuple, n_rows: int, grad: bool = False):
    """Image coordinates of normalized canonical points g (R, T, 3), or its three (R, T) coordinates
    (contiguous ones are ~5x faster to work on), of hypotheses hyp_rows (R,) in the
    :func:`stack_image` of ``n_rows`` rows of volumes of ``shape`` (nz, ny, nx): the (R, T, 2, 2) grid of
    the 2D sampler (each point's lower and upper slice), the (R, T) weights of the upper slice and, with
    ``grad``, the (R, T) factors that carry the derivatives in the image's x and y and in z back to g's
    x, y and z (0 on and beyond the grid's border)."""
    nz, ny, nx = shape
    width = nz * nx
    gx, gy, gz = g.unbind(-1) if torch.is_tensor(g) else g
    # z in slices; border padding = the clamped coordinate
    zs = gz * (0.5 * (nz - 1)) + 0.5 * (nz - 1)
    zp = zs.clamp(0.0, nz - 1.0)
    k0 = zp.floor().clamp_(max=nz - 2.0)
    wz = zp - k0
    grid = gx.new_empty(gx.shape + (2, 2))
    # x: column k0 nx + x of the (z, x) plane, normalized: (2 col + 1) / width - 1
    c0 = grid[..., 0, 0]
    torch.add(k0.mul_(2.0 * nx / width).add_(nx / width - 1.0), gx.clamp(-1.0, 1.0), alpha=(nx - 1.0) / width,
              out=c0)
    torch.add(c0, 2.0 * nx / width, out=grid[..., 1, 0])
    row, fy = _stack_row(gy, hyp_rows.view((-1,) + (1,) * (gx.dim() - 1)), ny, n_rows, grad)
    grid[..., 0, 1] = row
    grid[..., 1, 1] = row
    if not grad:
        return grid, wz, None
    fx = (gx.abs() < 1.0).to(gx.dtype).mul_(0.5 * (nx - 1) * 2.0 / width)
    fz = (zs == zp).to(gx.dtype).mul_(0.5 * (nz - 1))
    return grid, wz, (fx, fy, fz)


def pair_values(img: torch.Tensor, grid: torch.Tensor, wz: torch.Tensor):
    """Values (wz.shape) of the stacked-slice image at ``grid`` (:func:`pair_grid`) and the differences
    upper - lower slice there."""
    n = grid.numel() // 2
    v = torch.grid_sampler_2d(img, grid.reshape(1, n, 1, 2), 0, 1, False).view(grid.shape[:-1])
    v0, v1 = v.unbind(-1)
    diff = v1 - v0
    return torch.addcmul(v0, wz, diff), diff


def pair_backward(gphi: torch.Tensor, img: torch.Tensor, grid: torch.Tensor, wz: torch.Tensor,
                  diff: torch.Tensor, factors, need_img: bool, need_g: bool):
    """Gradients of :func:`pair_values` (gradient ``gphi`` of its values) on the image and on the
    points' normalized coordinates (gphi.shape + (3,)); either None when not needed."""
    n = grid.numel() // 2
    gw = gphi * wz
    gout = torch.stack([gphi - gw, gw], -1).view(1, 1, n, 1)
    gimg, ggrid = torch.ops.aten.grid_sampler_2d_backward(gout, img, grid.reshape(1, n, 1, 2), 0, 1, False,
                                                         [need_img, need_g])
    gg = None
    if need_g:
        fx, fy, fz = factors
        gxy = ggrid.view(grid.shape).sum(-2)                   # the two slices' x and y derivatives
        gg = torch.stack([gxy[..., 0] * fx, gxy[..., 1] * fy, gphi * diff * fz], -1)
    return (gimg if need_img else None), gg


class _StackedDecode(torch.autograd.Function):
    """The decoded volumes ``mean + codes @ basis`` (B x V) written into a zeroed stack of ``numel``
    values (the padding rows of :func:`stack_rows`), in one addmm; gradient on the codes only. The
    BLAS gives each row the same bits for any B >= 2 but takes another path for one row (a
    matrix-vector product, rounding differently): a lone hypothesis is computed as a pair (both ways)."""

    @staticmethod
    def forward(ctx, codes, mean, basis, numel):
        B, V = codes.shape[0], mean.shape[1]
        out = codes.new_empty(numel)
        if B == 1:
            out[:V] = torch.addmm(mean, codes.repeat(2, 1), basis)[0]
        else:
            torch.addmm(mean, codes, basis, out=out[:B * V].view(B, V))
        out[B * V:].zero_()
        ctx.save_for_backward(basis)
        ctx.bv = B, V
        return out

    @staticmethod
    def backward(ctx, grad):
        basis, = ctx.saved_tensors
        B, V = ctx.bv
        g = grad[:B * V].view(B, V)
        # basis (d x V) @ g^T: each hypothesis' column the same bits for any B (g @ basis^T is not: the
        # BLAS blocks the long V axis differently from 16 rows on)
        return basis.mm((g.repeat(2, 1) if B == 1 else g).t()).t()[:B], None, None, None


def _place(g: torch.Tensor, hyp: torch.Tensor, shape: tuple, n_rows: int, grad: bool = False):
    """:meth:`SdfModel.place` without gradient, and with ``grad`` the row's d row / d gy."""
    nz, ny, nx = shape
    gx, gy, gz = g.detach().unbind(-1)
    row, fy = _stack_row(gy, hyp, ny, n_rows, grad)
    return torch.stack([gx * ((nx - 1) / nx), gz * ((nz - 1) / nz), row], -1), fy


class _Place(torch.autograd.Function):
    """:meth:`SdfModel.place` as one graph node (its row derivative by hand, see :func:`_stack_row`)."""

    @staticmethod
    def forward(ctx, g, hyp, shape, n_rows):
        grid, fy = _place(g, hyp, shape, n_rows, True)
        ctx.save_for_backward(fy)
        ctx.scales = (shape[2] - 1) / shape[2], (shape[0] - 1) / shape[0]
        return grid

    @staticmethod
    def backward(ctx, grad):
        fy, = ctx.saved_tensors
        gx, gz, gr = grad.unbind(-1)
        return torch.stack([gx * ctx.scales[0], gr * fy, gz * ctx.scales[1]], -1), None, None, None


class SdfModel(torch.nn.Module):
    """Torch side of a prior: batched SDF queries and a linear size model ``(l, w, h) ~ [1, s]``."""

    def __init__(self, prior, device='cpu', mode: str = 'decode', downsample: int = 1):
        super().__init__()
        pa = prior_arrays(prior)
        self.arrays = pa
        self.mode = mode
        self.d = int(pa.basis.shape[0])
        vol = torch.as_tensor(np.concatenate([pa.mean[None], pa.basis], 0), dtype=torch.float32)
        if downsample > 1:
            # coarser grid with nodes still on the box faces (align_corners): cheaper decode/backward
            size = [(n - 1) // downsample + 1 for n in vol.shape[1:]]
            vol = F.interpolate(vol[None], size=size, mode='trilinear', align_corners=True)[0]
        self.vol = vol.contiguous().to(device)                  # (1+d, nz, ny, nx)
        self.shape = tuple(self.vol.shape[1:])
        # the same channels in the stack's layout (grid row y, then the z x x plane): see stack_rows
        self.vol_rows = self.vol.permute(0, 2, 1, 3).reshape(1 + self.d, -1).contiguous()
        self.extent = torch.as_tensor(pa.extent, dtype=torch.float32, device=device)
        self.stdev = torch.as_tensor(pa.stdev, dtype=torch.float32, device=device)
        # least squares sizes ~ [1, codes]: differentiable size (and bottom offset -h/2) of any code
        A = np.concatenate([np.ones((len(pa.codes), 1)), pa.codes], 1)
        coef, *_ = np.linalg.lstsq(A, pa.sizes, rcond=None)
        self.size_coef = torch.as_tensor(coef, dtype=torch.float32, device=device)   # (1+d) x 3
        self.mean_size = pa.sizes.mean(0)
        self.device = torch.device(device)
        self._init_bottom(pa, device)

    def _init_bottom(self, pa: PriorArrays, device, slab_m: float = 0.9, margin_m: float = 0.12):
        """Bottom slab of the full-resolution prior for :meth:`bottom_heights`: the lowest surface is
        where the car meets the ground and must be read at the resolution the label's mesh and box
        come from (thin tyre contacts vanish on the coarse fitting grid, and near the mean code the
        linear size regression puts the bottom ~8 cm too low). Only the columns that come within
        ``margin_m`` of the lowest one for some code (the prior's own, random ones, the mean) are
        kept: the search over them runs every fit step."""
        nz, ny, nx = pa.mean.shape
        xs, ys, zs = grid_axes((nx, ny, nz), pa.extent)
        k = int(np.searchsorted(zs, zs[0] + slab_m)) + 1
        vol = torch.as_tensor(np.concatenate([pa.mean[None, :k], pa.basis[:, :k]], 0)
                              .reshape(1 + self.d, k, ny * nx), dtype=torch.float32)
        z = torch.as_tensor(zs[:k], dtype=torch.float32)
        rng = np.random.default_rng(0)
        probe = np.concatenate([np.zeros((1, self.d)), np.asarray(pa.codes, float),
                                rng.standard_normal((128, self.d)) * np.asarray(pa.stdev, float)])
        vol_ck = vol.transpose(1, 2)
        zc, valid, _ = _lowest_crossings(vol_ck, z, torch.as_tensor(probe, dtype=torch.float32))
        zc = torch.where(valid, zc, torch.full_like(zc, np.inf))
        keep = (zc <= zc.min(1, keepdim=True).values + margin_m).any(0)
        if not keep.any():                       # an empty prior slab: keep everything (never lowest)
            keep[:] = True
        yy, xx = np.meshgrid(ys, xs, indexing='ij')
        xy = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], -1), dtype=torch.float32)
        self.bot_vol = vol[:, :, keep].contiguous().to(device)                 # 1+d, k, C
        self.bot_vol_ck = self.bot_vol.transpose(1, 2).contiguous()            # 1+d, C, k (the search)
        self.bot_z = z.to(device)
        self.bot_xy = xy[keep].to(device)                                      # C, 2
        self._bot_cols = None                                                  # bottom_columns' cache

    def bottom_heights(self, codes: torch.Tensor, cols: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Lowest surface crossing of every kept vertical grid column, without gradient: heights (B, C)
        in the canonical frame, validity (B, C) (the column meets the shape in the slab) and the first
        inside node (B, C). Column c stands at canonical (x, y) = ``self.bot_xy[c]``. ``cols`` (K,):
        only those columns (the results are then (B, K))."""
        vol, _ = self.bottom_columns(cols)
        return _lowest_crossings(vol, self.bot_z, codes)

    def bottom_columns(self, cols: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The slab (1+d, K, k) and the canonical (x, y) (K, 2) of columns ``cols`` (K,) (None: all of
        them; cols (B, K): each hypothesis' own, a (B, 1+d, K, k) slab and (B, K, 2)), kept for the next
        call with the same ``cols`` tensor (the fit searches one set for ``fit.ground_refresh`` steps;
        tensors passed here must not change in place)."""
        if cols is None:
            return self.bot_vol_ck, self.bot_xy
        kept = self._bot_cols          # one read: another thread's fit may replace it meanwhile
        if kept is None or kept[0] is not cols:
            slab = self.bot_vol_ck[:, cols]
            kept = self._bot_cols = (cols, slab if cols.dim() == 1 else slab.transpose(0, 1).contiguous(),
                                     self.bot_xy[cols])
        return kept[1:]

    def size_of(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, 3) predicted (l, w, h) of shape codes (B, d), by the linear regression over the prior."""
        return self.size_coef[0] + codes @ self.size_coef[1:]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) SDF volumes of codes (B, d), grid_sample layout (one addmm: the same values as the
        product plus the mean, ~10x faster on CPU with the short code axis)."""
        return torch.addmm(self.vol[0].reshape(1, -1), codes, self.vol[1:].reshape(self.d, -1)).view(
            (-1,) + self.shape)

    def volumes(self, codes: torch.Tensor):
        """Per-iteration lookup state: the stacked decoded volumes (decode mode; (1, 1, n, nz, nx), stack
        row b ny + y of hypothesis b, n = :func:`stack_rows`) or None (shared)."""
        if self.mode == 'shared':
            return None
        nz, ny, nx = self.shape
        n = stack_rows(codes.shape[0], ny)
        flat = _StackedDecode.apply(codes, self.vol_rows[:1], self.vol_rows[1:], n * nz * nx)
        return flat.view(1, 1, n, nz, nx)

    def place(self, g: torch.Tensor, hyp: torch.Tensor, n_rows: int) -> torch.Tensor:
        """The 3D sampler's coordinates (align_corners=False) of normalized canonical points g (..., 3) in
        [-1, 1] of hypotheses ``hyp`` (broadcast to g[..., 0]) in a stack of ``n_rows`` rows: x and z in
        the (z, x) plane, the stack row exact (:func:`_stack_row`)."""
        if g.requires_grad and torch.is_grad_enabled():
            return _Place.apply(g, hyp, self.shape, n_rows)
        return _place(g, hyp, self.shape, n_rows)[0]

    def sample(self, g: torch.Tensor, hyp_rows: torch.Tensor, codes: torch.Tensor,
               vols=None) -> torch.Tensor:
        """SDF at normalized canonical coordinates g (R, T, 3) (border padding beyond [-1, 1]) whose rows
        belong to hypotheses hyp_rows (R,)."""
        R, T, _ = g.shape
        if self.mode == 'shared':
            return self._channels(g, hyp_rows, codes)
        if vols is None:
            vols = self.volumes(codes)
        gg = self.place(g, hyp_rows.view(R, 1), vols.shape[2])
        return F.grid_sample(vols, gg.view(1, R, T, 1, 3), mode='bilinear', padding_mode='border',
                             align_corners=False).view(R, T)

    def query(self, pts: torch.Tensor, hyp: torch.Tensor, codes: torch.Tensor,
              scales: torch.Tensor | None = None) -> torch.Tensor:
        """SDF of metric canonical points ``pts`` (R, T, 3); row r belongs to hypothesis ``hyp[r]``;
        codes (B, d); optional per-axis scales (B, 3) stretch the shape (phi is then multiplied by the
        smallest scale, a conservative distance); read by :meth:`_channels` (no stacked volumes).
        Outside the grid box the distance to the box is added to the border value. Returns (R, T)."""
        # per hypothesis first, then per row: one gather each instead of per-row products
        half = self.extent if scales is None else (self.extent * scales)[hyp][:, None, :]
        g = pts / half
        gc = g.clamp(-1.0, 1.0)
        outside = torch.linalg.norm((g - gc) * half, dim=-1)
        phi = self._channels(gc, hyp, codes) + outside
        if scales is not None:
            phi = phi * scales.min(-1).values[hyp][:, None]
        return phi

    def _channels(self, g: torch.Tensor, hyp: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """SDF at normalized canonical points g (R, T, 3) in [-1, 1] of hypotheses hyp (R,): the prior's
        1+d channels sampled at each point and combined with its code, in both modes. The points' own
        coordinates, the shared prior and a per-point sum: a hypothesis' values and gradients do not
        depend on the others (no stack), and for the few LiDAR and free-space points it is cheaper
        than the stacked volumes (whose gradient is a zeroed stack-sized tensor per lookup)."""
        R, T, _ = g.shape
        f = F.grid_sample(self.vol[None], g.view(1, R, T, 1, 3), mode='bilinear', padding_mode='border',
                          align_corners=True).view(1 + self.d, R, T)
        c = codes[hyp].t()[:, :, None]                                        # d, R, 1
        return f[0] + (f[1:] * c).sum(0)

    def decode_full(self, code: np.ndarray) -> np.ndarray:
        """One volume at the prior's full resolution, [iz, iy, ix] (for meshing and tight extents)."""
        pa = self.arrays
        c = np.asarray(code, np.float32)
        return pa.mean + np.tensordot(c, pa.basis, axes=(0, 0))
