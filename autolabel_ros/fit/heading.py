"""Front/back disambiguation from the lamps: rear lamps are red, head lamps white/amber (a legal
requirement almost everywhere), so the end of the car that faces the camera shows red lamp areas
when it is the rear.

For a fitted hypothesis the visible end (front or rear, whichever faces the camera) is known; its two
lamp locations (near the outer corners, a little above the box centre) are projected into the image
and the redness ``R - max(G, B)`` of the instance-mask pixels in small patches there is compared with
the paint's redness (upper quartile over the mask), floored at 0 (a red car is red everywhere: no
evidence). Only
red counts (one-sided): no red lamp is no evidence either way. The cue is

    t = -side * clip((lamp_redness - max(car_redness, 0) - DEAD_ZONE) / 40, 0, 1) * visibility

with side = +1 when the hypothesis says the visible end is the rear, -1 for the front, and
visibility = |cos| between the end face normal and the viewing direction (0 for a pure side view).
Flip pairs get opposite signs. The pipeline adds ``fit.w_lamps * t`` to each surviving hypothesis'
energy before choosing, so the cue only decides between hypotheses whose silhouette and LiDAR
energies are close.
"""
from __future__ import annotations

import numpy as np

from autolabel_ros.core.geometry import project, rot_z, transform_points

# Redness below this (R - max(G, B), 0-255 scale) above the paint is not a lamp: camera colour
# fringes at bright edges (head-lamp highlights, chrome) reach ~20 in real images.
DEAD_ZONE = 25.0


def redness(image: np.ndarray) -> np.ndarray:
    im = image.astype(np.float32)
    return im[..., 0] - np.maximum(im[..., 1], im[..., 2])


def lamp_cue(pose, size, frame, mask: np.ndarray, red: np.ndarray, base: float) -> float:
    """Cue t (see the module docstring) of one hypothesis: negative = supports it."""
    x, y, z, yaw = (float(v) for v in pose)
    l, w, h = (float(v) for v in size)
    head = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    cam = transform_points(np.linalg.inv(frame.T_cam_lidar), np.zeros((1, 3)))[0]
    c = np.array([x, y, z])
    view = cam - c
    view[2] = 0
    view /= max(np.linalg.norm(view), 1e-6)
    facing = float(head @ view)        # > 0: the front faces the camera
    side = -1.0 if facing > 0 else 1.0
    vis = abs(facing)
    if vis < 0.2:
        return 0.0
    end = np.sign(facing) * l / 2 - np.sign(facing) * 0.05
    lamps_local = np.array([[end, (w / 2 - 0.25), 0.1 * h], [end, -(w / 2 - 0.25), 0.1 * h]])
    lamps = lamps_local @ rot_z(yaw).T + c
    uv, zc = project(frame.K, transform_points(frame.T_cam_lidar, lamps))
    H, W = mask.shape
    vals = []
    for (u, v), d in zip(uv, zc):
        if d <= 0.5:
            continue
        r = int(max(1, round(0.18 * frame.K[0, 0] / d)))
        u0, u1 = int(max(0, u - r)), int(min(W, u + r + 1))
        v0, v1 = int(max(0, v - r)), int(min(H, v + r + 1))
        if u1 <= u0 or v1 <= v0:
            continue
        m = mask[v0:v1, u0:u1]
        if m.sum() < 2:
            continue
        patch = red[v0:v1, u0:u1][m]
        vals.append(np.percentile(patch, 90))        # the lamp is a part of the patch
    if not vals:
        return 0.0
    # one-sided: red lamps are evidence for the rear; their absence (dark glass, a shadow, lamps out
    # of the patch) is no evidence for the front. A blue car is not "less red" than a lamp: base >= 0.
    contrast = float(np.mean(vals)) - max(base, 0.0) - DEAD_ZONE
    return -side * float(np.clip(contrast / 40.0, 0.0, 1.0)) * vis
