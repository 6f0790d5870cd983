"""PCA shape prior over truncated signed distance grids of car models (SLF's "Lift" step).

Design
------
- **Metric, not normalized.** Every model is sampled in its real size in the canonical car frame
  (x forward, y left, z up, origin at the model's 3D box centre, metres; see
  :mod:`autolabel_ros.shape.mesh_io`). Size is therefore part of the shape space: the first PCA
  component is mostly overall size. Per-model box sizes are kept in ``sizes`` as well.
- **Grid.** A fixed axis-aligned grid over the canonical box ``[-extent, +extent]`` (half-sizes
  in metres, default (3.2, 1.35, 1.25): room for a 5.6 m x 2.4 m x 2.1 m car plus margin) with
  ``grid_res = (nx, ny, nz)`` samples per axis (default (96, 40, 38): ~6.8 cm spacing, 146k
  samples), samples ON the box faces (``linspace(-e, e, n)``), i.e. align_corners=True semantics.
- **Array order.** All grids (``mean``, each ``basis[k]``) are stored as ``[iz, iy, ix]`` =
  (D, H, W) = (nz, ny, nx): exactly the layout ``torch.nn.functional.grid_sample`` expects for a
  5-D input, whose sampling grid's last dimension is ordered (x -> W, y -> H, z -> D). So a
  canonical point ``p = (x, y, z)`` in metres is looked up with the normalized coordinate
  ``g = p / extent`` (component-wise, no permutation) and ``align_corners=True``; use
  ``padding_mode='border'`` so points outside the box read ~ +truncation (outside the car).
- **SDF.** Metric signed distance, ``phi > 0`` outside, ``phi < 0`` inside, truncated to
  ``[-T, T]`` (default T = 0.4 m, ~6 voxels) before PCA, so the linear model spends its
  components on the surface region instead of far-field distances.
- **Inside/outside for non-watertight CAD models** (ApolloCar3D: none of the 79 is watertight,
  most lack an underbody and have internal panels). Measured on slices of several models:
  a flood fill of free space leaks through the open underbody into the cabin (the whole car
  reads "outside"), while ray parity with a majority vote over ``nsamples`` random rays
  (open3d ``RaycastingScene``) gets the body right and only errs on thin sheets of voxels along
  internal faces and on specks near the wheels. So: majority-vote parity, then clean-up (drop
  tiny inside specks, fill enclosed outside pockets), magnitude = exact distance to the
  triangles, except deep inside where the distance to internal panels is replaced by the
  distance to the cleaned outside region. Watertight meshes (the procedural cars) skip the
  clean-up: parity is exact there.
- **PCA.** ``sdf ~= mean + sum_k c_k basis[k]``, ``basis`` rows orthonormal (over the flattened
  grid), ``c_k ~ N(0, stdev_k^2)`` over the training models; ``codes`` (M x d) are the training
  models' coefficients. A fitter usually optimizes whitened codes ``z = c / stdev`` (see
  ``torch_tensors(whitened=True)``).

Measured (``benchmarks/prior_quality.py``; least-squares codes of models NOT used to build the prior;
SDF error = mean |phi error| within 0.1 m of the surface; IoU of the grid occupancies):
- default prior (150 procedural cars), 50 held-out procedural cars: d=1 4.9 cm / 0.83, d=3 3.4 cm / 0.89,
  d=5 2.6 cm / 0.91, d=8 1.9 cm / 0.93; box of the meshed reconstruction at d=5: mean |l,w,h| error
  4.1 cm (IoU 0.95). Float16 storage of the basis changes none of these digits.
- ApolloCar3D 5-fold: d=5 2.4 cm / 0.92. Apollo models coded by the default prior: d=5 4.6 cm / 0.86.
  Apollo grids lose the side mirrors (thinner than a voxel; the clean-up's opening removes them):
  their boxes are body boxes, 10.7 cm narrower than the CAD bounding box on average.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import trimesh

DEFAULT_RESOLUTION = (96, 40, 38)        # (nx, ny, nz)
DEFAULT_EXTENT = (3.2, 1.35, 1.25)       # half-sizes (x, y, z) of the canonical box, metres
DEFAULT_TRUNCATION = 0.4                 # metres
DEFAULT_COMPONENTS = 5
FORMAT_VERSION = 1


class PriorError(ValueError):
    """A prior file is missing, malformed or inconsistent (the message names it)."""


def grid_axes(resolution: Sequence[int], extent: Sequence[float]) -> tuple[np.ndarray, ...]:
    """Sample coordinates (xs, ys, zs) along each canonical axis (metres)."""
    return tuple(np.linspace(-float(e), float(e), int(n)) for n, e in zip(resolution, extent))


def grid_points(resolution: Sequence[int] = DEFAULT_RESOLUTION,
                extent: Sequence[float] = DEFAULT_EXTENT) -> np.ndarray:
    """(nz, ny, nx, 3) canonical (x, y, z) coordinates of every grid sample."""
    xs, ys, zs = grid_axes(resolution, extent)
    zz, yy, xx = np.meshgrid(zs, ys, xs, indexing='ij')
    return np.stack([xx, yy, zz], axis=-1)


def grid_spacing(resolution: Sequence[int], extent: Sequence[float]) -> np.ndarray:
    """Sample spacing (dx, dy, dz) in metres."""
    return 2.0 * np.asarray(extent, float) / (np.asarray(resolution, float) - 1.0)


def _scene(mesh: trimesh.Trimesh):
    import open3d as o3d  # imported here: loading and using a prior needs no open3d
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.ascontiguousarray(mesh.faces, dtype=np.uint32)))
    return scene, o3d


def mesh_sdf(mesh: trimesh.Trimesh, resolution: Sequence[int] = DEFAULT_RESOLUTION,
             extent: Sequence[float] = DEFAULT_EXTENT, truncation: float | None = DEFAULT_TRUNCATION,
             nsamples: int = 11, watertight: bool | None = None, n_dirs: int = 48) -> np.ndarray:
    """Signed distance grid (nz, ny, nx) of a canonical-frame mesh, phi > 0 outside, metres.

    ``watertight`` None = ask trimesh. See the module docstring for the non-watertight handling.
    """
    from scipy import ndimage

    if nsamples % 2 == 0:
        raise ValueError(f'nsamples must be odd (majority vote), got {nsamples}')
    pts = grid_points(resolution, extent).astype(np.float32)
    scene, o3d = _scene(mesh)
    q = o3d.core.Tensor(pts)
    dist = scene.compute_distance(q).numpy().astype(np.float64)
    inside = scene.compute_occupancy(q, nsamples=nsamples).numpy() > 0.5
    if watertight is None:
        watertight = bool(mesh.is_watertight)
    spacing = grid_spacing(resolution, extent)
    if not watertight:
        inside = _clean_occupancy(inside, pts, scene, o3d, n_dirs)
        # deep inside, the nearest triangle may be an internal panel: use the distance to the
        # outside region instead (it is never smaller than the true distance minus one voxel diagonal)
        edt_in = ndimage.distance_transform_edt(inside, sampling=spacing[::-1])
        dist = np.where(inside, np.maximum(dist, edt_in - np.linalg.norm(spacing)), dist)
    phi = np.where(inside, -dist, dist)
    if truncation is not None:
        phi = np.clip(phi, -truncation, truncation)
    return phi.astype(np.float32)


def sphere_directions(n: int) -> np.ndarray:
    """n roughly uniform unit vectors (Fibonacci sphere), deterministic."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    a = np.pi * (1.0 + 5 ** 0.5) * i
    return np.stack([r * np.cos(a), r * np.sin(a), z], axis=1)


def escape_fraction(scene, o3d, pts: np.ndarray, n_dirs: int = 48) -> np.ndarray:
    """Share of n_dirs rays from each point that leave the model without hitting a triangle."""
    dirs = sphere_directions(n_dirs).astype(np.float32)
    flat = pts.reshape(-1, 3).astype(np.float32)
    free = np.zeros(len(flat), dtype=np.float32)
    for d in dirs:
        rays = np.concatenate([flat, np.broadcast_to(d, flat.shape)], axis=1)
        free += ~scene.test_occlusions(o3d.core.Tensor(np.ascontiguousarray(rays))).numpy()
    return (free / n_dirs).reshape(pts.shape[:-1])


def _clean_occupancy(inside, pts, scene, o3d, n_dirs: int) -> np.ndarray:
    """Repair ray-parity occupancy of a non-watertight model (see the module docstring)."""
    from scipy import ndimage
    esc = escape_fraction(scene, o3d, pts, n_dirs)
    # parity noise below / beside the body sees the open sky in most directions
    inside = inside & (esc < 0.45)
    # cut thin bridges to specks, then drop small components
    inside = ndimage.binary_opening(inside)
    labels, n = ndimage.label(inside)
    if n > 1:
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        inside = (counts >= max(8, 0.02 * counts.max()))[labels]
    # cabins reached only through open windows: enclosed space that barely sees out is inside
    # (points outside a car's skin see half the sky or more; 0.25 still keeps wheel arches open)
    low, _ = ndimage.label(esc < 0.25)
    touching = np.unique(low[ndimage.binary_dilation(inside) & (low > 0)])
    inside |= np.isin(low, touching)
    # sheets of "outside" voxels along internal panels, enclosed by the body
    return ndimage.binary_fill_holes(ndimage.binary_closing(inside))


@dataclass
class ShapePrior:
    """PCA shape prior. Grids are (nz, ny, nx) = (D, H, W); see the module docstring."""

    grid_res: tuple            # (nx, ny, nz) samples per axis
    extent: np.ndarray         # (3,) half-sizes of the canonical box along x, y, z, metres
    mean: np.ndarray           # (nz, ny, nx) float32, truncated SDF in metres
    basis: np.ndarray          # (d, nz, ny, nx) float32, rows orthonormal when flattened
    codes: np.ndarray          # (M, d) training models' coefficients (metres)
    sizes: np.ndarray          # (M, 3) training models' (l, w, h)
    stdev: np.ndarray          # (d,) standard deviation of each coefficient over the models
    truncation: float = DEFAULT_TRUNCATION
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.grid_res = tuple(int(n) for n in self.grid_res)
        self.extent = np.asarray(self.extent, dtype=np.float64).reshape(3)
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.basis = np.asarray(self.basis, dtype=np.float32)
        self.codes = np.asarray(self.codes, dtype=np.float32).reshape(-1, self.basis.shape[0])
        self.sizes = np.asarray(self.sizes, dtype=np.float32).reshape(-1, 3)
        self.stdev = np.asarray(self.stdev, dtype=np.float32).reshape(-1)
        shape = self.grid_shape
        if self.mean.shape != shape or self.basis.shape[1:] != shape:
            raise PriorError(f'prior grids must be (nz, ny, nx) = {shape}, got mean {self.mean.shape}, '
                             f'basis {self.basis.shape}')
        if len(self.stdev) != self.n_components:
            raise PriorError(f'stdev has {len(self.stdev)} entries for {self.n_components} components')

    # --- geometry -----------------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return int(self.basis.shape[0])

    @property
    def grid_shape(self) -> tuple:
        """(nz, ny, nx): array shape of one grid."""
        return tuple(reversed(self.grid_res))

    @property
    def spacing(self) -> np.ndarray:
        return grid_spacing(self.grid_res, self.extent)

    def grid_points(self) -> np.ndarray:
        """(nz, ny, nx, 3) canonical (x, y, z) of the samples."""
        return grid_points(self.grid_res, self.extent)

    # --- decoding -----------------------------------------------------------------------------
    def decode(self, codes=None) -> np.ndarray:
        """SDF grid(s) for coefficient vector(s): (d,) -> (nz, ny, nx); (B, d) -> (B, nz, ny, nx).
        None = the mean shape. Codes shorter than d are zero-padded."""
        if codes is None:
            return self.mean.copy()
        c = np.asarray(codes, dtype=np.float32)
        single = c.ndim == 1
        c = np.atleast_2d(c)
        if c.shape[1] > self.n_components:
            raise ValueError(f'codes have {c.shape[1]} entries, the prior has {self.n_components}')
        flat = c @ self.basis[:c.shape[1]].reshape(c.shape[1], -1)
        out = self.mean[None] + flat.reshape((len(c),) + self.grid_shape)
        return out[0] if single else out

    def encode(self, sdf_grid: np.ndarray, n: int | None = None) -> np.ndarray:
        """Least-squares coefficients (projection onto the orthonormal basis) of a truncated grid."""
        n = self.n_components if n is None else n
        diff = (np.asarray(sdf_grid, np.float32) - self.mean).reshape(-1)
        return self.basis[:n].reshape(n, -1) @ diff

    def sample(self, points: np.ndarray, codes=None) -> np.ndarray:
        """Trilinear SDF at N x 3 canonical points (clamped at the grid border, like the fitter)."""
        from scipy import ndimage
        grid = self.decode(codes)
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        idx = (p + self.extent) / self.spacing                  # fractional (ix, iy, iz)
        return ndimage.map_coordinates(grid, idx[:, ::-1].T, order=1, mode='nearest')

    def torch_tensors(self, device='cpu', dtype=None, whitened: bool = False):
        """(1 + d, nz, ny, nx) tensor [mean, basis_0, ..., basis_{d-1}] for grid_sample.

        ``whitened`` scales basis k by stdev k, so a code z ~ N(0, I) gives mean + sum z_k basis_k.
        Lookup of canonical points p (N x 3, metres): ``F.grid_sample(T[None], (p / extent)
        .view(1, 1, 1, N, 3), align_corners=True, padding_mode='border')`` -> (1, 1 + d, 1, 1, N).
        """
        import torch
        basis = self.basis * self.stdev[:, None, None, None] if whitened else self.basis
        arr = np.concatenate([self.mean[None], basis], axis=0)
        return torch.as_tensor(arr, dtype=dtype or torch.float32, device=device)

    def torch_extent(self, device='cpu', dtype=None):
        """extent as a (3,) tensor (x, y, z): divide canonical points by it to get grid coords."""
        import torch
        return torch.as_tensor(self.extent, dtype=dtype or torch.float32, device=device)

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path, basis_dtype=np.float16) -> None:
        """Write a compressed ``.npz`` (basis as float16 by default: relative error ~1e-3)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, format_version=FORMAT_VERSION)
        with open(path, 'wb') as f:
            np.savez_compressed(
                f, grid_res=np.asarray(self.grid_res, np.int32), extent=self.extent,
                mean=self.mean.astype(np.float32), basis=self.basis.astype(basis_dtype),
                codes=self.codes, sizes=self.sizes, stdev=self.stdev,
                truncation=np.float64(self.truncation), meta=np.asarray(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | Path) -> 'ShapePrior':
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(grid_res=tuple(z['grid_res']), extent=z['extent'], mean=z['mean'],
                           basis=z['basis'], codes=z['codes'], sizes=z['sizes'], stdev=z['stdev'],
                           truncation=float(z['truncation']), meta=json.loads(str(z['meta'])))
        except FileNotFoundError as exc:
            raise PriorError(f'{path}: prior file not found') from exc
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, PriorError):
                raise PriorError(f'{path}: {exc}') from exc
            raise PriorError(f'{path}: not a shape prior .npz ({exc})') from exc


def load_default_prior() -> ShapePrior:
    """The prior shipped with the package (built from its own procedural cars, seeds 0..)."""
    ref = resources.files('autolabel_ros') / 'data' / 'default_prior.npz'
    with resources.as_file(ref) as p:
        return ShapePrior.load(p)


def load_prior(path: str | Path | None = None) -> ShapePrior:
    """``path`` if given (and not 'default'), else the default prior."""
    if path in (None, '', 'default'):
        return load_default_prior()
    return ShapePrior.load(Path(path).expanduser())


def _as_trimesh(m) -> trimesh.Trimesh:
    return m.mesh if hasattr(m, 'mesh') and isinstance(m.mesh, trimesh.Trimesh) else m


def compute_sdfs(meshes: Iterable, resolution=DEFAULT_RESOLUTION, extent=DEFAULT_EXTENT,
                 truncation: float = DEFAULT_TRUNCATION, progress: bool = False, nsamples: int = 11):
    """Truncated SDF grids (M, nz, ny, nx) and box sizes (M, 3) of canonical-frame meshes."""
    meshes = [_as_trimesh(m) for m in meshes]
    it = meshes
    if progress:
        from tqdm import tqdm
        it = tqdm(meshes, desc='sdf grids', unit='model')
    sdfs, sizes = [], []
    for m in it:
        lo, hi = m.bounds
        if np.any(hi - lo > 2 * np.asarray(extent)):
            raise ValueError(f'model of size {np.round(hi - lo, 2)} m does not fit the prior box '
                             f'{np.round(2 * np.asarray(extent), 2)} m')
        sdfs.append(mesh_sdf(m, resolution, extent, truncation, nsamples=nsamples))
        sizes.append(hi - lo)
    return np.stack(sdfs), np.asarray(sizes)


def pca_prior(sdfs: np.ndarray, sizes: np.ndarray, n_components: int, resolution, extent,
              truncation: float, meta: dict | None = None) -> ShapePrior:
    """PCA of stacked SDF grids (M, nz, ny, nx) -> ShapePrior."""
    m = len(sdfs)
    if n_components < 1 or n_components > m - 1:
        raise ValueError(f'n_components must be in 1..{m - 1} for {m} models, got {n_components}')
    x = sdfs.reshape(m, -1).astype(np.float64)
    mean = x.mean(axis=0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    # fix each component's sign (SVD's is arbitrary): + means a bigger car (more negative SDF)
    signs = -np.sign(vt[:n_components].sum(axis=1))
    signs[signs == 0] = 1.0
    basis = vt[:n_components] * signs[:, None]
    codes = u[:, :n_components] * s[:n_components] * signs
    stdev = s[:n_components] / np.sqrt(max(m - 1, 1))
    explained = (s ** 2 / max(np.sum(s ** 2), 1e-12))[:n_components]
    meta = dict(meta or {}, n_models=m, explained_variance_ratio=[float(e) for e in explained],
                build_date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    shape = tuple(reversed([int(r) for r in resolution]))
    return ShapePrior(grid_res=tuple(resolution), extent=np.asarray(extent, float),
                      mean=mean.reshape(shape), basis=basis.reshape((n_components,) + shape),
                      codes=codes, sizes=sizes, stdev=stdev, truncation=truncation, meta=meta)


def build_prior(meshes: Iterable, resolution: Sequence[int] = DEFAULT_RESOLUTION, n_components: int = 5,
                truncation: float = DEFAULT_TRUNCATION, extent: Sequence[float] = DEFAULT_EXTENT,
                source: str = '', progress: bool = False, nsamples: int = 11) -> ShapePrior:
    """Build a PCA prior from canonical-frame meshes (trimesh or :class:`mesh_io.CarModel`)."""
    meshes = list(meshes)
    if len(meshes) < 2:
        raise ValueError(f'need at least 2 models to build a prior, got {len(meshes)}')
    sdfs, sizes = compute_sdfs(meshes, resolution, extent, truncation, progress, nsamples)
    return pca_prior(sdfs, sizes, n_components, resolution, extent, truncation,
                     meta=dict(source=source, sign_method=f'open3d ray parity, majority of {nsamples}'))
