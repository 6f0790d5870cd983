"""KITTI raw OXTS (GPS/IMU) packets: read, write, and turn into ego poses.

A packet is one text line of 30 numbers (the KITTI raw devkit's ``dataformat.txt``): lat, lon (deg),
alt (m), roll, pitch, yaw (rad; yaw 0 = east, counter-clockwise), vn, ve, vf, vl, vu (m/s), ax, ay,
az, af, al, au (m/s^2), wx, wy, wz, wf, wl, wu (rad/s), pos_accuracy, vel_accuracy (m, m/s), navstat,
numsats, posmode, velmode, orimode. A drive stores one file per frame, ``oxts/data/<frame>.txt``.

Poses follow the devkit's ``convertOxtsToPose``: a Mercator projection whose scale is fixed by the
first packet's latitude, rotation ``Rz(yaw) Ry(pitch) Rx(roll)`` of the IMU (x forward, y left,
z up), and the world origin moved to the first pose, so the first IMU pose is the identity. The
LiDAR pose is ``T_world_imu @ inv(Tr_imu_to_velo)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

EARTH_RADIUS = 6378137.0       # the devkit's value (WGS84 equatorial radius)
N_FIELDS = 30
FIELDS = ('lat', 'lon', 'alt', 'roll', 'pitch', 'yaw', 'vn', 've', 'vf', 'vl', 'vu', 'ax', 'ay', 'az',
          'af', 'al', 'au', 'wx', 'wy', 'wz', 'wf', 'wl', 'wu', 'pos_accuracy', 'vel_accuracy', 'navstat',
          'numsats', 'posmode', 'velmode', 'orimode')


class OxtsError(ValueError):
    """An OXTS file that cannot be read (names the file)."""


def _rot(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def read_oxts(path) -> np.ndarray:
    """The 30 values of one packet file; OxtsError naming the file otherwise."""
    path = Path(path)
    try:
        vals = np.array(path.read_text().split(), dtype=np.float64)
    except (OSError, ValueError) as e:
        raise OxtsError(f'{path}: not a KITTI OXTS packet ({e})') from None
    if vals.size != N_FIELDS or not np.all(np.isfinite(vals[:6])):
        raise OxtsError(f'{path}: a KITTI OXTS packet has {N_FIELDS} numbers, got {vals.size}')
    return vals


def format_oxts(values: Sequence[float]) -> str:
    v = np.asarray(values, dtype=np.float64).reshape(N_FIELDS)
    # integers for the status fields, as the recorder writes them
    return ' '.join(f'{int(x)}' if k >= 25 else f'{x:.12g}' for k, x in enumerate(v)) + '\n'


def write_oxts(path, values: Sequence[float]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_oxts(values))


def oxts_poses(packets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """T_world_imu (4 x 4) per packet, world = the first packet's IMU frame (devkit convention)."""
    if not len(packets):
        return []
    scale = np.cos(np.radians(packets[0][0]))
    poses = []
    for p in packets:
        lat, lon, alt, roll, pitch, yaw = p[:6]
        T = np.eye(4)
        T[:3, :3] = _rot(roll, pitch, yaw)
        T[:3, 3] = [scale * EARTH_RADIUS * np.radians(lon),
                    scale * EARTH_RADIUS * np.log(np.tan(np.radians(90.0 + lat) / 2.0)), alt]
        poses.append(T)
    T0inv = np.linalg.inv(poses[0])
    return [T0inv @ T for T in poses]


def pose_to_oxts(T_world_imu: np.ndarray, lat0: float, lon0: float, alt0: float = 0.0,
                 velocity: Optional[np.ndarray] = None) -> np.ndarray:
    """The packet of an IMU pose given in a local east-north-up frame whose origin lies at
    (lat0, lon0, alt0): the inverse of :func:`oxts_poses` (its first pose must be at the origin with
    yaw = roll = pitch = 0 for the round trip to be the identity). ``velocity``: world (east, north, up)."""
    T = np.asarray(T_world_imu, dtype=np.float64)
    scale = np.cos(np.radians(lat0))
    mx0 = scale * EARTH_RADIUS * np.radians(lon0)
    my0 = scale * EARTH_RADIUS * np.log(np.tan(np.radians(90.0 + lat0) / 2.0))
    mx, my = mx0 + T[0, 3], my0 + T[1, 3]
    lon = np.degrees(mx / (scale * EARTH_RADIUS))
    lat = np.degrees(2.0 * np.arctan(np.exp(my / (scale * EARTH_RADIUS)))) - 90.0
    R = T[:3, :3]
    pitch = float(np.arcsin(-np.clip(R[2, 0], -1, 1)))
    roll = float(np.arctan2(R[2, 1], R[2, 2]))
    yaw = float(np.arctan2(R[1, 0], R[0, 0]))
    v = np.zeros(N_FIELDS)
    v[:6] = [lat, lon, alt0 + T[2, 3], roll, pitch, yaw]
    if velocity is not None:
        vel = np.asarray(velocity, dtype=np.float64).reshape(3)
        body = R.T @ vel
        v[6:11] = [vel[1], vel[0], body[0], body[1], vel[2]]
    v[23:25] = [0.05, 0.02]                  # accuracies (m, m/s): an RTK fix
    v[25:30] = [4, 10, 4, 4, 6]              # navstat, numsats, posmode, velmode, orimode as in KITTI
    return v


def find_oxts_dir(root: Path) -> Optional[Path]:
    """``root/oxts/data`` when it holds packet files, else None."""
    d = Path(root) / 'oxts' / 'data'
    return d if d.is_dir() and any(d.glob('*.txt')) else None
