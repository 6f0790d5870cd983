"""autolabel-build-prior: PCA shape prior (.npz) or DeepSDF shape space (.pt) from car models.

  autolabel-build-prior --models DIR --out prior.npz [--components 5] [--resolution 96,40,38]
  autolabel-build-prior --procedural 150 --out prior.npz
  autolabel-build-prior --kind deepsdf --procedural 100 --out deepsdf.pt [--steps 2500] [--minutes 12]
"""
from __future__ import annotations

import argparse
import sys

from autolabel_ros.cli.args import description, output_file_problem
from autolabel_ros.shape.prior import (DEFAULT_COMPONENTS, DEFAULT_EXTENT, DEFAULT_RESOLUTION,
                                       DEFAULT_TRUNCATION, PriorError, build_prior)


def _triple(kind, text: str):
    try:
        vals = [kind(v) for v in text.replace('x', ',').split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected three comma-separated numbers, got {text!r}') from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f'expected three positive numbers (x,y,z), got {text!r}')
    return tuple(vals)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='autolabel-build-prior', description=description(__doc__))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--models', metavar='DIR',
                     help='folder of car models (OBJ/PLY/STL/OFF/GLB in the canonical frame, '
                     'or ApolloCar3D JSON)')
    src.add_argument('--procedural', type=int, metavar='N',
                     help='use N procedural cars (autolabel_ros.shape.cars, seeds --seed-start..+N-1)')
    p.add_argument('--seed-start', type=int, default=0, help='first procedural seed (0..9999 are for priors)')
    p.add_argument('--size-scale', type=lambda t: _triple(float, t), default=None, metavar='L,W,H',
                   help='procedural cars: scale of the manufacturer size ranges (default: the '
                   'KITTI box convention, autolabel_ros.shape.cars.DEFAULT_SIZE_SCALE; 1,1,1 = '
                   'manufacturer sizes)')
    p.add_argument('--out', required=True, help='output .npz')
    p.add_argument('--components', type=int, default=DEFAULT_COMPONENTS, help='PCA components d (default 5)')
    p.add_argument('--resolution', type=lambda t: _triple(int, t), default=DEFAULT_RESOLUTION,
                   help='grid samples nx,ny,nz (default %s)' % ','.join(map(str, DEFAULT_RESOLUTION)))
    p.add_argument('--extent', type=lambda t: _triple(float, t), default=DEFAULT_EXTENT,
                   help='half-size of the canonical box x,y,z in metres (default %s)'
                   % ','.join(map(str, DEFAULT_EXTENT)))
    p.add_argument('--truncation', type=float, default=DEFAULT_TRUNCATION,
                   help='SDF truncation in metres (default %s)' % DEFAULT_TRUNCATION)
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--kind', choices=('pca', 'deepsdf'), default='pca',
                   help='pca: PCA prior .npz (default); deepsdf: auto-decoder MLP .pt (shape/deepsdf.py)')
    p.add_argument('--latent', type=int, default=3,
                   help='deepsdf: latent size on the unit sphere (default 3)')
    p.add_argument('--width', type=int, default=96, help='deepsdf: MLP width (default 96)')
    p.add_argument('--steps', type=int, default=2500, help='deepsdf: training steps (default 2500)')
    p.add_argument('--minutes', type=float, default=12.0, help='deepsdf: stop training after this wall time')
    p.add_argument('--threads', type=int, default=1, help='deepsdf: torch CPU threads (default 1)')
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    progress = not args.no_progress
    # a truncation <= 0 wrote an all-zero prior (explained variance 0.000) with exit 0
    for flag, v, ok, what in (('--truncation', args.truncation, args.truncation > 0, '> 0'),
                              ('--seed-start', args.seed_start, args.seed_start >= 0, '>= 0'),
                              ('--components', args.components, args.components >= 1, '>= 1')):
        if not ok:
            print(f'autolabel-build-prior: error: {flag} {v:g}: must be {what}', file=sys.stderr)
            return 2
    problem = output_file_problem(args.out)     # here, not after the meshes' SDFs (minutes)
    if problem:
        print(f'autolabel-build-prior: error: --out {args.out}: {problem}', file=sys.stderr)
        return 2
    from autolabel_ros.shape.mesh_io import MeshLoadError, load_collection
    try:
        if args.models:
            models = load_collection(args.models, progress=progress)
            meshes = [m.mesh for m in models]
            source = f'models from {args.models} ({len(models)} files)'
        else:
            if args.procedural < 2:
                raise ValueError(f'--procedural needs at least 2 cars, got {args.procedural}')
            from autolabel_ros.shape.cars import DEFAULT_SIZE_SCALE, car_collection
            seeds = range(args.seed_start, args.seed_start + args.procedural)
            scale = args.size_scale or DEFAULT_SIZE_SCALE
            meshes = car_collection(seeds, size_scale=scale)
            source = (f'procedural cars autolabel_ros.shape.cars seeds {seeds.start}..{seeds.stop - 1}, '
                      f'size scale {",".join(f"{v:g}" for v in scale)}')
        if args.kind == 'deepsdf':
            return _build_deepsdf(args, meshes, source, progress)
        prior = build_prior(meshes, resolution=args.resolution, n_components=args.components,
                            truncation=args.truncation, extent=args.extent, source=source, progress=progress)
        prior.save(args.out)
    except (MeshLoadError, PriorError, ValueError, OSError) as exc:
        print(f'autolabel-build-prior: error: {exc}', file=sys.stderr)
        return 2
    ev = prior.meta.get('explained_variance_ratio', [])
    print(f'wrote {args.out}: {prior.meta["n_models"]} models, d={prior.n_components}, grid '
          f'{"x".join(map(str, prior.grid_res))}, explained variance '
          f'{sum(ev):.3f} ({", ".join(f"{e:.3f}" for e in ev)})')
    return 0


def _build_deepsdf(args, meshes, source: str, progress: bool) -> int:
    import torch

    from autolabel_ros.shape.deepsdf import build_deepsdf
    from autolabel_ros.shape.prior import compute_sdfs
    if args.latent < 2:
        raise ValueError(f'--latent must be >= 2 (a point on a sphere needs 2), got {args.latent}')
    torch.set_num_threads(max(1, args.threads))
    sdfs, sizes = compute_sdfs(meshes, args.resolution, args.extent, args.truncation, progress)
    space = build_deepsdf(sdfs, sizes, args.resolution, args.extent, args.truncation, source=source,
                          latent=args.latent, width=args.width, steps=args.steps, minutes=args.minutes)
    space.save(args.out)
    m = space.prior.meta
    print(f'wrote {args.out}: {len(sdfs)} models, latent {args.latent} on the sphere, '
          f'{m["train_steps"]} steps, '
          f'L1 {m["final_l1_cm"]:.2f} cm, baked grid {"x".join(map(str, space.prior.grid_res))}')
    return 0


if __name__ == '__main__':
    from autolabel_ros.cli.entry import EXIT_INTERRUPTED
    from autolabel_ros.core.interrupts import run_quietly
    run_quietly(lambda: main, EXIT_INTERRUPTED)
