"""The benchmark's 'accepted labels on no car' count (benchmarks/no_gt.py match): a label on a cyclist is
on no car, one on a Van or inside a DontCare region is neither right nor wrong; and per_car.py's test of
whether the scan sees a car's length."""
from __future__ import annotations

import numpy as np

from benchmarks.no_gt import false_kind, match
from benchmarks.per_car import SEEN_SHARE, seen_length


def _gt(kind: str, box, counted: bool = False, ignored: bool = False) -> dict:
    return {'type': kind, 'box': np.asarray(box, float), 'depth': 20.0, 'n_points': 50,
            'counted': counted, 'ignored': ignored}


def test_a_label_on_a_cyclist_is_on_no_car():
    # 000134-like: the label's box overlaps a cyclist by IoU 0.74 and a car behind it only a little
    gts = [_gt('Cyclist', (994, 138, 1070, 203)), _gt('Car', (1028, 152, 1157, 186), counted=True)]
    res, found = match([np.array([999.0, 147, 1073, 201])], gts)
    assert res.tolist() == [-1] and not found.any()


def test_car_van_and_dontcare_are_counted_as_the_benchmark_says():
    gts = [_gt('Car', (100, 100, 200, 160), counted=True), _gt('Van', (300, 100, 420, 170), ignored=True),
           _gt('DontCare', (600, 100, 700, 140), ignored=True), _gt('Pedestrian', (800, 90, 830, 170))]
    boxes = [np.array([102.0, 101, 198, 161]),      # the car: found
             np.array([305.0, 102, 418, 168]),      # a Van: neither right nor wrong
             np.array([610.0, 105, 650, 135]),      # inside the DontCare region
             np.array([798.0, 92, 832, 168]),       # a pedestrian: on no car
             np.array([900.0, 100, 960, 150])]      # background
    res, found = match(boxes, gts)
    assert res.tolist() == [1, 0, 0, -1, -1]
    assert found.tolist() == [True, True, False, False]


def test_seen_length_tells_a_car_seen_along_its_side_from_one_seen_end_on():
    rng = np.random.default_rng(0)
    L, W, H = 4.6, 1.9, 1.5
    side = np.c_[rng.uniform(-L / 2, L / 2, 400), np.full(400, -W / 2), rng.uniform(-0.4, H / 2, 400)]
    rear = np.c_[np.full(200, -L / 2), rng.uniform(-W / 2, W / 2, 200), rng.uniform(-0.4, H / 2, 200)]
    ground = np.c_[rng.uniform(-4, 4, 300), rng.uniform(-3, 3, 300), np.full(300, -H / 2)]
    c = np.array([20.0, 3.0, H / 2])
    yaw = 0.3
    R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    world = lambda p: p @ R.T + c  # noqa: E731
    assert seen_length(world(np.r_[side, rear, ground]), c, (L, W, H), yaw) > 0.95
    assert seen_length(world(np.r_[rear, ground]), c, (L, W, H), yaw) < 0.2 < SEEN_SHARE
    assert seen_length(world(ground), c, (L, W, H), yaw) == 0.0


def test_a_false_prompt_on_the_background_beside_a_found_car_is_no_duplicate_of_it():
    # 000008-like: a fence 18 m behind a found car, its box mostly inside the car's box
    car = _gt('Car', (598, 176, 721, 261), counted=True)       # at 20 m (_gt)
    found = np.array([True])
    box = np.array([689.0, 171, 725, 212])
    assert false_kind(box, [car], found) == 'duplicate'                 # no depth: as before
    assert false_kind(box, [car], found, depth=21.5) == 'duplicate'     # a second box of the same car
    assert false_kind(box, [car], found, depth=38.0) == 'clutter behind a car'
    assert false_kind(box, [car], np.array([False]), depth=10.0) == 'clutter before a car'
