"""Figure of a shape prior: mean shape and +-2 sigma along the first 3 PCA components (meshed).

  python benchmarks/make_prior_figure.py [--prior default|PATH] [--out benchmarks/figures/prior_modes.png]
"""
from __future__ import annotations

import argparse

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from autolabel_ros.shape.mesh import sdf_to_mesh, tight_extent  # noqa: E402
from autolabel_ros.shape.prior import load_prior  # noqa: E402



def draw(ax, mesh, view: str):
    """Flat-shaded orthographic view: 'side' looks along -y (x right, z up), 'top' along -z."""
    v, f = mesh.vertices, mesh.faces
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    axes, depth_axis, sign = ((0, 2), 1, 1.0) if view == 'side' else ((0, 1), 2, -1.0)
    facing = sign * n[:, depth_axis] < 0 if view == 'side' else n[:, 2] > 0
    keep = np.flatnonzero(facing)
    order = keep[np.argsort(sign * tri[keep, :, depth_axis].mean(axis=1))[::-1]] if view == 'side' else \
        keep[np.argsort(tri[keep, :, 2].mean(axis=1))]
    light = np.array([0.3, -0.5, 0.8]) if view == 'side' else np.array([0.3, 0.3, 0.9])
    shade = np.clip(n[order] @ (light / np.linalg.norm(light)), 0, 1)
    colors = plt.cm.Blues(0.3 + 0.6 * shade)
    ax.add_collection(PolyCollection(tri[order][:, :, axes], facecolors=colors, edgecolors=colors,
                                     linewidths=0.3))
    ax.set_xlim(-3.0, 3.0)
    ax.set_ylim(-1.2, 1.2)
    ax.set_aspect('equal')
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--prior', default='default')
    ap.add_argument('--out', default='benchmarks/figures/prior_modes.png')
    ap.add_argument('--title', default='')
    args = ap.parse_args(argv)
    prior = load_prior(args.prior)
    n_modes = min(3, prior.n_components)
    fig, axs = plt.subplots(n_modes, 6, figsize=(19, 2.3 * n_modes + 0.6))
    axs = np.atleast_2d(axs)
    for k in range(n_modes):
        for j, s in enumerate((-2.0, 0.0, 2.0)):
            code = np.zeros(prior.n_components)
            code[k] = s * prior.stdev[k]
            mesh = sdf_to_mesh(prior.decode(code), prior)
            _, size = tight_extent(mesh)
            label = 'mean' if s == 0 else f'PC{k + 1} {s:+.0f} sigma'
            for v, view in enumerate(('side', 'top')):
                ax = axs[k, 2 * j + v]
                draw(ax, mesh, view)
                ax.set_title(f'{label} ({view}) {size[0]:.2f}x{size[1]:.2f}x{size[2]:.2f} m', fontsize=8)
    ev = prior.meta.get('explained_variance_ratio', [])
    fig.suptitle(args.title or f'{prior.meta.get("source", "prior")}: {prior.meta.get("n_models")} models, '
                 f'explained variance of PC1-3 {", ".join(f"{e:.2f}" for e in ev[:3])}  '
                 f'(side: front at right; top: front at right, left side up)', fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
