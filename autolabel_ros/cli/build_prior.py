"""autolabel-build-prior: PCA shape prior (.npz) from a folder of car models or procedural cars.

  autolabel-build-prior --models DIR --out prior.npz [--components 5] [--resolution 96,40,38]
  autolabel-build-prior --procedural 150 --out prior.npz
"""
from __future__ import annotations

import argparse
import sys

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
    p = argparse.ArgumentParser(prog='autolabel-build-prior', description=__doc__.split('\n')[0])
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
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    progress = not args.no_progress
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


if __name__ == '__main__':
    sys.exit(main())
