"""Occlusion-aware lifting (fit/occlusion.py, fit/lift.py): a partly hidden car keeps its own evidence."""
from __future__ import annotations

import numpy as np
import pytest

from autolabel_ros.core.types import Prompt
from autolabel_ros.fit.ground import GroundPlane
from autolabel_ros.fit.lift import occlusion_maps
from autolabel_ros.fit.occlusion import (ambiguous, claim_of, depth_order, ground_contact_depth,
                                         on_nearer_object, own_points)


# ------------------------------------------------------------------------------ the evidence split
def _scan(H=40, W=60):
    """Points with pixels and camera depths: a near car (depth 10-11.5) over columns 10-29 and a far
    car (depth 25-26) over columns 20-49, the far one hidden behind the near one on columns 20-29,
    where the LiDAR still sees a few of its points over the near car (parallax)."""
    uv, depth = [], []
    for u in range(10, 30):
        for v in range(10, 30, 4):
            uv.append((u, v))
            depth.append(10.0 + 1.5 * (u - 10) / 20)
    for u in range(20, 50):
        for v in range(5, 25, 4):
            if u >= 30 or v < 8:           # visible over / beside the near car
                uv.append((u, v))
                depth.append(25.0 + (u - 20) / 30)
    return np.array(uv, np.int64), np.array(depth), (H, W)


def test_points_of_a_nearer_object_are_never_the_hidden_objects():
    uv, depth, (H, W) = _scan()
    near_mask = np.zeros((H, W), bool)
    near_mask[8:32, 10:30] = True
    leaky = np.zeros((H, W), bool)           # the far car's mask spilled over the near car
    leaky[3:32, 18:50] = True
    idx_all = np.arange(len(uv))
    in_far = np.flatnonzero(leaky[uv[:, 1], uv[:, 0]])
    near_pts = np.flatnonzero(depth < 20)
    # the near car kept only a fragment of its points in its cluster: the mask pixels take the rest
    claim = claim_of(near_pts[::3], depth, near_mask, mean_width=1.6)
    keep = own_points(in_far, depth, uv, [claim])
    assert np.all(depth[in_far[keep]] > 20)                          # none of the near car's
    far_own = np.flatnonzero((depth > 20) & leaky[uv[:, 1], uv[:, 0]])
    assert set(in_far[keep]) == set(far_own)                         # all of its own, parallax ones too
    assert own_points(idx_all, depth, uv, []).all()                  # nothing nearer: all kept
    # a nearer object without points claims nothing by its pixels
    empty = claim_of(np.zeros(0, np.int64), depth, near_mask, mean_width=1.6)
    assert empty.far_depth is None and own_points(in_far, depth, uv, [empty]).all()


def test_depth_order_from_the_box_bottoms():
    K = np.array([[700.0, 0, 600], [0, 700.0, 180], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]])     # LiDAR x forward -> camera z
    ground = GroundPlane(0.0, 0.0, -1.7)                            # road 1.7 m below the sensor
    # a box whose bottom edge is at row 180 + 700 * 1.7 / d stands at camera depth d
    for d in (8.0, 20.0, 45.0):
        box = [560, 150, 640, 180 + 700 * 1.7 / d]
        assert ground_contact_depth(K, T, ground, box) == pytest.approx(d, rel=1e-6)
    assert ground_contact_depth(K, T, ground, [560, 100, 640, 170]) is None     # above the horizon
    assert ground_contact_depth(K, T, None, [560, 150, 640, 230]) is None
    assert list(depth_order([30.0, 9.0, 30.0, 12.0])) == [2, 0, 3, 1]          # stable on ties


def test_ambiguous_evidence():
    assert not ambiguous(0, 3, 30.0, 30.0)             # nothing went to a nearer object
    assert ambiguous(40, 4, 30.0, 30.0)                # hidden, and few points left
    assert ambiguous(40, 60, 18.0, 30.0)               # hidden, points far nearer than the box says
    assert not ambiguous(40, 60, 28.0, 30.0)           # hidden, but its points agree with its box
    assert not ambiguous(40, 60, 18.0, None)           # cut box: no depth cue to disagree with


def test_box_placement_stands_behind_the_near_side():
    from autolabel_ros.fit.init import box_placement, init_object
    ground = GroundPlane(0.0, 0.0, -1.7)
    size = np.array([4.0, 1.6, 1.5])
    xyz, yaw = box_placement(np.zeros(3), np.array([1.0, 0.0, 0.0]), 20.0, size, 4, ground)
    assert np.allclose(yaw, np.radians([0, 90, 180, 270]))
    assert np.allclose(xyz[:, 0], [22.0, 20.8, 22.0, 20.8]) and np.allclose(xyz[:, 1], 0.0)
    assert np.allclose(xyz[:, 2], -1.7 + 0.75)
    # an ambiguous object keeps its points' hypotheses and adds the box's
    pts = np.array([[12.0, 0.1 * k, -1.0] for k in range(-5, 6)])
    kw = dict(box_center_ray=np.array([1.0, 0.0, 0.0]), cam_origin=np.zeros(3), box_depth=20.0)
    plain = init_object(pts, len(pts), 12.0, ground, size, 4, **kw)
    both = init_object(pts, len(pts), 12.0, ground, size, 4, ambiguous=True, **kw)
    assert len(plain.yaw) == 4 and len(both.yaw) == 8
    assert np.allclose(both.xyz[:4], plain.xyz) and np.allclose(both.xyz[4:], xyz)


def test_amodal_box_bounds_the_occlusion_map():
    H, W = 30, 40
    near, far = np.zeros((H, W), bool), np.zeros((H, W), bool)
    near[10:30, 0:25] = True
    far[5:15, 15:35] = True
    maps = occlusion_maps([near, far], [8.0, 25.0], [None, None], (H, W), [None, [15, 5, 35, 20]])
    assert not maps[0].any()
    hidden = maps[1]
    assert hidden[12, 20] and hidden[19, 20]            # the nearer car inside the far car's box
    assert not hidden[25, 20] and not hidden[12, 5]     # outside it: known not to be the far car
    free = occlusion_maps([near, far], [8.0, 25.0], [None, None], (H, W))
    assert np.array_equal(free[1], near)                # no amodal box: the whole nearer mask


def test_a_box_on_a_nearer_cars_box_is_found():
    H, W = 30, 40
    m1, m2, m3 = (np.zeros((H, W), bool) for _ in range(3))
    m1[10:30, 0:25] = True
    m2[5:15, 15:35] = True
    m3[0:5, 36:40] = True
    size = np.array([4.0, 1.7, 1.5])
    near = (np.array([10.0, 0.0, -0.9]), size, 0.0)
    on_it = (np.array([11.0, 0.3, -0.9]), size, 0.1)          # the hidden car's label on the near car
    own = (np.array([20.0, 0.8, -0.9]), size, 0.0)            # at its own depth
    assert on_nearer_object([near, on_it, own], [m1, m2, m3], [9.0, 20.0, 19.0]) == [None, 0, None]
    assert on_nearer_object([near, own], [m1, m2], [9.0, 20.0]) == [None, None]
    # masks apart: not hidden by it, whatever the boxes say
    assert on_nearer_object([near, on_it], [m1, m3], [9.0, 20.0]) == [None, None]


# ------------------------------------------------------------------------- a half hidden car
@pytest.fixture(scope='module')
def two_cars():
    """A car 23 m ahead, two thirds hidden behind one 17 m ahead in the ego lane (simulator, 64 beams)."""
    from autolabel_ros.sim.drive import Simulator
    sim = Simulator(7, n_cars=2, clutter=False, shadows=False)
    near, far = sim.scene.cars
    near.x, near.y, near.yaw, near.speed = 17.0, -0.3, 0.05, 0.0
    far.x, far.y, far.yaw, far.speed = 23.0, 0.2, -0.05, 0.0
    sf = sim.frame(0)
    assert [g.occlusion for g in sf.gt] == [0, 2] and sf.gt[1].metrics['visible_frac'] < 0.6
    return sf


def _label_depth_errors(sf, masks):
    from autolabel_ros.config import AutolabelConfig
    from autolabel_ros.pipeline import Autolabeler
    prompts = [Prompt(id=g.id, box=g.box2d, cls='Car', sources=('gt',)) for g in sf.gt]
    res = Autolabeler(AutolabelConfig()).label(sf.frame, prompts, masks)
    cam = np.linalg.inv(sf.frame.T_cam_lidar)[:3, 3]
    errs = [float(np.linalg.norm(lab.center - cam) - np.linalg.norm(g.center - cam))
            for lab, g in zip(res.labels, sf.gt)]
    return errs, res.labels


def test_half_hidden_car_comes_out_at_its_own_depth(two_cars):
    """The hidden car's mask spills over the car in front (as SAM's does when the box holds both):
    its frustum points are then mostly the nearer car's, and the label must still sit on its own car.
    (Before the evidence split, its box landed on the nearer car, ~ -6 m.)"""
    sf = two_cars
    near_id, far_id = (g.id for g in sf.gt)
    near_mask = sf.masks == near_id
    x1, y1, x2, y2 = sf.gt[1].box2d.astype(int)
    in_box = np.zeros_like(near_mask)
    in_box[y1:y2, x1:x2] = True
    leaky = (sf.masks == far_id) | (near_mask & in_box)
    errs, labels = _label_depth_errors(sf, [near_mask, leaky])
    assert abs(errs[0]) < 1.0, errs
    assert abs(errs[1]) < 1.0, errs
    assert 'on_nearer_object' not in labels[1].reasons
    assert labels[1].metrics['n_points'] >= 10
