"""Does the fitted length follow the data where the data sees the length? The signed length error of
every car placed right (not flipped, centre distance error < 1 m), split by how much the data sees the
car's far end:

- scan: the frame's non-ground scan points within ``FAR_M`` of the ground-truth box's far end face
  (the end farther from the sensor; inside the box's width grown by ``SIDE_M``, above its lowest
  ``GROUND_M``): >= ``MIN_FAR`` points = the scan sees the far end; the same over the points in the
  camera image only, at both ends (a car cut by the image border loses its near end);
- fit: the same count over the points the lifting kept for the fit (fit/lift.py): the scan sees the far
  end but the fit does not get those points = the lifting cut them;
- mask: the image region only the box's last ``SHORT_M`` metres at the far end explain (the projected
  box minus the projected box shortened there) and how much of it the instance mask covers: the
  silhouette sees the length when that region is >= ``MIN_REGION`` of the box's image area and the mask
  covers >= ``MIN_COVER`` of it (a car's end is rounded and low: a tight box's last half metre is mostly
  empty, even on an oracle mask);
- view: side-on (the heading within 30 deg of square to the line of sight), end-on (within 30 deg of
  it), oblique between;
- hidden share: the label's occluded share (nearer objects' masks over its 2D box, fit/verify.py).

Each car also gets its fit points' extent along the true heading (1st-99th percentile) next to the
label's length, so a label shorter than its own points shows.

    python benchmarks/length_evidence.py --dataset apollo64|sim64|kitti [--frames N] \
        [--config '{"fit": {...}}'] [--json out.json] [--load out.json]

Found on main at f9eba04 (full sets): most cars are seen end-on (ApolloCar3D scenes 247 of 284 placed
right) and neither the scan nor the mask sees their far end (244), so their length is the prior's:
-0.57 m on ApolloCar3D cars (true mean 4.64 m against the prior's 3.93), +0.09 procedural, +0.18 KITTI
(true mean 3.74). Where the scan in the image sees both ends the bias is -0.29 (21 ApolloCar3D cars),
+0.11 (34 procedural), +0.09 (7 KITTI). That residual follows the prior, not the fit's settings: the
same fit with the (in-sample, diagnosis only) ApolloCar3D prior reads +0.06 there, while the length did
not move with all frustum points in the fit (max_points 4096), weaker regularisers (w_shape, w_scale,
w_scale_common / 3-10), w_mask 3, w_lidar 0.3, lidar_robust 1.0, 160 iterations, crop 48, the union
silhouette, a 10-component procedural prior, or procedural cars with lower, sloped ends (+0.02-0.05 m
on four side-on cars). A candidate (benchmarks/end_shape.py): the procedural cars' ends are boxier in
plan view than the ApolloCar3D models' (at 0.15 m from the tip 92-98 % of the half-width against 71-81 %).
A prior with rounder ends reads -0.16 there (KITTI +0.07 -> +0.22): benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'benchmarks'))

FAR_M, SIDE_M, GROUND_M, MIN_FAR = 0.3, 0.2, 0.3, 3
SHORT_M, MIN_REGION, MIN_COVER = 0.5, 0.03, 0.1
SIDE_ON, END_ON = np.cos(np.radians(60)), np.cos(np.radians(30))


def box_frame(pts: np.ndarray, center, size, yaw: float, far_sign: float):
    """Points in the box's frame, u along the heading pointing to the far end."""
    d = np.asarray(pts, float)[:, :3] - np.asarray(center, float)
    c, s = np.cos(yaw), np.sin(yaw)
    return far_sign * (d[:, 0] * c + d[:, 1] * s), -d[:, 0] * s + d[:, 1] * c, d[:, 2]


def far_sign_of(center, yaw: float) -> float:
    """+1 when the end along the heading is the one farther from the sensor (origin), else -1."""
    return 1.0 if float(np.dot(np.asarray(center, float)[:2], [np.cos(yaw), np.sin(yaw)])) >= 0 else -1.0


def far_points(pts: np.ndarray, center, size, yaw: float, near: bool = False) -> int:
    """Points within FAR_M of the far end face (``near``: of the near one; inside the width grown by
    SIDE_M, above the lowest GROUND_M of the box)."""
    if len(pts) == 0:
        return 0
    L, W, H = size
    u, v, z = box_frame(pts, center, size, yaw, far_sign_of(center, yaw) * (-1.0 if near else 1.0))
    sel = (np.abs(u - L / 2) < FAR_M) & (np.abs(v) < W / 2 + SIDE_M) & (z > -H / 2 + GROUND_M) \
        & (z < H / 2 + 0.1)
    return int(sel.sum())


def in_image(pts: np.ndarray, K, T, shape) -> np.ndarray:
    """Which LiDAR-frame points project into the image (in front of the camera)."""
    from autolabel_ros.core.geometry import project, transform_points
    uv, z = project(K, transform_points(T, np.asarray(pts, float)[:, :3]))
    H, W = shape
    return (z > 0.5) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)


def scan_fields(scan: np.ndarray, o, g, K, T, shape) -> dict:
    """Far-end scan points of ground-truth car ``g`` (KITTI object ``o``): all of them and those in the
    camera's image (the only ones a frustum can take), the near end's in the image (a car cut by the
    image border loses its near end), and the label's truncation."""
    gc, gs, gy = np.asarray(g.center, float), np.asarray(g.size, float), float(g.yaw)
    vis = scan[in_image(scan, K, T, shape)] if len(scan) else scan
    return dict(scan_far=far_points(scan, gc, gs, gy), scan_far_img=far_points(vis, gc, gs, gy),
                scan_near_img=far_points(vis, gc, gs, gy, near=True), truncated=float(o.truncated))


def _corners(center, size, yaw) -> np.ndarray:
    L, W, H = size
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    xs = np.array([[sx * L / 2, sy * W / 2, sz * H / 2]
                   for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    return xs @ R.T + np.asarray(center, float)


def _hull_mask(center, size, yaw, K, T, shape) -> np.ndarray | None:
    import cv2

    from autolabel_ros.core.geometry import project, transform_points
    uv, z = project(K, transform_points(T, _corners(center, size, yaw)))
    if np.any(z < 0.5):
        return None
    out = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(out, cv2.convexHull(np.round(uv).astype(np.int32)), 1)
    return out.astype(bool)


def mask_far(mask: np.ndarray, center, size, yaw, K, T) -> tuple[float, float]:
    """(share of the box's image area only its last SHORT_M m at the far end explain, share of that
    region the mask covers); (0, 0) when the box is behind the camera."""
    sign = far_sign_of(center, yaw)
    full = _hull_mask(center, size, yaw, K, T, mask.shape)
    shift = -sign * SHORT_M / 2 * np.array([np.cos(yaw), np.sin(yaw), 0.0])
    short = _hull_mask(np.asarray(center, float) + shift, (size[0] - SHORT_M, size[1], size[2]), yaw, K, T,
                       mask.shape)
    if full is None or short is None or not full.any():
        return 0.0, 0.0
    region = full & ~short
    if not region.any():
        return 0.0, 0.0
    return float(region.sum() / full.sum()), float((region & mask).sum() / region.sum())


def view_of(center, yaw: float) -> str:
    ray = np.asarray(center, float)[:2]
    c = abs(float(np.dot(ray / max(np.linalg.norm(ray), 1e-6), [np.cos(yaw), np.sin(yaw)])))
    return 'side-on' if c < SIDE_ON else 'end-on' if c > END_ON else 'oblique'


def car_rows(dataset: str, data: Path, frames, config: dict) -> list[dict]:
    """Label the frames (cached masks, run_all's cache) and one record per ground-truth car."""
    import torch

    import autolabel_ros.pipeline as pipeline
    import run_all
    from autolabel_ros.config import from_dict
    from autolabel_ros.core.types import wrap_angle
    from autolabel_ros.eval.iou import iou3d_lidar
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d

    torch.set_num_threads(1)
    al = pipeline.Autolabeler(from_dict(config))
    seg = run_all.CachedSegmenter(al, f'{dataset}_gt-boxes')
    al._segmenter = seg
    seen = {}
    real_lift = pipeline.lift

    def lift_kept(*a, **k):              # the evidence the fit gets, kept for the records
        ev = real_lift(*a, **k)
        seen['ev'] = ev
        return ev

    pipeline.lift = lift_kept
    ds = KittiObjectDataset(data)
    rows = []
    try:
        for fid in frames:
            seg.fid = fid
            seen.clear()                 # a frame without prompts runs no lifting
            frame, calib = ds.load_frame(fid), ds.calib(fid)
            prompts = ds.prompts(fid, mode='gt-boxes', seed=al.cfg.seed)
            res = al.label(frame, prompts)
            evs = {prompts[o.index].id: o for o in seen['ev'].objects} if seen.get('ev') else {}
            labels = {lab.id: lab for lab in res.labels}
            scan = seen['ev'].scan_nonground if seen.get('ev') else np.zeros((0, 3))
            objs = ds.labels(fid)
            for p in prompts:
                o, lab, ev = objs[p.id], labels.get(p.id), evs.get(p.id)
                g = kitti_to_label3d(o, calib)
                if lab is None or ev is None or not np.all(np.isfinite(lab.center)):
                    continue
                gc, gs, gy = np.asarray(g.center, float), np.asarray(g.size, float), float(g.yaw)
                pts = np.asarray(ev.points, float)
                u = box_frame(pts, gc, gs, gy, 1.0)[0] if len(pts) else np.zeros(0)
                region, cover = mask_far(ev.mask, gc, gs, gy, frame.K, frame.T_cam_lidar)
                dyaw = float(np.degrees(abs(wrap_angle(lab.yaw - gy))))
                box = lambda c, s, y: np.r_[c, s, y]  # noqa: E731
                # distance along the line of sight of the box centres (the car_records depth error)
                rows.append(dict(
                    frame=fid, line=p.id + 1, gt_l=float(gs[0]), dl=float(lab.size[0] - gs[0]),
                    dw=float(lab.size[1] - gs[1]), dh=float(lab.size[2] - gs[2]),
                    dyaw=dyaw, flipped=dyaw > 90,
                    depth_err=float(np.linalg.norm(lab.center) - np.linalg.norm(gc)),
                    iou=float(iou3d_lidar(box(lab.center, lab.size, lab.yaw), box(gc, gs, gy))),
                    range=float(np.linalg.norm(gc[:2])), view=view_of(gc, gy),
                    **scan_fields(scan, o, g, frame.K, frame.T_cam_lidar, ev.mask.shape),
                    fit_far=far_points(pts, gc, gs, gy),
                    n_fit=int(len(pts)), n_frustum=int(ev.n_frustum), n_nearer=int(ev.n_nearer),
                    fit_extent=float(np.percentile(u, 99) - np.percentile(u, 1)) if len(u) >= 3 else 0.0,
                    mask_region=region, mask_cover=cover,
                    hidden=float(lab.metrics.get('occluded_share', 0.0)),
                    scales=list(lab.metrics.get('scales', [1, 1, 1])), accepted=bool(lab.accepted)))
    finally:
        pipeline.lift = real_lift
    return rows


def placed(rows):
    return [r for r in rows if not r['flipped'] and abs(r['depth_err']) < 1.0]


BUCKETS = {
    'scan sees far end': lambda r: r['scan_far'] >= MIN_FAR,
    'scan misses far end': lambda r: r['scan_far'] < MIN_FAR,
    'scan sees, fit points too': lambda r: r['scan_far'] >= MIN_FAR and r['fit_far'] >= MIN_FAR,
    'scan sees, fit points do not (lift cut)': lambda r: r['scan_far'] >= MIN_FAR and r['fit_far'] < MIN_FAR,
    'scan sees far end outside the image only': lambda r: r['scan_far'] >= MIN_FAR
    and r.get('scan_far_img', 0) < MIN_FAR,
    'image scan sees both ends': lambda r: r.get('scan_far_img', 0) >= MIN_FAR
    and r.get('scan_near_img', 0) >= MIN_FAR,
    'image scan sees the far end, not the near one': lambda r: r.get('scan_far_img', 0) >= MIN_FAR
    and r.get('scan_near_img', 0) < MIN_FAR,
    'truncated (> 0.1)': lambda r: r.get('truncated', 0) > 0.1,
    'not truncated': lambda r: r.get('truncated', 0) <= 0.1,
    'mask sees far end': lambda r: r['mask_region'] >= MIN_REGION and r['mask_cover'] >= MIN_COVER,
    'mask does not': lambda r: not (r['mask_region'] >= MIN_REGION and r['mask_cover'] >= MIN_COVER),
    'side-on': lambda r: r['view'] == 'side-on',
    'oblique': lambda r: r['view'] == 'oblique',
    'end-on': lambda r: r['view'] == 'end-on',
    'hidden < 0.1': lambda r: r['hidden'] < 0.1,
    'hidden 0.1-0.4': lambda r: 0.1 <= r['hidden'] < 0.4,
    'hidden >= 0.4': lambda r: r['hidden'] >= 0.4,
    'scan or mask sees far end': lambda r: r['scan_far'] >= MIN_FAR
    or (r['mask_region'] >= MIN_REGION and r['mask_cover'] >= MIN_COVER),
    'neither sees it': lambda r: r['scan_far'] < MIN_FAR
    and not (r['mask_region'] >= MIN_REGION and r['mask_cover'] >= MIN_COVER),
    'true length >= 4.5 m': lambda r: r['gt_l'] >= 4.5,
    'true length < 4.2 m': lambda r: r['gt_l'] < 4.2,
}


def table(rows: list[dict]) -> list[str]:
    """Markdown rows: bucket, cars, mean dl, mean true length, mean (label - fit points' extent)."""
    ok = placed(rows)
    out = ['| bucket | cars | length bias m | true length m | label - fit points extent m | width bias m |',
           '|---|---|---|---|---|---|']
    for name, sel in [('all placed right', lambda r: True)] + list(BUCKETS.items()):
        xs = [r for r in ok if sel(r)]
        if not xs:
            out.append(f'| {name} | 0 | - | - | - | - |')
            continue
        ext = [r['gt_l'] + r['dl'] - r['fit_extent'] for r in xs if r['fit_extent'] > 0]
        out.append(f"| {name} | {len(xs)} | {np.mean([r['dl'] for r in xs]):+.2f} | "
                   f"{np.mean([r['gt_l'] for r in xs]):.2f} | {np.mean(ext) if ext else float('nan'):+.2f} | "
                   f"{np.mean([r['dw'] for r in xs]):+.2f} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='apollo64', choices=['kitti', 'sim64', 'apollo64'])
    ap.add_argument('--frames', type=int, default=0, help='first N frames (0 = all)')
    ap.add_argument('--config', default='{}', help='config overrides as JSON')
    ap.add_argument('--json', default='', help='write the per-car records here')
    ap.add_argument('--load', default='', help='read records written by --json instead of fitting')
    a = ap.parse_args(argv)
    if a.load:
        rows = json.loads(Path(a.load).read_text())
        if a.frames:
            keep = sorted({r['frame'] for r in rows})[:a.frames]
            rows = [r for r in rows if r['frame'] in keep]
    else:
        import run_all
        data = {'kitti': run_all.KITTI, 'apollo64': run_all.apollo_root()}.get(a.dataset) \
            or run_all.sim_root(64)
        if not (data / 'label_2').is_dir():
            print(f'{data}: no label_2 folder (run benchmarks/run_all.py --only data first)', file=sys.stderr)
            return 2
        from autolabel_ros.io.kitti import KittiObjectDataset
        frames = KittiObjectDataset(data).frame_ids
        frames = frames[:a.frames] if a.frames else frames
        rows = car_rows(a.dataset, data, frames, json.loads(a.config))
        if a.json:
            Path(a.json).write_text(json.dumps(rows))
    ok = placed(rows)
    print(f'{a.dataset} {a.config}: {len(rows)} cars, {len(ok)} placed right; '
          f"mean IoU3D {np.mean([r['iou'] for r in rows]):.3f}, IoU>=0.7 "
          f"{np.mean([r['iou'] >= 0.7 for r in rows]):.3f}, flips {sum(r['flipped'] for r in rows)}")
    print('\n'.join(table(rows)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
