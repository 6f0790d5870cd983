"""benchmarks/length_evidence.py: which end of a car is its far end, the scan points on it, whether the
mask reaches it, the view, and the bias table over those buckets."""
import numpy as np
import pytest

from benchmarks.length_evidence import (FAR_M, MIN_REGION, _hull_mask, far_points, far_sign_of, mask_far,
                                        table, view_of)

# LiDAR x forward, y left, z up -> camera x right, y down, z forward
T = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
K = np.array([[700.0, 0, 620], [0, 700, 190], [0, 0, 1]])
SHAPE = (375, 1242)
SIZE = (4.5, 1.8, 1.5)


def test_far_end_is_the_end_away_from_the_sensor():
    assert far_sign_of((15.0, 0.0, 0.0), 0.0) == 1.0
    assert far_sign_of((15.0, 0.0, 0.0), np.pi) == -1.0
    assert far_sign_of((0.0, -12.0, 0.0), np.pi / 2) == -1.0


def test_far_points_counts_the_far_face_only():
    c = np.array([15.0, 0.0, 0.8])
    far = np.array([[15 + 2.25 - 0.1, 0.3, 0.9], [15 + 2.25 + 0.2, -0.5, 1.2], [15 + 2.25, 0.0, 0.6]])
    near = np.array([[15 - 2.25, 0.0, 0.9], [15 - 2.25 + 0.1, 0.4, 1.0]])
    road = np.array([[15 + 2.25, 0.0, 0.1]])                   # the lowest 0.3 m of the box: the road
    side = np.array([[15 + 2.25, 0.9 + 0.5, 0.9]])             # past the side by more than SIDE_M
    beyond = np.array([[15 + 2.25 + FAR_M + 0.05, 0.0, 0.9]])
    pts = np.vstack([far, near, road, side, beyond])
    assert far_points(pts, c, SIZE, 0.0) == 3
    # the same car heading towards the sensor: the far end is still the one at x = 17.25
    assert far_points(pts, c, SIZE, np.pi) == 3
    assert far_points(np.zeros((0, 3)), c, SIZE, 0.0) == 0
    assert far_points(pts, c, SIZE, 0.0, near=True) == 2


def test_view_side_on_end_on_oblique():
    assert view_of((15.0, 0.0, 0.0), 0.0) == 'end-on'
    assert view_of((15.0, 0.0, 0.0), np.pi / 2) == 'side-on'
    assert view_of((15.0, 0.0, 0.0), np.pi / 4) == 'oblique'


def test_mask_far_sees_a_side_on_car_end_and_not_a_short_mask():
    c, yaw = (15.0, 0.0, -0.9), np.pi / 2 + 0.3          # nearly side-on, one end farther
    full = _hull_mask(c, SIZE, yaw, K, T, SHAPE)
    region, cover = mask_far(full, c, SIZE, yaw, K, T)
    assert region > MIN_REGION and cover == pytest.approx(1.0)
    sign = far_sign_of(c, yaw)
    shift = -sign * 0.5 / 2 * np.array([np.cos(yaw), np.sin(yaw), 0.0])
    short = _hull_mask(np.asarray(c) + shift, (SIZE[0] - 0.5, SIZE[1], SIZE[2]), yaw, K, T, SHAPE)
    assert mask_far(short, c, SIZE, yaw, K, T)[1] < 0.05
    # end-on, the far end hides behind the near one: its region is a sliver
    assert mask_far(_hull_mask((25.0, 0, -0.9), SIZE, 0.0, K, T, SHAPE), (25.0, 0, -0.9), SIZE, 0.0,
                    K, T)[0] < MIN_REGION


def _row(dl, scan_far, fit_far, view='end-on', flipped=False, depth_err=0.0):
    return dict(dl=dl, dw=0.0, gt_l=4.5, fit_extent=3.0, scan_far=scan_far, fit_far=fit_far,
                scan_far_img=scan_far, scan_near_img=scan_far, truncated=0.0, mask_region=0.0,
                mask_cover=0.0, view=view, hidden=0.0, flipped=flipped, depth_err=depth_err)


def test_table_buckets_and_leaves_out_misplaced_cars():
    rows = [_row(-0.2, 5, 5, 'side-on'), _row(-0.4, 5, 0), _row(-0.8, 0, 0), _row(-3.0, 5, 5, flipped=True),
            _row(-3.0, 0, 0, depth_err=2.0)]
    t = {line.split('|')[1].strip(): line.split('|')[2:4] for line in table(rows)[2:]}
    assert t['all placed right'] == [' 3 ', ' -0.47 ']
    assert t['scan sees far end'] == [' 2 ', ' -0.30 ']
    assert t['scan sees, fit points do not (lift cut)'] == [' 1 ', ' -0.40 ']
    assert t['side-on'] == [' 1 ', ' -0.20 ']
    assert t['neither sees it'] == [' 1 ', ' -0.80 ']
