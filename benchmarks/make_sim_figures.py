"""Figures of the procedural cars and of one simulated frame.

    python benchmarks/make_sim_figures.py [--out benchmarks/figures] [--only cars|frame]

- ``cars.png``: 12 random procedural cars (seeds 0..11 of the prior range), side / top / front
  orthographic views, shaded by part (paint, glass, tyres, rims, lights, trim).
- ``sim_frame.png``: one simulator frame: the camera image with projected 3D ground-truth boxes,
  and a bird's-eye view of the LiDAR scan with the boxes.
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from autolabel_ros.shape.cars import PART_NAMES, face_parts, make_car_mesh, random_car_params  # noqa: E402

_PART_RGB = {'paint': (0.75, 0.2, 0.15), 'glass': (0.12, 0.15, 0.2), 'tyre': (0.08, 0.08, 0.08),
             'rim': (0.7, 0.7, 0.72), 'headlight': (0.95, 0.95, 0.85), 'taillight': (0.8, 0.0, 0.0),
             'trim': (0.18, 0.18, 0.18)}


def _draw_ortho(ax, mesh, view: str, paint):
    """Painter's-algorithm orthographic drawing of a mesh: view 'side' (from -y... seen from the
    left, +y), 'top' (from +z) or 'front' (from +x)."""
    axes = {'side': (0, 2, 1), 'top': (0, 1, 2), 'front': (1, 2, 0)}[view]
    u, v, w = axes
    tri = mesh.vertices[mesh.faces]
    nrm = mesh.face_normals
    # look direction: towards -w (camera on the +w side)
    facing = nrm[:, w] > 0
    if view == 'front':
        tri = tri.copy()
        tri[..., 1] *= -1   # seen from the front, +y (left of the car) is on the image right
    depth = tri[..., w].mean(axis=1)
    order = np.argsort(depth)
    order = order[facing[order]]
    light = np.array([0.3, 0.4, 0.85])
    light /= np.linalg.norm(light)
    shade = 0.35 + 0.65 * np.clip(np.abs(nrm @ light), 0, 1)
    parts = face_parts(mesh)
    base = np.array([paint if n == 'paint' else _PART_RGB[n] for n in PART_NAMES])[parts]
    cols = np.clip(base * shade[:, None], 0, 1)
    polys = tri[order][..., [u, v]]
    ax.add_collection(PolyCollection(polys, facecolors=cols[order], edgecolors=cols[order], linewidths=0.3))
    ax.set_aspect('equal')
    ax.set_xlim(-3.0, 3.0) if view != 'front' else ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.2, 1.2) if view != 'top' else ax.set_ylim(-1.2, 1.2)
    ax.set_xticks([])
    ax.set_yticks([])


def make_cars_figure(path: str, seeds=range(12)):
    rng = np.random.default_rng(0)
    fig, axs = plt.subplots(12, 3, figsize=(11, 22), gridspec_kw=dict(width_ratios=[2.5, 2.5, 1.1]))
    for row, s in enumerate(seeds):
        mesh = make_car_mesh(random_car_params(s))
        p = mesh.metadata['params']
        paint = tuple(rng.uniform(0.15, 0.9, 3))
        for col, view in enumerate(('side', 'top', 'front')):
            _draw_ortho(axs[row, col], mesh, view, paint)
        l, w, h = mesh.extents
        axs[row, 0].set_ylabel(f"seed {s}\n{p['body_type']}\n{l:.2f}x{w:.2f}x{h:.2f} m", fontsize=8)
    for col, view in enumerate(('side (front to the right)', 'top', 'front')):
        axs[0, col].set_title(view, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


_OCC_COLORS = {0: (0.1, 0.9, 0.2), 1: (1.0, 0.85, 0.0), 2: (1.0, 0.45, 0.0), 3: (0.9, 0.1, 0.1)}


def make_frame_figure(path: str, seed: int = 2):
    """Camera image with the projected 3D boxes (colour = KITTI occlusion level, thin white = 2D
    box) and the LiDAR bird's-eye view with the boxes."""
    from autolabel_ros.core.geometry import BOX_EDGES, bev_corners, box_corners, project, transform_points
    from autolabel_ros.sim import simulate_frame

    sf = simulate_frame(seed)
    f = sf.frame
    fig = plt.figure(figsize=(14, 9.6))
    ax = fig.add_axes([0.01, 0.56, 0.98, 0.42])
    ax.imshow(f.image)
    for lab in sf.gt:
        col = _OCC_COLORS[lab.occlusion]
        x1, y1, x2, y2 = lab.box2d
        ax.plot([x1, x2, x2, x1, x1], [y1, y1, y2, y2, y1], color='w', lw=0.6, alpha=0.8)
        cam = transform_points(f.T_cam_lidar, box_corners(lab.center, lab.size, lab.yaw))
        if np.any(cam[:, 2] < 0.5):
            continue
        uv, _ = project(f.K, cam)
        for i, j in BOX_EDGES:
            ax.plot(uv[[i, j], 0], uv[[i, j], 1], color=col, lw=1.3)
        front = uv[[0, 3, 4, 7]].mean(axis=0)   # the +x face: heading marker
        ax.plot(*front, marker='o', ms=3, color=col)
        ax.text(x1, y1 - 3, f'{lab.id} t{lab.truncation:.1f} o{lab.occlusion}', color=col, fontsize=7)
    ax.set_xlim(0, f.width)
    ax.set_ylim(f.height, 0)
    ax.set_axis_off()
    ax.set_title(f'seed {seed}: camera {f.width}x{f.height} with projected 3D GT boxes '
                 '(green/yellow/orange/red = occlusion 0/1/2/3, white = amodal 2D box)', fontsize=9)
    bx = fig.add_axes([0.05, 0.03, 0.9, 0.5])
    p = f.points
    sel = (p[:, 0] > -10) & (p[:, 0] < 70) & (np.abs(p[:, 1]) < 25)
    car = sel & (sf.point_instance > 0)
    # the road plane z = a x + b y + c by iterated least squares (for the colouring only)
    A = np.column_stack([p[:, 0], p[:, 1], np.ones(len(p))])
    coef = np.array([0.0, 0.0, np.percentile(p[:, 2], 20)])
    for _ in range(3):
        inl = np.abs(A @ coef - p[:, 2]) < 0.3
        coef = np.linalg.lstsq(A[inl], p[inl, 2], rcond=None)[0]
    above = p[:, 2] - A @ coef
    low = sel & ~car & (above < 0.25)
    high = sel & ~car & ~low
    bx.scatter(p[low, 0], p[low, 1], s=0.2, color=(0.75, 0.75, 0.75), lw=0)
    bx.scatter(p[high, 0], p[high, 1], s=0.6, c=above[high], cmap='viridis', vmin=0.0, vmax=5.0, lw=0)
    bx.scatter(p[car, 0], p[car, 1], s=1.2, color=(0.15, 0.25, 0.9), lw=0)
    for lab in sf.gt:
        c = bev_corners(lab.center, lab.size, lab.yaw)
        c = np.vstack([c, c[:1]])
        bx.plot(c[:, 0], c[:, 1], color=_OCC_COLORS[lab.occlusion], lw=1.2)
        nose = lab.center[:2] + 0.5 * lab.size[0] * np.array([np.cos(lab.yaw), np.sin(lab.yaw)])
        bx.plot([lab.center[0], nose[0]], [lab.center[1], nose[1]], color=_OCC_COLORS[lab.occlusion], lw=1.0)
        bx.text(c[:, 0].max() + 0.3, c[:, 1].max(), str(lab.id), fontsize=7)
    # camera frustum
    W, K = f.width, f.K
    for u in (0, W):
        ang = np.arctan2(-(u - K[0, 2]), K[0, 0])
        bx.plot([0, 70 * np.cos(ang)], [0, 70 * np.sin(ang)], 'k--', lw=0.6)
    bx.set_xlim(-10, 70)
    bx.set_ylim(-25, 25)
    bx.set_aspect('equal')
    bx.set_xlabel('x forward (m)')
    bx.set_ylabel('y left (m)')
    bx.set_title(f"LiDAR bird's-eye view ({len(p)} points; blue = car returns, grey = road, others "
                 "coloured by height), GT boxes with heading; dashed = camera field of view", fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'figures'))
    ap.add_argument('--only', choices=('cars', 'frame'), default=None)
    ap.add_argument('--seed', type=int, default=2, help='scene seed of the frame figure (default 2)')
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.only in (None, 'cars'):
        make_cars_figure(os.path.join(args.out, 'cars.png'))
    if args.only in (None, 'frame'):
        make_frame_figure(os.path.join(args.out, 'sim_frame.png'), seed=args.seed)


if __name__ == '__main__':
    main()
