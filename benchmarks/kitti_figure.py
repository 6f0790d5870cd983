"""Figure of fitted real KITTI cars: image crop with the fitted mesh outline (green) and the SAM mask
outline (red), and a bird's-eye view with the LiDAR points, the fitted box (green, heading tick)
and the ground-truth box (white dashed). ``python benchmarks/kitti_figure.py [--out PNG]``."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from autolabel_ros.core.geometry import bev_corners, project, transform_points  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KITTI = ROOT.parent / 'shared' / 'data' / 'kitti_object' / 'training'


def mesh_mask(mesh, K, T, W, H):
    """Filled silhouette of a LiDAR-frame mesh in the image."""
    v = transform_points(T, mesh.vertices)
    uv, z = project(K, v)
    m = np.zeros((H, W), np.uint8)
    good = np.all(z[mesh.faces] > 0.3, axis=1)
    tri = np.round(uv[mesh.faces[good]] * 4).astype(np.int32)     # 2 bits of sub-pixel precision
    cv2.fillPoly(m, list(tri), 1, lineType=cv2.LINE_8, shift=2)
    return m


def draw(ax_img, ax_bev, frame, lab, gt, mask):
    W, H = frame.width, frame.height
    x1, y1, x2, y2 = lab.box2d
    pad = 0.25 * max(x2 - x1, y2 - y1)
    cx1, cy1 = int(max(0, x1 - pad)), int(max(0, y1 - pad))
    cx2, cy2 = int(min(W, x2 + pad)), int(min(H, y2 + pad))
    img = frame.image.copy()
    if mask is not None:
        cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, cs, -1, (255, 60, 60), 1)
    if lab.mesh is not None:
        mm = mesh_mask(lab.mesh, frame.K, frame.T_cam_lidar, W, H)
        cs, _ = cv2.findContours(mm, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, cs, -1, (40, 255, 40), 1)
    ax_img.imshow(img[cy1:cy2, cx1:cx2])
    ax_img.set_title(f'id {lab.id}  IoU(mask) {lab.metrics.get("mask_iou", 0):.2f}  '
                     f'{"accepted" if lab.accepted else "rejected"}', fontsize=8)
    ax_img.axis('off')
    c = lab.center
    pts = frame.xyz
    near = np.linalg.norm(pts[:, :2] - c[:2], axis=1) < 5
    ax_bev.scatter(pts[near, 1], pts[near, 0], s=1, c='0.4')
    for lb, col, ls in ((gt, 'k', '--'), (lab, 'g', '-')):
        if lb is None:
            continue
        bc = bev_corners(lb.center, lb.size, lb.yaw)
        bc = np.vstack([bc, bc[:1]])
        ax_bev.plot(bc[:, 1], bc[:, 0], color=col, ls=ls, lw=1.2)
        h = lb.center[:2] + 0.5 * lb.size[0] * np.array([np.cos(lb.yaw), np.sin(lb.yaw)])
        ax_bev.plot([lb.center[1], h[1]], [lb.center[0], h[0]], color=col, lw=1.2)
    ax_bev.set_xlim(c[1] + 4, c[1] - 4)       # y to the left, as seen from above looking forward
    ax_bev.set_ylim(c[0] - 4, c[0] + 4)
    ax_bev.set_aspect('equal')
    ax_bev.tick_params(labelsize=6)
    ax_bev.set_title('BEV: fit (green), GT (black dashed)', fontsize=8)


def make_figure(out: Path, config=None, cars=None, masks_cache=None):
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d
    from autolabel_ros.pipeline import Autolabeler

    ds = KittiObjectDataset(KITTI)
    al = Autolabeler(config)
    cars = cars or [('000003', 0), ('000008', 1), ('000008', 5), ('000134', 0), ('000134', 14), ('000004', 1)]
    fig, axes = plt.subplots(2, len(cars), figsize=(3.2 * len(cars), 6.4))
    done = {}
    for k, (fid, oid) in enumerate(cars):
        if fid not in done:
            frame = ds.load_frame(fid)
            prompts = ds.prompts(fid)
            masks = (masks_cache or {}).get(fid)
            result = al.label(frame, prompts, masks)
            labs, masks = result.labels, result.masks
            done[fid] = (frame, prompts, labs, masks, ds.labels(fid), ds.calib(fid))
        frame, prompts, labs, masks, objs, calib = done[fid]
        j = [p.id for p in prompts].index(oid)
        gt = kitti_to_label3d(objs[oid], calib)
        draw(axes[0, k], axes[1, k], frame, labs[j], gt, masks[j])
        axes[0, k].set_title(f'{fid}/{oid} ' + axes[0, k].get_title(), fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--out', default=str(ROOT / 'benchmarks' / 'figures' / 'kitti_fits.png'))
    p.add_argument('--prior', default='')
    p.add_argument('--masks-cache', default='', help='pickle {frame: [masks]} to skip the segmenter')
    args = p.parse_args()
    if not KITTI.is_dir():
        print(f'no KITTI data at {KITTI}: skipped')
        return
    from autolabel_ros.config import AutolabelConfig
    cfg = AutolabelConfig(prior=args.prior)
    cache = None
    if args.masks_cache:
        import pickle
        cache = pickle.load(open(args.masks_cache, 'rb'))
    print(make_figure(Path(args.out), cfg, masks_cache=cache))


if __name__ == '__main__':
    main()
