"""A car cut by the image border keeps its scan beyond the border (fit/truncation.py)."""
from __future__ import annotations

import numpy as np
import pytest

from autolabel_ros.core.geometry import project, transform_points
from autolabel_ros.core.types import Prompt
from autolabel_ros.fit.truncation import beyond_border, beyond_masks, border_sides

MEAN = np.array([3.9, 1.6, 1.5])


def test_border_sides_of_a_box():
    assert border_sides([0, 180, 240, 374], 1242, 375) == ('left', 'bottom')
    assert border_sides([930, 185, 1241, 300], 1242, 375) == ('right',)
    assert border_sides([400, 150, 600, 250], 1242, 375) == ()


def test_beyond_masks_sides_and_behind_the_camera():
    K = np.array([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]])
    pc = np.array([[-5.0, 0, 4], [5, 0, 4], [0, 3, 4], [-1, 0, -2], [1, 0, -2], [0, 0, 4]])
    uv, _ = project(K, pc)
    b = beyond_masks(uv, pc, 1200, 360)
    assert b['left'].tolist() == [True, False, False, True, False, False]
    assert b['right'].tolist() == [False, True, False, False, True, False]
    assert b['bottom'].tolist() == [False, False, True, False, False, False]


def _grid(x0, x1, y0, y1, step=0.2, z=-1.0):
    xs, ys = np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step))
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], 1)


def test_growth_stops_at_what_is_not_car_sized():
    seed = _grid(6.0, 7.0, 4.0, 5.6)                 # the in-image end of a car
    rest = _grid(3.0, 6.0, 4.0, 5.6)                 # its rest beyond the border
    far = _grid(3.0, 6.0, 9.0, 10.0)                 # another object, not connected
    xyz = np.concatenate([seed, rest, far])
    s = np.arange(len(seed))
    cand = np.arange(len(seed), len(xyz))
    added = beyond_border(s, cand, xyz, None, 0.6, MEAN)
    assert set(added) == set(range(len(seed), len(seed) + len(rest)))
    # a wall along the car, joined to it: larger than a car, nothing is added
    wall = _grid(-8.0, 6.0, 5.6, 5.8)
    xyz = np.concatenate([seed, rest, wall])
    added = beyond_border(s, np.arange(len(seed), len(xyz)), xyz, None, 0.6, MEAN)
    assert len(added) == 0


@pytest.fixture(scope='module')
def cut_car():
    """A car parked 6 m ahead at the right, 60 % of it beyond the image's right border (64 beams)."""
    from autolabel_ros.sim.drive import Simulator
    sim = Simulator(7, n_cars=1, clutter=False, shadows=False)
    car = sim.scene.cars[0]
    car.x, car.y, car.yaw, car.speed = 6.0, -4.5, 0.3, 0.0
    sf = sim.frame(0)
    assert sf.gt[0].truncation > 0.5
    return sf


def _label(sf, on: bool):
    from autolabel_ros.config import AutolabelConfig
    from autolabel_ros.pipeline import Autolabeler
    g = sf.gt[0]
    cfg = AutolabelConfig()
    cfg.fit.truncated_scan = on
    prompts = [Prompt(id=g.id, box=g.box2d, cls='Car', sources=('gt',))]
    return Autolabeler(cfg).label(sf.frame, prompts, [sf.masks == g.id]).labels[0]


def test_lift_takes_the_scan_beyond_the_border(cut_car):
    from autolabel_ros.config import AutolabelConfig
    from autolabel_ros.fit.lift import lift
    sf = cut_car
    g = sf.gt[0]
    prompts = [Prompt(id=g.id, box=g.box2d, cls='Car', sources=('gt',))]
    ev = lift(sf.frame, prompts, [g.box2d], [sf.masks == g.id], AutolabelConfig(), MEAN).objects[0]
    assert ev.in_image is not None and len(ev.in_image) == len(ev.points)
    out = ev.points[~ev.in_image]
    uv, z = project(sf.frame.K, transform_points(sf.frame.T_cam_lidar, out))
    assert len(out) > 50 and np.all((z <= 0.5) | (uv[:, 0] >= sf.frame.width))
    # every kept point is a return off the car (the simulator knows which car each return hit)
    from scipy.spatial import cKDTree
    xyz = sf.frame.xyz.astype(np.float64)
    d, j = cKDTree(xyz).query(ev.points)
    assert np.all(d < 1e-9) and np.mean(sf.point_instance[j] == g.id) > 0.98
    # the kept points now span most of the car's length, not only its in-image end
    ax = np.array([np.cos(g.yaw), np.sin(g.yaw)])
    along = (ev.points[:, :2] - g.center[:2]) @ ax
    seen = along[ev.in_image]
    assert np.ptp(along) > max(0.85 * g.size[0], np.ptp(seen) + 0.5), (np.ptp(along), np.ptp(seen))


def _right_heading_centre(lab, yaw: float) -> np.ndarray:
    """Centre of the label's surviving hypothesis nearest the true heading (the placement the scan gives,
    whichever end the heading choice then takes)."""
    alts = lab.metrics['alternatives']
    best = max(alts, key=lambda a: np.cos(a['pose'][3] - yaw))
    return np.asarray(best['pose'][:2], float)


def test_fitted_centre_nearer_the_truth_with_the_scan_beyond(cut_car):
    g = cut_car.gt[0]
    errs = {on: float(np.linalg.norm(_right_heading_centre(_label(cut_car, on), g.yaw) - g.center[:2]))
            for on in (False, True)}
    # measured: 0.28 m in-image points only, 0.06 m with the scan beyond the border. (The heading choice
    # on this car, 60 % beyond the border, takes the flip with the calibration of 2026-12-01: the profile
    # cue reads the in-image end backwards; on the benchmark sets 1 of 45 truncated cars flips.)
    assert errs[True] < 0.15 and errs[True] < errs[False] - 0.1, errs
