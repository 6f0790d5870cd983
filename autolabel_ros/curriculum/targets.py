"""NOCS training samples from autolabels: the label's fitted mesh is ray-cast at the pixels of its
instance mask, the hits go to the label box's normalised frame (:mod:`autolabel_ros.core.nocs`), and
the patch is cut exactly as for the simulator's samples (:mod:`autolabel_ros.sim.nocs`), so real and
synthetic samples train the network alike."""
from __future__ import annotations

import cv2
import numpy as np

from autolabel_ros.core.geometry import project, transform_points
from autolabel_ros.core.nocs import cut_patch, patch_window, points_to_nocs
from autolabel_ros.fit.rays import camera_rays
from autolabel_ros.sim.nocs import NocsSample
from autolabel_ros.sim.sensors import RayScene


def label_sample(frame, label, mask: np.ndarray, rng: np.random.Generator, patch: int = 64,
                 min_px: int = 40) -> NocsSample | None:
    """The sample of one label (with a mesh) and its H x W instance mask; None when too few mask pixels
    hit the mesh (the fit and the mask disagree: not a target worth learning)."""
    if label.mesh is None or mask is None or mask.sum() < min_px:
        return None
    ys, xs = np.nonzero(mask)
    pix = np.stack([xs + 0.5, ys + 0.5], -1)
    origin, dirs = camera_rays(frame.K, frame.T_cam_lidar, pix)
    scene = RayScene()
    scene.add(np.asarray(label.mesh.vertices, np.float32), np.asarray(label.mesh.faces))
    t = scene.cast(origin[None], dirs)['t_hit']
    ok = np.isfinite(t)
    if ok.sum() < max(min_px // 2, 0.5 * len(t)):
        return None
    H, W = mask.shape
    nocs_img = np.zeros((H, W, 3), np.float32)
    valid = np.zeros((H, W), np.uint8)
    pts = origin + dirs[ok] * t[ok, None]
    nocs_img[ys[ok], xs[ok]] = points_to_nocs(pts, label.center, label.size, label.yaw)
    valid[ys[ok], xs[ok]] = 1
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
    win = patch_window(box, float(rng.uniform(1.05, 1.4)))
    win[:2] += rng.uniform(-0.08, 0.08, 2) * win[2]
    pm = cut_patch(valid, win, patch, cv2.INTER_NEAREST).astype(bool)
    if pm.sum() < 20:
        return None
    cam = origin - np.asarray(label.center)
    head = np.array([np.cos(label.yaw), np.sin(label.yaw)])
    facing = float(head @ cam[:2] / max(np.linalg.norm(cam[:2]), 1e-6))
    size = np.asarray(label.size, np.float64)
    return NocsSample(rgb=cut_patch(frame.image, win, patch), mask=pm,
                      nocs=np.clip(cut_patch(nocs_img, win, patch, cv2.INTER_NEAREST), 0.0, 1.0),
                      dims=(size / np.linalg.norm(size)).astype(np.float32), facing=facing)


def mesh_silhouette(frame, label, near: float = 0.1) -> np.ndarray:
    """H x W bool: the image pixels the label's fitted mesh covers (its triangles filled; the faces
    behind the camera's near plane are left out)."""
    H, W = frame.image.shape[:2]
    sil = np.zeros((H, W), np.uint8)
    if label.mesh is None:
        return sil.astype(bool)
    pc = transform_points(frame.T_cam_lidar, np.asarray(label.mesh.vertices, np.float64))
    uv, z = project(frame.K, pc)
    faces = np.asarray(label.mesh.faces)
    faces = faces[np.all(z[faces] > near, axis=1)]
    if len(faces):
        tri = np.round(uv[faces] * 4).astype(np.int32)          # 2 fractional bits for cv2's shift
        for t in tri:          # one call per triangle: fillPoly's even-odd rule would cancel overlaps
            cv2.fillConvexPoly(sil, t, 1, lineType=cv2.LINE_8, shift=2)
    return sil.astype(bool)


def mask_agreement(mask: np.ndarray, silhouette: np.ndarray, hidden: np.ndarray | None = None) -> float:
    """IoU of an instance mask and the fitted mesh's silhouette over the pixels no nearer object hides
    (``hidden``): low when the mask and the fit disagree (a mask that caught only the roof, or spilled
    onto the neighbour of a parked row), whose NOCS targets would teach the wrong shape."""
    m, s = np.asarray(mask, bool), np.asarray(silhouette, bool)
    if hidden is not None:
        s = s & ~np.asarray(hidden, bool)
        m = m & ~np.asarray(hidden, bool)
    union = np.count_nonzero(m | s)
    return float(np.count_nonzero(m & s) / union) if union else 0.0
