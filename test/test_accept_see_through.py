"""The accept model's see-through feature (fit/verify.py see_through): LiDAR rays that pass through the
lower body of a fitted car (doors, bumpers) and hit something behind it are evidence that no car is
there; rays through the window band are not (real LiDAR passes car glass)."""
from __future__ import annotations

import numpy as np

from autolabel_ros.fit.verify import (ACCEPT_FEATURES, SEE_THROUGH_CAP, accept_features, right_probability,
                                      see_through)

# a car 10 m ahead of the sensor (LiDAR frame, sensor at the origin 1.7 m above the road), 4.2 x 1.8 x 1.5 m
GROUND = -1.7
BOX = np.array([10.0, 0.0, GROUND + 0.75, 4.2, 1.8, 1.5, 0.0])


def _rays(height_at_car: float, end_x: float, n: int = 20) -> np.ndarray:
    """Returns at ``end_x`` on rays that cross the car's centre plane (x = 10) at ``height_at_car`` above
    the road, spread over +-0.3 m across."""
    y = np.linspace(-0.3, 0.3, n)
    s = end_x / 10.0
    return np.stack([np.full(n, end_x), y * s, np.full(n, (GROUND + height_at_car) * s)], 1)


def test_rays_through_the_doors_count_and_rays_through_the_windows_do_not():
    door, window = 0.6, 1.2                            # heights at the car: door panel, side window
    wall = 14.0                                        # something behind the car
    stopped = _rays(door, 7.95)                        # the car's near face stops its door-level rays
    # a solid car: every door-level ray ends on it
    assert see_through(stopped, BOX) == 0.0
    # a see-through object (a cyclist's frame, a hedge, background): they reach the wall behind it
    assert see_through(_rays(door, wall), BOX) == 1.0
    half = np.concatenate([stopped[::2], _rays(door, wall)[1::2]])
    assert abs(see_through(half, BOX) - 0.5) < 1e-9
    # a real car seen through its windows (the simulator's glass would stop these): no evidence against it
    assert see_through(np.concatenate([stopped, _rays(window, wall)]), BOX) == 0.0
    # a ray that comes down through the near window onto the inside of the far door (0.7 m up, 2 m behind
    # the car's centre) entered the body from above: not counted
    far_door = np.stack([np.full(20, 12.0), np.linspace(-0.3, 0.3, 20), np.full(20, GROUND + 0.7)], 1)
    assert see_through(np.concatenate([stopped, far_door]), BOX) == 0.0
    # a return within SEE_BEYOND of where the ray leaves the body (shrunk by SEE_MARGIN) is not past it
    assert see_through(_rays(door, 11.75), BOX) == 0.0
    # rays that pass beside the box (the slack within SEE_MARGIN of its sides) say nothing
    beside = _rays(door, wall) + np.array([0.0, 1.4 * 0.85, 0.0])
    assert see_through(beside, BOX) == 0.0


def test_few_rays_and_no_scan_read_low():
    # two rays that pass: at least SEE_MIN_RAYS make the share's denominator
    assert 0.0 < see_through(_rays(0.6, 14.0, n=2), BOX) < 1.0
    assert see_through(np.zeros((0, 3)), BOX) == 0.0
    assert see_through(_rays(0.6, 14.0), np.full(7, np.nan)) == 0.0


def test_see_through_lowers_the_probability_up_to_its_cap():
    assert ACCEPT_FEATURES[-1] == 'see_through'
    base = dict(mask_iou=0.8, surface_ratio=0.9, n_points=60, range_m=25.0, heading_logit=1.0,
                occluded_share=0.1, energy=0.15, length_cover=0.6, width_cover=0.6,
                terms={'shape': 0.3, 'scale': 0.003})
    p = [right_probability(accept_features(**base, see_through=s))
         for s in (0.0, SEE_THROUGH_CAP / 2, SEE_THROUGH_CAP, 1.0)]
    assert p[0] > p[1] > p[2] and abs(p[2] - p[3]) < 1e-12
    # near the accept threshold (0.7), a label the model accepts when no ray passes through its body is
    # rejected when they do: some mask IoU of the same label flips the decision (the drop is not tiny)
    flips = [m for m in np.linspace(0.3, 1.0, 71)
             if right_probability(accept_features(**dict(base, mask_iou=m), see_through=0.0)) >= 0.7
             > right_probability(accept_features(**dict(base, mask_iou=m), see_through=SEE_THROUGH_CAP))]
    assert flips
