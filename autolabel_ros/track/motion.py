"""Constant-velocity Kalman filter of a car's ground-plane centre (world frame) and its smoother.

State (x, y, vx, vy); the acceleration is white noise of spectral density ``q`` (m^2/s^3), the
measured centre has isotropic noise ``r`` (m, 1 sigma). :func:`rts_smooth` runs the filter forward
over a track's observations and the Rauch-Tung-Striebel pass backward: offline, every frame's
estimate uses the whole track (past and future), which is what settles a far car's position.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])


def transition(dt: float) -> np.ndarray:
    F = np.eye(4)
    F[0, 2] = F[1, 3] = dt
    return F


def process_noise(dt: float, q: float) -> np.ndarray:
    a, b, c = dt ** 3 / 3, dt ** 2 / 2, dt
    Q = np.zeros((4, 4))
    for i in (0, 1):
        Q[i, i], Q[i, i + 2], Q[i + 2, i], Q[i + 2, i + 2] = a, b, b, c
    return q * Q


@dataclass
class MotionModel:
    q: float = 4.0               # m^2/s^3: cars change speed by a few m/s within a second
    r: float = 0.3               # m: a per-frame centre's error
    v0: float = 15.0             # m/s: prior spread of a new track's velocity (world frame)


class CVKalman:
    """One track's filter; ``x`` (4,) and ``P`` (4 x 4) after the last predict/update."""

    def __init__(self, xy: np.ndarray, model: MotionModel, r: Optional[float] = None):
        self.m = model
        self.x = np.array([xy[0], xy[1], 0.0, 0.0])
        rr = (model.r if r is None else r) ** 2
        self.P = np.diag([rr, rr, model.v0 ** 2, model.v0 ** 2])

    def predict(self, dt: float) -> None:
        F = transition(dt)
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + process_noise(dt, self.m.q)

    def innovation(self, xy: np.ndarray, r: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
        rr = (self.m.r if r is None else r) ** 2
        return np.asarray(xy)[:2] - H @ self.x, H @ self.P @ H.T + rr * np.eye(2)

    def mahalanobis(self, xy: np.ndarray, r: Optional[float] = None) -> float:
        y, S = self.innovation(xy, r)
        return float(np.sqrt(y @ np.linalg.solve(S, y)))

    def update(self, xy: np.ndarray, r: Optional[float] = None) -> None:
        y, S = self.innovation(xy, r)
        K = self.P @ H.T @ np.linalg.inv(S)
        self.x = self.x + K @ y
        self.P = (np.eye(4) - K @ H) @ self.P


def rts_smooth(times: Sequence[float], xy: Sequence[Optional[np.ndarray]], model: MotionModel,
               r: Optional[Sequence[float]] = None) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed states (N x 4) and covariances (N x 4 x 4) at ``times``; ``xy[k]`` None = no
    observation at that time (predicted only: an interpolated frame). The first entry must be observed."""
    n = len(times)
    rs = [None] * n if r is None else list(r)
    kf = CVKalman(np.asarray(xy[0]), model, rs[0])
    xf, Pf, xp, Pp = np.zeros((n, 4)), np.zeros((n, 4, 4)), np.zeros((n, 4)), np.zeros((n, 4, 4))
    for k in range(n):
        if k:
            kf.predict(times[k] - times[k - 1])
        xp[k], Pp[k] = kf.x, kf.P
        if xy[k] is not None and k:
            kf.update(np.asarray(xy[k]), rs[k])
        xf[k], Pf[k] = kf.x, kf.P
    xs, Ps = xf.copy(), Pf.copy()
    for k in range(n - 2, -1, -1):
        F = transition(times[k + 1] - times[k])
        C = Pf[k] @ F.T @ np.linalg.inv(Pp[k + 1])
        xs[k] = xf[k] + C @ (xs[k + 1] - xp[k + 1])
        Ps[k] = Pf[k] + C @ (Ps[k + 1] - Pp[k + 1]) @ C.T
    return xs, Ps
