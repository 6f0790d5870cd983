"""Box geometry and exact conversions between the LiDAR-frame box and KITTI's camera-rect box.

KITTI ``label_2`` stores, in the rectified camera frame (x right, y down, z forward):
``h w l`` and the **bottom** centre ``x y z`` and ``rotation_y`` (about +y, 0 = heading along +x_cam).
``T_rect_lidar = R0_rect @ Tr_velo_to_cam`` (both padded to 4x4) maps LiDAR points to it.

The heading conversion is exact in both directions, also when the calibration tilts the camera
relative to the LiDAR: a LiDAR heading d (in the xy plane) maps to the rotation_y whose vertical
camera plane contains R d, and the inverse solves for the LiDAR heading lying in that plane, so
LiDAR -> camera -> LiDAR returns the input up to float rounding.
"""
from __future__ import annotations

import numpy as np

from autolabel_ros.core.types import wrap_angle


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def box_corners(center, size, yaw) -> np.ndarray:
    """8 x 3 corners of a LiDAR-frame box. Order: bottom face (z-) then top face (z+), each
    counter-clockwise seen from above starting at front-left: (+l/2,+w/2), (-l/2,+w/2), (-l/2,-w/2),
    (+l/2,-w/2)."""
    l, w, h = np.asarray(size, dtype=np.float64)
    xs = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * l / 2
    ys = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * w / 2
    zs = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * h / 2
    return (rot_z(yaw) @ np.stack([xs, ys, zs])).T + np.asarray(center, dtype=np.float64)


# The 12 edges of box_corners, as index pairs (bottom ring, top ring, verticals).
BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4],
                      [0, 4], [1, 5], [2, 6], [3, 7]])


def bev_corners(center, size, yaw) -> np.ndarray:
    """4 x 2 bird's-eye-view corners (x, y), counter-clockwise."""
    return box_corners(center, size, yaw)[:4, :2]


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 4x4 homogeneous transform to N x 3 points."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ T[:3, :3].T + T[:3, 3]


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (R, t) -> (R^T, -R^T t)."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def project(K: np.ndarray, pts_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of N x 3 camera-frame points -> (N x 2 pixels, N depths)."""
    z = pts_cam[:, 2]
    uv = pts_cam @ K.T
    with np.errstate(divide='ignore', invalid='ignore'):
        uv = uv[:, :2] / z[:, None]
    return uv, z


def box_iou(a, b) -> float:
    """IoU of two image boxes (x1, y1, x2, y2; continuous coordinates)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return float(iw * ih / union) if union > 0 else 0.0


def points_in_box(pts: np.ndarray, center, size, yaw, margin: float = 0.0) -> np.ndarray:
    """Boolean mask of the N x 3 LiDAR points inside an (optionally enlarged) box."""
    local = (np.asarray(pts, dtype=np.float64)[:, :3] - np.asarray(center)) @ rot_z(yaw)
    half = np.asarray(size, dtype=np.float64) / 2 + margin
    return np.all(np.abs(local) <= half, axis=1)


def _kitti_heading(ry: float) -> np.ndarray:
    return np.array([np.cos(ry), 0.0, -np.sin(ry)])


def lidar_yaw_to_kitti_ry(yaw: float, T_rect_lidar: np.ndarray) -> float:
    d_cam = T_rect_lidar[:3, :3] @ np.array([np.cos(yaw), np.sin(yaw), 0.0])
    return float(wrap_angle(np.arctan2(-d_cam[2], d_cam[0])))


def kitti_ry_to_lidar_yaw(ry: float, T_rect_lidar: np.ndarray) -> float:
    R = T_rect_lidar[:3, :3]
    # The LiDAR heading d = (c, s, 0) must map into the vertical camera plane holding the
    # KITTI heading: its normal n = heading x y_cam, so (R^T n) . d = 0.
    n = np.cross(_kitti_heading(ry), [0.0, 1.0, 0.0])
    m = R.T @ n
    d = np.array([-m[1], m[0], 0.0])
    if (R @ d) @ _kitti_heading(ry) < 0:
        d = -d
    return float(wrap_angle(np.arctan2(d[1], d[0])))


def lidar_box_to_kitti(center, size, yaw, T_rect_lidar: np.ndarray):
    """LiDAR box -> KITTI (h, w, l), bottom centre (x, y, z) in camera-rect, rotation_y."""
    l, w, h = np.asarray(size, dtype=np.float64)
    c_cam = transform_points(T_rect_lidar, np.asarray(center, dtype=np.float64)[None])[0]
    bottom = c_cam + np.array([0.0, h / 2, 0.0])   # camera y points down
    return np.array([h, w, l]), bottom, lidar_yaw_to_kitti_ry(yaw, T_rect_lidar)


def kitti_box_to_lidar(hwl, bottom_xyz, ry, T_rect_lidar: np.ndarray):
    """KITTI (h, w, l), bottom centre, rotation_y -> LiDAR (center, (l, w, h), yaw)."""
    h, w, l = np.asarray(hwl, dtype=np.float64)
    c_cam = np.asarray(bottom_xyz, dtype=np.float64) - np.array([0.0, h / 2, 0.0])
    center = transform_points(invert_transform(T_rect_lidar), c_cam[None])[0]
    return center, np.array([l, w, h]), kitti_ry_to_lidar_yaw(ry, T_rect_lidar)


def kitti_alpha(ry: float, bottom_xyz) -> float:
    """KITTI observation angle alpha = rotation_y - atan2(x, z), wrapped to [-pi, pi)."""
    x, _, z = bottom_xyz
    return float(wrap_angle(ry - np.arctan2(x, z)))


def projected_box2d(K, T_cam_lidar, center, size, yaw, width=None, height=None):
    """2D box (x1, y1, x2, y2) of the projected 3D box, clipped to the image when its size is given;
    None when the box is entirely behind the camera."""
    corners = transform_points(T_cam_lidar, box_corners(center, size, yaw))
    front = corners[:, 2] > 0.1
    if not np.any(front):
        return None
    uv, _ = project(K, corners[front])
    box = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
    if width is not None and height is not None:
        box = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1])
    return box
