"""The look of a car's visible end: is the end that faces the camera its front or its rear?

A flip pair (a hypothesis and its 180-degree turn) shares one box, so both see the same end face in
the image; what differs is whether they call it the front or the rear. The end face (the box's end
towards the camera) is projected into the image, its bounding rectangle resampled to a small patch
(``PATCH_HW``, a 20-px car at 60 m gives a few pixels per row) and read by a logistic model
(:func:`end_logit`, coefficients in ``fit/end_look_model.py``, fitted on procedural simulator scenes
by ``benchmarks/train_end_look.py``). What it reads is the layout of the end: head lamps and
a dark grille low and white at the front vs red lamps and a plate at the rear, the raked windscreen
above a hood vs a short rear window above a boot, as row and column profiles and coarse block means
of colour contrast.
A car looks the same mirrored left to right, so the patch is averaged with its mirror first (the
model cannot learn which side the camera is on). The patch is read through the object's own mask:
the rectangle's pixels the mask does not cover (a nearer car's end, the road, the background) take
the colour of those it covers, so a partly hidden car is judged by what is left of it (on the
ApolloCar3D simulator set this lifted the visible end read right at the fitted box from 91 to 96 %
for cars with up to 0.7 of their box hidden, and on the KITTI frames from 76 to 92 % for cars up to 0.3).

The cue (``cue_end_look`` of each hypothesis, weight ``fit.w_end_look``) is minus the logit that the
hypothesis' front is where it says, times how much of the end faces the camera (``|facing|``, a side
view gives none), how little of the object nearer objects hide (``OCC_FULL``, ``OCC_NONE``: behind
a nearer car the rectangle shows that car's end) and ``HALF_POINTS / (n + HALF_POINTS)`` of its n fit
points (the scan decides well-seen cars). It needs no LiDAR point, so it speaks for far, few-point cars.
"""
from __future__ import annotations

import cv2
import numpy as np

from autolabel_ros.core.geometry import project, rot_z, transform_points

PATCH_HW = (12, 24)            # rows x columns of the end patch (the mirror average keeps 12 x 12)
END_LOGIT_CAP = 4.0
MIN_END_VISIBILITY = 0.2       # |facing| below which the end is seen edge-on: no evidence
# the share of the object's 2D box that nearer objects hide: up to OCC_FULL the cue counts fully, from
# OCC_NONE not at all (the end rectangle then shows the nearer car's end more than the object's)
OCC_FULL = 0.3
OCC_NONE = 0.5
HALF_POINTS = 100.0            # fit points at which the cue counts half (the scan decides well-seen cars)
CONTRAST_SCALE = 40.0          # redness / whiteness contrast (0-255) per feature unit
MIN_MASK_PIXELS = 6            # fewer own mask pixels in the end rectangle: the patch is taken unmasked
BLOCKS = (6, 4)                # rows x columns of the block means over the mirror-averaged half patch
N_FEATURES = 5 * (2 * PATCH_HW[0] + PATCH_HW[1] // 2 + BLOCKS[0] * BLOCKS[1])


def facing_of(pose, cam: np.ndarray) -> float:
    """cos between the car's forward axis and the horizontal direction to the camera (> 0: the front
    faces the camera)."""
    x, y, _, yaw = (float(v) for v in pose)
    view = np.array([cam[0] - x, cam[1] - y])
    view /= max(np.linalg.norm(view), 1e-6)
    return float(np.cos(yaw) * view[0] + np.sin(yaw) * view[1])


def end_rect(pose, size, K: np.ndarray, T_cam_lidar: np.ndarray, image_hw, cam: np.ndarray):
    """(u0, v0, u1, v1) pixel rectangle around the projected end face that faces the camera
    (pose x, y, z = box centre, yaw; size l, w, h), clipped to the image; None if behind the camera
    or under 3 px either way."""
    x, y, z, yaw = (float(v) for v in pose)
    l, w, h = (float(v) for v in size)
    e = (1.0 if facing_of(pose, cam) >= 0 else -1.0) * l / 2
    local = np.array([[e, s * w / 2, t * h / 2] for s in (-1, 1) for t in (-1, 1)])
    uv, zc = project(K, transform_points(T_cam_lidar, local @ rot_z(yaw).T + np.array([x, y, z])))
    if np.any(zc <= 0.5) or not np.all(np.isfinite(uv)):
        return None
    H, W = image_hw
    u0, v0 = np.floor(uv.min(0)).astype(int)
    u1, v1 = np.ceil(uv.max(0)).astype(int)
    u0, v0, u1, v1 = max(int(u0), 0), max(int(v0), 0), min(int(u1), W), min(int(v1), H)
    if u1 - u0 < 3 or v1 - v0 < 3:
        return None
    return u0, v0, u1, v1


def end_patch(image: np.ndarray, rect, mask: np.ndarray | None = None) -> np.ndarray:
    """The rectangle of the RGB image resampled to ``PATCH_HW`` (float, 0-255). With the object's
    ``mask`` (H x W bool), the pixels it does not cover (a nearer car's end, the background) take the
    median colour of those it covers, so that only the object's own pixels speak."""
    u0, v0, u1, v1 = rect
    crop = image[v0:v1, u0:u1].astype(np.float32)
    if mask is not None:
        own = mask[v0:v1, u0:u1]
        if own.sum() >= MIN_MASK_PIXELS:
            crop = np.where(own[..., None], crop, np.median(crop[own], axis=0))
    return cv2.resize(crop, PATCH_HW[::-1], interpolation=cv2.INTER_AREA)


def end_features(patch: np.ndarray) -> np.ndarray:
    """(N_FEATURES,) of an end patch: the mirror-averaged patch's channels (RGB standardised over the
    patch, redness and whiteness above their median) as row means, row maxima, column means and
    ``BLOCKS`` block means (a coarse 2D layout: lamps at the outer corners, a plate in the middle)."""
    p = patch.astype(np.float32)
    p = (p + p[:, ::-1]) / 2
    p = p[:, :p.shape[1] // 2]
    flat = p.reshape(-1, 3)
    rgb = (p - flat.mean(0)) / (flat.std(0) + 10.0)
    red = p[..., 0] - p[..., 1:].max(-1)
    white = p.min(-1)
    red = (red - np.median(red)) / CONTRAST_SCALE
    white = (white - np.median(white)) / CONTRAST_SCALE
    ch = np.concatenate([rgb, red[..., None], white[..., None]], -1)
    blocks = cv2.resize(ch, BLOCKS[::-1], interpolation=cv2.INTER_AREA)
    return np.concatenate([ch.mean(1).ravel(), ch.max(1).ravel(), ch.mean(0).ravel(), blocks.ravel()])


def end_logit(features: np.ndarray, coef=None, intercept=None) -> float:
    """Logit that the visible end is the front (default: the shipped model, fit/end_look_model.py)."""
    if coef is None:
        from autolabel_ros.fit.end_look_model import END_COEF, END_INTERCEPT
        coef, intercept = END_COEF, END_INTERCEPT
    return float(np.clip(intercept + np.dot(coef, features), -END_LOGIT_CAP, END_LOGIT_CAP))


def end_look_cues(image: np.ndarray, K: np.ndarray, T_cam_lidar: np.ndarray, cam: np.ndarray, poses, sizes,
                  n_points: int, occluded: float, coef=None, intercept=None,
                  mask: np.ndarray | None = None) -> list[float]:
    """Cue value per hypothesis (poses A x 4, sizes A x 3; module docstring) of an object with
    ``n_points`` fit points and the ``occluded`` share of its 2D box hidden; 0 without evidence."""
    seen = float(np.clip((OCC_NONE - occluded) / (OCC_NONE - OCC_FULL), 0.0, 1.0))
    shrink = seen * (HALF_POINTS / (n_points + HALF_POINTS) if HALF_POINTS > 0 else 1.0)
    out = []
    for pose, size in zip(poses, sizes):
        facing = facing_of(pose, cam)
        rect = end_rect(pose, size, K, T_cam_lidar, image.shape[:2], cam)
        if abs(facing) < MIN_END_VISIBILITY or rect is None or shrink == 0.0:
            out.append(0.0)
            continue
        logit = end_logit(end_features(end_patch(image, rect, mask)), coef, intercept)
        out.append(-(1.0 if facing > 0 else -1.0) * abs(facing) * shrink * logit)
    return out
