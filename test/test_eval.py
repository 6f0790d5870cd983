"""The KITTI Car evaluator: hand-computed IoUs, AP R40 on hand-made rankings, the ignore rules."""
import json
import math
import warnings

import numpy as np
import pytest
import shapely

from autolabel_ros.core.geometry import kitti_box_to_lidar
from autolabel_ros.eval import Boxes, ap_r40, box2d_overlap, evaluate, format_table, iou3d_lidar, iou_matrix
from autolabel_ros.io.kitti import KittiObject, write_label_file
from autolabel_ros.cli.eval import main as eval_main

AP_KEYS = ('3D@0.5', '3D@0.7', 'BEV@0.5', 'BEV@0.7', 'NS@0.5m', 'NS@1.0m')
DIFFS = ('easy', 'moderate', 'hard')


def _iou(a, b):
    """(BEV, 3D) IoU of two KITTI boxes (x, y, z bottom centre, h, w, l, ry)."""
    bev, d3 = iou_matrix(Boxes.from_kitti(a), Boxes.from_kitti(b))
    return bev[0, 0], d3[0, 0]


# ---------------------------------------------------------------------------------------------- IoU

def test_iou_shift_along_length_uses_the_kitti_heading():
    # Two 4 x 2 x 1.5 boxes (l x w x h), the second shifted 1 m along its heading:
    # overlap 3 x 2 x 1.5 = 9, union 12 + 12 - 9 = 15 -> 3/5 in BEV and 3D.
    for ry in (0.0, 0.8, -2.0):
        a = [5.0, 1.7, 20.0, 1.5, 2.0, 4.0, ry]
        b = [5.0 + np.cos(ry), 1.7, 20.0 - np.sin(ry), 1.5, 2.0, 4.0, ry]   # heading = (cos ry, -sin ry)
        np.testing.assert_allclose(_iou(a, b), [0.6, 0.6], atol=1e-9)
        # shifted 1 m sideways instead: overlap 4 x 1, union 8 + 8 - 4 -> 1/3
        c = [5.0 + np.sin(ry), 1.7, 20.0 + np.cos(ry), 1.5, 2.0, 4.0, ry]
        np.testing.assert_allclose(_iou(a, c), [1 / 3, 1 / 3], atol=1e-9)


def test_iou_scaled_vertical_and_disjoint():
    a = [0.0, 1.7, 10.0, 1.5, 2.0, 4.0, 0.3]
    b = [0.0, 1.7, 10.0, 3.0, 4.0, 8.0, 0.3]   # all sizes doubled, same bottom centre
    np.testing.assert_allclose(_iou(a, b), [8 / 32, 12 / 96], atol=1e-9)
    c = [0.0, 1.2, 10.0, 1.5, 2.0, 4.0, 0.3]   # lifted 0.5 m (y down): height overlap 1.0
    np.testing.assert_allclose(_iou(a, c), [1.0, 8 / (12 + 12 - 8)], atol=1e-9)
    d = [0.0, 1.7, 30.0, 1.5, 2.0, 4.0, 0.3]
    assert _iou(a, d) == (0.0, 0.0)


def test_iou_rotated_90_and_45_degrees():
    sq = [0.0, 1.0, 10.0, 1.0, 2.0, 2.0, 0.2]
    np.testing.assert_allclose(_iou(sq, sq[:6] + [0.2 + np.pi / 2]), [1.0, 1.0], atol=1e-9)
    rect = [0.0, 1.0, 10.0, 1.0, 2.0, 4.0, 0.2]
    # 4 x 2 against itself turned 90 deg: overlap 2 x 2 = 4, union 8 + 8 - 4 -> 1/3
    np.testing.assert_allclose(_iou(rect, rect[:6] + [0.2 + np.pi / 2]), [1 / 3, 1 / 3], atol=1e-9)
    # 2 x 2 square against itself turned 45 deg: the overlap is a regular octagon with inradius 1,
    # area 8 tan(22.5 deg) = 8 (sqrt 2 - 1); union 8 - that -> IoU = 1 / sqrt 2.
    expect = 8 * (math.sqrt(2) - 1) / (8 - 8 * (math.sqrt(2) - 1))
    assert expect == pytest.approx(1 / math.sqrt(2))
    np.testing.assert_allclose(_iou(sq, sq[:6] + [0.2 + np.pi / 4]), [expect, expect], atol=1e-9)
    # the LiDAR-frame front end agrees (x, y, z centre, l, w, h, yaw)
    assert iou3d_lidar([3, 1, 0, 2, 2, 1, 0.5], [3, 1, 0, 2, 2, 1, 0.5 + np.pi / 4]) == pytest.approx(expect)
    assert iou3d_lidar([3, 1, 0, 4, 2, 1.5, 0.5], [3 + np.cos(0.5), 1 + np.sin(0.5), 0, 4, 2, 1.5, 0.5]) \
        == pytest.approx(0.6)


def test_iou_matrix_matches_direct_shapely_and_lidar_frame():
    rng = np.random.default_rng(0)
    n = 60
    boxes = np.column_stack([rng.uniform(-8, 8, n), rng.uniform(1.0, 2.0, n), rng.uniform(5, 20, n),
                             rng.uniform(1.2, 2, n), rng.uniform(1.4, 2, n), rng.uniform(3, 5, n),
                             rng.uniform(-np.pi, np.pi, n)])
    bev, d3 = iou_matrix(Boxes.from_kitti(boxes), Boxes.from_kitti(boxes))
    assert (bev > 0).sum() > n   # some real overlaps besides the diagonal
    polys = shapely.polygons(Boxes.from_kitti(boxes).corners)
    for i in range(0, n, 7):
        for j in range(n):
            inter = polys[i].intersection(polys[j]).area
            assert bev[i, j] == pytest.approx(inter / (polys[i].area + polys[j].area - inter), abs=1e-9)
    # the same boxes expressed in a LiDAR frame give the same IoUs
    T = np.array([[0.0, -1, 0, 0.3], [0, 0, -1, -0.1], [1, 0, 0, -0.2], [0, 0, 0, 1]])
    lid = np.array([np.concatenate([c, s, [y]]) for c, s, y in
                    (kitti_box_to_lidar(b[3:6], b[:3], b[6], T) for b in boxes)])
    bev_l, d3_l = iou_matrix(Boxes.from_lidar(lid), Boxes.from_lidar(lid))
    np.testing.assert_allclose(bev_l, bev, atol=1e-9)
    np.testing.assert_allclose(d3_l, d3, atol=1e-9)


def test_box2d_overlap():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [0, 0, 100, 100]]
    np.testing.assert_allclose(box2d_overlap(a, b), [[50 / 150, 100 / 10000]])
    np.testing.assert_allclose(box2d_overlap(a, b, 'a'), [[0.5, 1.0]])


# ---------------------------------------------------------------------------------------------- AP

def test_ap_r40_hand_made_ranking():
    # 4 counted cars; ranking TP .9, FP .8, TP .7, TP .6, FP .5 (one car never found).
    # Curve: (r, p) = (1/4, 1), (1/4, 1/2), (2/4, 2/3), (3/4, 3/4), (3/4, 3/5).
    # Interpolated precision: r in 1/40..10/40 -> 1; 11/40..30/40 -> 3/4; 31/40..40/40 -> 0.
    # AP = (10 * 1 + 20 * 0.75) / 40 = 62.5
    s = [0.9, 0.8, 0.7, 0.6, 0.5]
    tp = [1, 0, 1, 1, 0]
    assert ap_r40(s, tp, [1 - t for t in tp], [0] * 5, 4) == pytest.approx(62.5)
    assert ap_r40(s[::-1], tp[::-1], [1 - t for t in tp[::-1]], [0] * 5, 4) == pytest.approx(62.5)
    assert ap_r40([0.3] * 3, [1] * 3, [0] * 3, [0] * 3, 3) == pytest.approx(100.0)
    assert ap_r40([], [], [], [], 3) == 0.0
    assert math.isnan(ap_r40([], [], [], [], 0))
    # a ground truth removed from the count (matched only by an ignored detection): 2 of 3 -> 100
    assert ap_r40([0.9, 0.8, 0.7], [1, 0, 1], [0, 0, 0], [0, 1, 0], 3) == pytest.approx(100.0)


def car(x, z, score=None, ry=0.0, typ='Car', h2d=60.0, occ=0, trunc=0.0, bbox=None, y=1.7):
    """A KITTI object; its 2D box sits at a distinct place per x unless given."""
    if bbox is None:
        u = 600 + 30 * x
        bbox = [u, 150, u + 50, 150 + h2d]
    return KittiObject(typ, trunc, occ, 0.0, bbox, [1.5, 1.6, 3.9], [x, y, z], ry, score)


def _write(root, frames: dict):
    root.mkdir(parents=True, exist_ok=True)
    for fid, objs in frames.items():
        write_label_file(root / f'{fid}.txt', objs)
    return root


def _eval(tmp_path, gt: dict, pred: dict, **kw):
    return evaluate(_write(tmp_path / 'gt', gt), _write(tmp_path / 'pred', pred), **kw)


def _all(result, value, keys=AP_KEYS, diffs=DIFFS):
    got = {(k, d): result[k][d] for k in keys for d in diffs}
    assert all(v == pytest.approx(value) for v in got.values()), got


def test_hand_made_ranking_end_to_end(tmp_path):
    # same ranking as test_ap_r40_hand_made_ranking, spread over two images
    gt = {'000001': [car(-5, 10), car(5, 12)], '000002': [car(-5, 15), car(5, 20)]}
    pred = {'000001': [car(-5, 10, 0.9), car(0, 60, 0.8), car(5, 12, 0.7)],
            '000002': [car(-5, 15, 0.6), car(9, 40, 0.5)]}
    r = _eval(tmp_path, gt, pred)
    _all(r, 62.5)
    assert r['n_gt'] == 4 and r['n_det'] == 5 and r['n_matched'] == 3
    assert r['mean_iou3d'] == pytest.approx(1.0) and r['median_yaw_err_deg'] == 0 and r['flip_rate'] == 0


def _generated_gt():
    return {
        '000000': [car(-6, 8), car(0, 15, h2d=35), car(6, 25, occ=1), car(3, 30, occ=2),
                   car(-3, 35, trunc=0.4), car(9, 50, h2d=15), car(-9, 40, typ='Van'),
                   car(0, 7, typ='Pedestrian'), car(0, 0, typ='DontCare', bbox=[10, 10, 50, 40], y=-1000)],
        '000001': [car(2, 12, ry=1.2), car(2, 17, ry=-2.5, trunc=0.7)],
        '000002': [],
    }


def test_generated_ground_truth_against_itself_is_100(tmp_path):
    gt = _generated_gt()
    r = _eval(tmp_path, gt, gt)
    _all(r, 100.0)
    assert r['mean_iou3d'] == pytest.approx(1.0) and r['median_yaw_err_deg'] == 0 and r['flip_rate'] == 0
    assert r['n_gt'] == 8
    assert r['n_gt_per_difficulty'] == {'easy': 2, 'moderate': 4, 'hard': 6}


def test_real_ground_truth_against_itself_is_100(kitti_training, capsys):
    labels = kitti_training / 'label_2'
    r = evaluate(labels, labels)
    _all(r, 100.0)
    assert r['n_gt'] == 37           # Car labels in the 12 development frames (shared/data/README.md)
    assert eval_main([str(labels), str(labels), '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    for k in AP_KEYS:
        assert out[k] == {'easy': 100.0, 'moderate': 100.0, 'hard': 100.0}
    assert out['n_gt'] == 37 and out['mean_iou3d'] == pytest.approx(1.0)


def test_difficulty_filtering(tmp_path):
    # A: easy car. B: occlusion 2, counted only in hard.
    gt = {'000001': [car(-5, 10), car(5, 12, occ=2)]}
    # Only A found: B does not count in easy/moderate, it is a miss in hard (recall 1/2 -> 20/40).
    r = _eval(tmp_path, gt, {'000001': [car(-5, 10, 0.5)]})
    _all(r, 100.0, diffs=('easy', 'moderate'))
    _all(r, 50.0, diffs=('hard',))
    # B found with the higher score: ignored (neither TP nor FP) in easy/moderate, TP in hard.
    r = _eval(tmp_path / 'b', gt, {'000001': [car(5, 12, 0.9), car(-5, 10, 0.5)]})
    _all(r, 100.0)


def test_small_detections_are_ignored(tmp_path):
    gt = {'000001': [car(-5, 10)]}
    # an unmatched detection 30 px high: below easy's 40 px (ignored) but a false positive in moderate/hard
    pred = {'000001': [car(5, 30, 0.9, h2d=30), car(-5, 10, 0.5)]}
    r = _eval(tmp_path, gt, pred)
    _all(r, 100.0, diffs=('easy',))
    _all(r, 50.0, diffs=('moderate', 'hard'))
    pred = {'000001': [car(5, 30, 0.9, h2d=20), car(-5, 10, 0.5)]}   # 20 px: ignored everywhere
    _all(_eval(tmp_path / 'b', gt, pred), 100.0)


@pytest.mark.parametrize('other, expect', [('Van', 100.0), ('Truck', 50.0)])
def test_van_is_ignored_for_car(tmp_path, other, expect):
    # A Car detection on a Van is neither TP nor FP; on a Truck it is a false positive ranked first:
    # curve (0, 0), (1, 1/2) -> interpolated precision 1/2 everywhere -> 50.
    gt = {'000001': [car(-5, 10), car(5, 12, typ=other)]}
    r = _eval(tmp_path, gt, {'000001': [car(5, 12, 0.9), car(-5, 10, 0.5)]})
    _all(r, expect)
    assert r['n_gt'] == 1


def test_dontcare_regions_ignore_detections(tmp_path):
    dc = car(0, 0, typ='DontCare', bbox=[500, 100, 700, 300], y=-1000)
    gt = {'000001': [car(-5, 10, bbox=[100, 150, 150, 220]), dc]}
    inside = car(20, 60, 0.9, bbox=[550, 150, 600, 200])
    outside = car(20, 60, 0.9, bbox=[800, 150, 850, 200])
    found = car(-5, 10, 0.5, bbox=[100, 150, 150, 220])
    _all(_eval(tmp_path / 'a', gt, {'000001': [inside, found]}), 100.0)
    _all(_eval(tmp_path / 'b', gt, {'000001': [outside, found]}), 50.0)


def test_missing_prediction_file_counts_as_no_detections(tmp_path):
    gt = {'000001': [car(-5, 10)], '000002': [car(5, 12)]}
    with pytest.warns(UserWarning, match='1 of 2 frames have no prediction file'):
        r = _eval(tmp_path, gt, {'000001': [car(-5, 10, 0.5)]})
    _all(r, 50.0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        _all(_eval(tmp_path / 'b', gt, {'000001': [car(-5, 10, 0.5)]}, frames=['1']), 100.0)


def test_centre_distance_metric(tmp_path):
    gt = {'000001': [car(-5, 10)]}
    r = _eval(tmp_path, gt, {'000001': [car(-4.3, 10, 0.5)]})   # 0.7 m off along its length (3.9 m)
    assert r['NS@0.5m']['moderate'] == 0.0 and r['NS@1.0m']['moderate'] == 100.0
    assert r['3D@0.5']['moderate'] == 100.0   # IoU (3.9 - 0.7) / (3.9 + 0.7) = 0.696
    assert r['3D@0.7']['moderate'] == 0.0


def test_heading_error_and_flips(tmp_path):
    gt = {'000001': [car(-8, 10, ry=0.3), car(0, 12, ry=-1.0), car(8, 14, ry=3.0)]}
    pred = {'000001': [car(-8, 10, 0.9, ry=0.3), car(0, 12, 0.8, ry=-1.0 + np.radians(10)),
                       car(8, 14, 0.7, ry=3.0 - np.pi)]}   # exact, 10 deg off, flipped front/back
    r = _eval(tmp_path, gt, pred)
    assert r['n_matched'] == 3
    assert r['median_yaw_err_deg'] == pytest.approx(10.0)
    assert r['flip_rate'] == pytest.approx(1 / 3)
    b = [0.0, 1.7, 12.0, 1.5, 1.6, 3.9]
    assert r['mean_iou3d'] == pytest.approx((2 + _iou(b + [-1.0], b + [-1.0 + np.radians(10)])[1]) / 3)


def test_cli_table_and_errors(tmp_path, capsys):
    gt = _write(tmp_path / 'gt', _generated_gt())
    assert eval_main([str(gt), str(gt), '--frames', '000001']) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ['Car', 'AP', 'R40', 'easy', 'moderate', 'hard']
    assert '3D@0.7' in out and 'NS@1.0m' in out and 'frames: 1' in out
    assert eval_main([str(gt), str(tmp_path / 'nope')]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'nope' in err and 'not found' in err
    assert eval_main([str(gt), str(gt), '--frames', '000009']) == 2
    assert '000009.txt' in capsys.readouterr().err
    # a frame named twice counts once
    assert eval_main([str(gt), str(gt), '--frames', '000001,1,000001', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['n_frames'] == 1
    # a folder without label files (the bag tool's OUT instead of OUT/kitti/label_2) is an error, not 0 AP
    (tmp_path / 'out').mkdir()
    assert eval_main([str(gt), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'no prediction files' in err and 'out' in err
    # frames without a prediction file: one warning line, then the table
    _write(tmp_path / 'part', {'000001': _generated_gt()['000001']})
    assert eval_main([str(gt), str(tmp_path / 'part')]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('autolabel-eval: warning: ') and 'no prediction file' in err[0]
    # frames without counted ground truth give NaN, printed as n/a and as null in JSON
    assert eval_main([str(gt), str(gt), '--frames', '000002', '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['3D@0.5']['easy'] is None and out['n_gt'] == 0
    assert 'n/a' in format_table(evaluate(gt, gt, frames='000002'))


def test_thousands_of_boxes_are_fast(tmp_path):
    """2,400 ground-truth cars and ~2,200 detections over 300 frames evaluate in a few seconds."""
    import time

    rng = np.random.default_rng(3)
    gt, pred = {}, {}
    for f in range(300):
        g, p = [], []
        for _ in range(8):
            x, z, ry = rng.uniform(-15, 15), rng.uniform(5, 60), rng.uniform(-np.pi, np.pi)
            h2d = 720 * 1.5 / z
            g.append(car(x, z, ry=ry, bbox=[600 + 720 * x / z, 150, 650 + 720 * x / z, 150 + h2d],
                         occ=int(rng.integers(0, 3))))
            if rng.random() < 0.8:
                dx, dz, dry = rng.normal(0, 0.3), rng.normal(0, 0.3), rng.normal(0, 0.1)
                p.append(car(x + dx, z + dz, rng.random(), ry=ry + dry, bbox=g[-1].bbox))
        p.append(car(rng.uniform(-15, 15), rng.uniform(5, 60), rng.random()))
        gt[f'{f:06d}'], pred[f'{f:06d}'] = g, p
    _write(tmp_path / 'gt', gt)
    _write(tmp_path / 'pred', pred)
    t0 = time.perf_counter()
    r = evaluate(tmp_path / 'gt', tmp_path / 'pred')
    assert time.perf_counter() - t0 < 15.0
    assert r['n_gt'] == 2400 and r['n_det'] > 2000
    assert 30 < r['BEV@0.5']['hard'] < 95 and r['3D@0.7']['hard'] < r['3D@0.5']['hard']
    assert r['NS@1.0m']['hard'] > r['NS@0.5m']['hard']
    _all(evaluate(tmp_path / 'gt', tmp_path / 'gt'), 100.0)
