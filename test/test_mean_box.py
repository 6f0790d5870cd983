"""The mean_box front/back cue (fit/heading.py mean_box_cues): the label's 2D box against the image box
of the prior's mean shape under each hypothesis. At the true pose of held-out simulator cars the true
heading must match the 2D box better than its 180-degree flip on most cars, and the cue must say
nothing where the shape reaches behind the camera."""
import numpy as np
import pytest

from autolabel_ros.core.geometry import box_iou
from autolabel_ros.fit.heading import mean_box_cues

K = np.array([[700.0, 0, 620], [0, 700.0, 190], [0, 0, 1]])
T = np.array([[0, -1, 0, 0], [0, 0, -1, -0.3], [1, 0, 0, 0], [0, 0, 0, 1]], float)
SIZE = np.array([4.2, 1.8, 1.5])


@pytest.fixture(scope='module')
def unit_vertices():
    from autolabel_ros.config import from_dict
    from autolabel_ros.pipeline import Autolabeler
    v = Autolabeler(from_dict({'device': 'cpu'})).fitter.mean_unit_vertices()
    np.testing.assert_allclose(v.max(0) - v.min(0), 1.0, atol=1e-6)
    return v


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_the_own_box_scores_zero_and_a_car_behind_the_camera_gives_no_evidence(unit_vertices):
    pose = np.array([15.0, 2.0, -0.9, 0.7])
    # the mean shape's own image box: cue 0 for that hypothesis, > 0 for its flip (the shape is not
    # symmetric front to back, so its projection is not either)
    pts = (unit_vertices * SIZE) @ np.array([[np.cos(0.7), -np.sin(0.7), 0], [np.sin(0.7), np.cos(0.7), 0],
                                             [0, 0, 1]]).T + pose[:3]
    cam = pts @ T[:3, :3].T + T[:3, 3]
    uv = cam @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    box = np.r_[uv.min(0), uv.max(0)]
    own, flip = mean_box_cues(unit_vertices, [pose, pose + [0, 0, 0, np.pi]], [SIZE] * 2, K, T, (380, 1240),
                              box)
    assert own == pytest.approx(0.0, abs=1e-6)
    assert flip > 0.02
    behind = np.array([-10.0, 0.0, -0.9, 0.0])
    assert mean_box_cues(unit_vertices, [pose, behind], [SIZE] * 2, K, T, (380, 1240), box) == [0.0, 0.0]


def test_the_true_heading_matches_the_2d_box_better_on_held_out_simulator_cars(unit_vertices):
    """Scenes 100008 and 100010 (not among the benchmark's 46 procedural scenes): of the 20 cars, the
    true heading has the lower cue for 14 (a coin would give 10 +- 2.2); on the fits of the benchmark sets the
    cue took the default cues' flips from 27 to 24 (procedural) and 23 to 21 (ApolloCar3D)."""
    from autolabel_ros.sim.drive import simulate_frame
    right = []
    for seed in (100008, 100010):
        sf = simulate_frame(seed)
        for g in sf.gt:
            pose = np.r_[g.center, g.yaw]
            v = mean_box_cues(unit_vertices, [pose, pose + [0, 0, 0, np.pi]], [g.size] * 2, sf.frame.K,
                              sf.frame.T_cam_lidar, sf.frame.image.shape[:2], g.box2d)
            if v[0] != v[1]:
                right.append(v[0] < v[1])
    assert len(right) == 20
    assert sum(right) >= 13


def test_the_fit_reads_the_cue_for_box_prompts_and_not_for_clicks():
    """A box prompt (ground truth: amodal) gets the cue on both hypotheses of its flip pair; the same
    car prompted by clicks, whose 2D box is only its mask's, gets none."""
    from autolabel_ros.config import from_dict
    from autolabel_ros.core.device import torch_threads
    from autolabel_ros.core.types import Prompt
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.sim.drive import simulate_frame
    sf = simulate_frame(100010)
    g = max((g for g in sf.gt if g.occlusion == 0), key=lambda g: g.metrics['lidar_points'])
    mask = sf.masks == g.id
    ys, xs = np.nonzero(mask)
    clicks = np.column_stack([xs, ys])[np.linspace(0, len(xs) - 1, 5).astype(int)[1:4]].astype(float)
    al = Autolabeler(from_dict({'device': 'cpu', 'fit': {'heading_cues': ['mean_box'], 'w_mean_box': 0.05}}))
    values = {}
    for name, prompt in (('box', Prompt(id=g.id, box=g.box2d, sources=('gt',))),
                         ('clicks', Prompt(id=g.id, points=clicks, point_labels=np.ones(3, np.int64),
                                           sources=('click',)))):
        with torch_threads(1):
            res = al.label(sf.frame, [prompt], [mask])
        values[name] = [a['cue_mean_box'] for a in res.labels[0].metrics['alternatives']]
    assert len(values['box']) == 2 and all(v > 0 for v in values['box'])
    assert values['clicks'] == [0.0] * len(values['clicks'])


def test_the_pruning_box_score_tells_the_axis_of_held_out_simulator_cars(unit_vertices):
    """fit/heading.py amodal_box_scores (the pruning's fit.w_prune_box): at each car's true centre and
    size, its true heading and the flip match the amodal 2D box far better than the two sideways headings
    (the only survivors the pruning kept for 7 of the 18 flipped ApolloCar3D cars before the score); an
    object whose gate is 0 (not hidden, or not an amodal box) scores 0 on every hypothesis."""
    from autolabel_ros.fit.heading import amodal_box_scores
    from autolabel_ros.sim.drive import simulate_frame
    margins = []
    for seed in (100008, 100010):
        sf = simulate_frame(seed)
        n = len(sf.gt)
        obj = np.repeat(np.arange(n), 4)
        poses = np.stack([np.r_[g.center, g.yaw + k * np.pi / 2] for g in sf.gt for k in range(4)])
        sizes = np.stack([g.size for g in sf.gt for _ in range(4)])
        gates = np.ones(n)
        gates[0] = 0.0
        s = amodal_box_scores(unit_vertices, obj, poses, sizes, gates, [g.box2d for g in sf.gt], sf.frame.K,
                              sf.frame.T_cam_lidar, sf.frame.image.shape[:2]).reshape(n, 4)
        assert np.all(s[0] == 0.0)
        assert np.all(s[1:] >= 0.0)
        # the worse of the true heading and its flip against the better of the sideways ones
        margins += list(np.minimum(s[1:, 1], s[1:, 3]) - np.maximum(s[1:, 0], s[1:, 2]))
    margins = np.array(margins)
    assert len(margins) == 18
    assert np.mean(margins > 0.05) >= 0.8
    assert np.median(margins) > 0.1
