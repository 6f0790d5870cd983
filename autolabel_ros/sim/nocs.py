"""Training samples for the CSS network: simulated camera images with per-pixel NOCS targets.

The simulator knows every car's mesh and pose, so the NOCS of a visible pixel is free: the pixel's
camera ray is cast against that car alone (for a visible pixel the first hit is the same as in the
whole scene) and the hit point goes to the car's normalised frame (:mod:`autolabel_ros.core.nocs`).

Randomisation beyond the simulator's own (sun, layout, clutter, road textures): a share of the cars
get an arbitrary paint instead of the usual palette, and each sample's patch window is jittered in
scale and position (a detector's or SAM's box is never tight). Photometric changes (gain, colour
cast, gamma, blur, noise) are cheap and happen at training time (``autolabel_ros.css.train``).
Only the camera is rendered (no LiDAR scan): the network reads images.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from autolabel_ros.core.nocs import cut_patch, patch_window, points_to_nocs
from autolabel_ros.sim.drive import Simulator, _Posed
from autolabel_ros.sim.sensors import Camera, RayScene

CSS_SEED_BASE = 5_000_000       # scene seeds of the CSS training data (disjoint from the benchmarks')


@dataclass
class NocsSample:
    rgb: np.ndarray             # P x P x 3 uint8 patch
    mask: np.ndarray            # P x P bool instance mask (modal)
    nocs: np.ndarray            # P x P x 3 float32 NOCS target, valid where mask
    dims: np.ndarray            # (l, w, h) / diagonal: the car's proportions
    facing: float               # cos between the car's heading and the direction to the camera
    window: np.ndarray | None = None    # (x0, y0, side) of the patch in the frame's image


def frame_samples(seed: int, patch: int = 64, min_px: int = 150, camera: Camera | None = None,
                  free_paint: float = 0.5, rng: np.random.Generator | None = None) -> list[NocsSample]:
    """NOCS samples of the visible cars (>= ``min_px`` visible pixels) of one simulated frame."""
    return frame_image_samples(seed, patch, min_px, camera, free_paint, rng)[1]


def frame_image_samples(seed: int, patch: int = 64, min_px: int = 150, camera: Camera | None = None,
                        free_paint: float = 0.5, rng: np.random.Generator | None = None
                        ) -> tuple[np.ndarray, list[NocsSample]]:
    """The rendered image of one simulated frame and the NOCS samples of its visible cars (with their
    windows: heads that read the whole frame, such as benchmarks/embed_head.py, need them)."""
    rng = rng or np.random.default_rng([int(seed), 0xC55])
    sim = Simulator(seed, n_frames=1, camera=camera or Camera.kitti(),
                    n_cars=int(rng.integers(6, 16)), clutter=True)
    for car in sim.scene.cars:
        if rng.uniform() < free_paint:
            car.paint = tuple(rng.uniform(0.03, 0.95, 3) ** rng.uniform(0.7, 1.6))
    ego = sim.scene.ego_position(0.0)
    posed = _Posed(sim.scene, 0.0, ego, sim.wall_rgb)
    image, masks, (origin, T_lidar_cam) = sim._render_camera(posed, ego, np.random.default_rng([seed, 1]))
    H, W = masks.shape
    out = []
    dirs_all = sim._cam_dirs @ T_lidar_cam[:3, :3].T
    for car in sim.scene.cars:
        m = masks == car.id
        if m.sum() < min_px:
            continue
        solo = RayScene()
        solo.add(posed.car_verts[car.id], car.mesh.faces)
        pix = np.flatnonzero(m.ravel())
        hit = solo.cast(origin[None], dirs_all[pix])
        t = hit['t_hit']
        ok = np.isfinite(t)
        if ok.sum() < min_px // 2:
            continue
        pts = origin + dirs_all[pix[ok]] * t[ok, None]
        center = sim.scene.car_center(car, 0.0) - ego
        yaw = car.pose(0.0)[2]
        nocs_img = np.zeros((H, W, 3), np.float32)
        nocs_img.reshape(-1, 3)[pix[ok]] = points_to_nocs(pts, center, car.size, yaw)
        valid = np.zeros((H, W), np.uint8)
        valid.reshape(-1)[pix[ok]] = 1
        ys, xs = np.nonzero(m)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
        win = patch_window(box, float(rng.uniform(1.05, 1.4)))
        win[:2] += rng.uniform(-0.08, 0.08, 2) * win[2]
        rgb = cut_patch(image, win, patch)
        pm = cut_patch(valid, win, patch, cv2.INTER_NEAREST).astype(bool)
        pn = cut_patch(nocs_img, win, patch, cv2.INTER_NEAREST)
        if pm.sum() < 20:
            continue
        cam = origin - center
        head = np.array([np.cos(yaw), np.sin(yaw)])
        facing = float(head @ cam[:2] / max(np.linalg.norm(cam[:2]), 1e-6))
        dims = (car.size / np.linalg.norm(car.size)).astype(np.float32)
        out.append(NocsSample(rgb=rgb, mask=pm, nocs=pn, dims=dims, facing=facing, window=win))
    return image, out


def stack_samples(samples: list[NocsSample]) -> dict:
    """Arrays for an .npz file: rgb (N P P 3 u8), mask (N P P bool), nocs (N P P 3 f16), dims, facing."""
    return dict(rgb=np.stack([s.rgb for s in samples]), mask=np.stack([s.mask for s in samples]),
                nocs=np.stack([s.nocs for s in samples]).astype(np.float16),
                dims=np.stack([s.dims for s in samples]),
                facing=np.array([s.facing for s in samples], np.float32))


def write_sample_chunks(seeds: list[int], out_dir, chunk: int = 20, patch: int = 64,
                        camera_scale: float = 0.5,
                        log=print) -> list:
    """Render the frames of ``seeds`` into ``out_dir/nocs_<first seed>_<n>_p<patch>_s<scale>.npz``
    chunks of ``chunk`` frames; a chunk already there is kept (a long generation can be resumed).
    ``camera_scale`` 0.5 renders the KITTI camera at half resolution (5x cheaper; the patches are
    resampled to ``patch`` pixels either way). Returns the chunk paths."""
    from autolabel_ros.core.npz_chunks import write_npz_chunks
    cam = Camera.kitti(camera_scale)
    min_px = int(round(150 * camera_scale ** 2))

    def build(part: list) -> dict:
        samples = [s for seed in part for s in frame_samples(seed, patch, min_px, cam)]
        return stack_samples(samples) if samples else {}

    def name(part: list) -> str:
        return f'nocs_{part[0]}_{len(part)}_p{patch}_s{camera_scale:g}.npz'

    return write_npz_chunks(seeds, out_dir, chunk, name, build, log=log)
