"""The learned front/back cue for the heading choice of the Segment-Lift-Fit core.

The NOCS map says which end of the car the camera sees: the mask's mean NOCS x is above 0.5 when the
front faces the camera and below when the rear does (a car's visible surface is its near half). A
heading hypothesis (centre, yaw) predicts the same from geometry: ``facing = cos`` between the
heading and the direction to the camera. The cue of a hypothesis is

    t = -facing_pred * facing_hyp        (in [-1, 1]; negative = supports the hypothesis)

so a hypothesis and its flip get opposite signs and a side view (either factor ~0) says nothing.
The fitter adds ``fit.w_css * t`` to each surviving hypothesis' energy, like the lamp cue.
"""
from __future__ import annotations

import numpy as np

from autolabel_ros.core.geometry import transform_points

# mean NOCS x of the visible half of a car seen end-on, minus 0.5: a box of the mean KITTI size
# (l / diagonal ~ 0.8) shows its end face at x = +-0.4 and some bonnet/boot before it
END_ON_OFFSET = 0.3


def facing_from_nocs(nocs: np.ndarray, valid: np.ndarray) -> float:
    """+1 front faces the camera ... -1 rear; 0 without mask pixels."""
    if not valid.any():
        return 0.0
    return float(np.clip((np.mean(nocs[valid, 0]) - 0.5) / END_ON_OFFSET, -1.0, 1.0))


def hypothesis_facing(pose, T_cam_lidar: np.ndarray) -> float:
    """cos between a hypothesis' heading (pose = x, y, z, yaw in the LiDAR frame) and the horizontal
    direction from its centre to the camera."""
    x, y, _, yaw = (float(v) for v in pose[:4])
    cam = transform_points(np.linalg.inv(T_cam_lidar), np.zeros((1, 3)))[0]
    view = cam[:2] - np.array([x, y])
    view /= max(float(np.linalg.norm(view)), 1e-6)
    return float(np.cos(yaw) * view[0] + np.sin(yaw) * view[1])


def css_cue(pose, T_cam_lidar: np.ndarray, facing_pred: float) -> float:
    return -float(facing_pred) * hypothesis_facing(pose, T_cam_lidar)
