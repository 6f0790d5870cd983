"""Front/back cues (fit/heading.py) and the calibrated accept model (fit/verify.py): each cue must
pick the true end of a synthetic car with a known heading, and the accept probability must move the
obvious way with each feature."""
import numpy as np
import pytest

from autolabel_ros.config import HEADING_CUES as CONFIG_CUES
from autolabel_ros.core.types import SensorFrame
from autolabel_ros.fit import heading
from autolabel_ros.fit.optimize import ObjectFit
from autolabel_ros.fit.result import canonical_mesh
from autolabel_ros.fit.sdf import SdfModel, analytic_prior
from autolabel_ros.fit.verify import (ACCEPT_FEATURES, ACCEPT_SIGNS, accept_features, label_score,
                                     right_probability, tight_probability)

K = np.array([[700.0, 0, 620], [0, 700.0, 190], [0, 0, 1]])
# LiDAR (x fwd, y left, z up) -> camera optical (x right, y down, z fwd), camera 0.3 m below the LiDAR
T = np.array([[0, -1, 0, 0], [0, 0, -1, -0.3], [1, 0, 0, 0], [0, 0, 0, 1]], float)
SIZE = np.array([4.0, 1.7, 1.5])


def _frame_with_end(pose, colour, paint=(40, 60, 120)):
    """A 380 x 1240 image of a car at ``pose`` (its box's projection painted ``paint``) whose lamp
    spots at the end facing the camera are painted ``colour``; and the car's mask."""
    img = np.full((380, 1240, 3), 90, np.uint8)
    frame = SensorFrame(image=img, K=K, points=np.zeros((1, 3)), T_cam_lidar=T)
    c, s = np.cos(pose[3]), np.sin(pose[3])
    corners = np.array([[sx * SIZE[0] / 2, sy * SIZE[1] / 2, sz * SIZE[2] / 2]
                        for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    world = corners @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + pose[:3]
    uv = (world @ T[:3, :3].T + T[:3, 3]) @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    x0, y0 = np.floor(uv.min(0)).astype(int)
    x1, y1 = np.ceil(uv.max(0)).astype(int)
    mask = np.zeros((380, 1240), bool)
    mask[y0:y1, x0:x1] = True
    img[mask] = paint
    facing = heading.end_facing(pose, heading.camera_centre(frame))
    for v0, v1, u0, u1 in heading.lamp_spots(pose, SIZE, frame, mask, facing):
        img[v0:v1, u0:u1] = colour
    return frame, mask


def _cues(pose, frame, mask):
    red, white = heading.redness(frame.image), heading.whiteness(frame.image)
    q = heading.PAINT_PERCENTILE
    rb, wb = np.percentile(red[mask], q['red']), np.percentile(white[mask], q['white'])
    cam = heading.camera_centre(frame)
    return heading.colour_cues(pose, SIZE, frame, mask, cam, red, rb, white, wb)


def test_config_lists_the_same_cues():
    assert tuple(CONFIG_CUES) == heading.HEADING_CUES


@pytest.mark.parametrize('yaw_true', [np.pi + 0.3, 0.4])      # front towards the camera; rear towards it
def test_white_lamps_mark_the_front_and_red_lamps_the_rear(yaw_true):
    pose = np.array([12.0, 0.5, -1.0, yaw_true])
    flip = pose + [0, 0, 0, np.pi]
    front_visible = heading.end_facing(pose, np.zeros(3)) > 0
    frame, mask = _frame_with_end(pose, (250, 250, 245) if front_visible else (230, 20, 25))
    lamps_t, head_t = _cues(pose, frame, mask)
    lamps_f, head_f = _cues(flip, frame, mask)
    if front_visible:         # white head lamps: the headlamp cue supports the true pose, red says nothing
        assert head_t < -0.5 and head_f > 0.5 and lamps_t == lamps_f == 0.0
    else:                     # red rear lamps: the lamp cue supports it, white says nothing
        assert lamps_t < -0.5 and lamps_f > 0.5 and head_t == head_f == 0.0


def test_white_paint_is_no_headlamp_evidence():
    pose = np.array([12.0, 0.5, -1.0, np.pi + 0.3])
    frame, mask = _frame_with_end(pose, (250, 250, 245), paint=(235, 235, 235))
    assert _cues(pose, frame, mask) == (0.0, 0.0)


def test_the_mean_shape_residual_prefers_the_true_end():
    """LiDAR-like points on the camera-facing surface of the (front/back asymmetric) mean shape."""
    sdf = SdfModel(analytic_prior(), mode='decode')
    mesh = canonical_mesh(sdf.arrays.mean, sdf.arrays.extent)
    for yaw in (np.pi + 0.5, 0.5, np.pi / 2 + 0.3):
        pose = np.array([10.0, 2.0, -0.8, yaw])
        c, s = np.cos(yaw), np.sin(yaw)
        v = mesh.vertices @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + pose[:3]
        n = np.cross(v[mesh.faces[:, 1]] - v[mesh.faces[:, 0]], v[mesh.faces[:, 2]] - v[mesh.faces[:, 0]])
        ctr = v[mesh.faces].mean(1)
        pts = ctr[np.einsum('ij,ij->i', n, -ctr) > 0]
        r = heading.mean_shape_residuals(sdf, np.stack([pose, pose + [0, 0, 0, np.pi]]), np.ones((2, 3)),
                                         pts, 0.3)
        assert r[0] < 0.5 * r[1], (yaw, r)


def _pair(x, y, yaw, e_true, e_flip, k):
    a = ObjectFit(pose=np.array([x, y, -1.0, yaw]), code=np.zeros(5), scales=np.ones(3), energy=e_true,
                  terms={'mask_iou_hi': 0.9})
    b = ObjectFit(pose=np.array([x, y, -1.0, yaw + np.pi]), code=np.zeros(5), scales=np.ones(3),
                  energy=e_flip, terms={'mask_iou_hi': 0.9})
    first = [a, b] if e_true <= e_flip else [b, a]
    first[0].alternatives = first
    return first[0]


def test_choose_applies_the_weighted_cues():
    f = _pair(10, 0, 0.0, 0.101, 0.100, 0)        # the flip has the lower energy...
    for a in f.alternatives:                      # ...but white lamps at the front say otherwise
        a.terms['cue_headlamps'] = -1.0 if np.cos(a.pose[3]) > 0 else 1.0
    out = heading.choose([f], ['headlamps'], {'headlamps': 0.01}, 0.0)[0]
    assert np.cos(out.pose[3]) > 0 and out.terms['flip_margin'] == pytest.approx(0.019)
    out = heading.choose([f], ['none'], {'headlamps': 0.01}, 0.0)[0]
    assert np.cos(out.pose[3]) < 0


def test_neighbours_decide_only_near_ties_in_their_lane():
    w = {'neighbours': 0.02}
    row = [_pair(10, 4.0, 0.0, 0.10, 0.20, 0), _pair(22, 4.3, 0.02, 0.10, 0.25, 1)]   # decided, heading +x
    tie = _pair(16, 4.1, 0.01, 0.1001, 0.1000, 2)          # undecided, flip slightly lower
    out = heading.choose(row + [tie], ['neighbours'], w, 0.0)
    assert np.cos(out[2].pose[3]) > 0                      # follows its row
    tie = _pair(16, 4.1, 0.01, 0.1001, 0.1000, 2)
    out = heading.choose(row + [tie], ['none'], w, 0.0)
    assert np.cos(out[2].pose[3]) < 0                      # cue off: the energy decides
    oncoming = _pair(16, 0.6, 0.01, 0.1001, 0.1000, 2)     # 3.5 m to the side: another lane, no vote
    assert np.cos(heading.choose(row + [oncoming], ['neighbours'], w, 0.0)[2].pose[3]) < 0
    decided = _pair(16, 4.1, 0.01, 0.15, 0.10, 2)          # clearly decided the other way: kept
    assert np.cos(heading.choose(row + [decided], ['neighbours'], w, 0.0)[2].pose[3]) < 0


def _with_points(f, n):
    for a in f.alternatives:
        a.terms['n_points'] = float(n)
    return f


def test_lane_cue_lets_a_far_few_point_car_follow_its_better_seen_lane():
    w = {'lane': 0.01}
    near = [_with_points(_pair(12, 0.3, 0.0, 0.10, 0.20, 0), 250),     # well seen, heading +x
            _with_points(_pair(24, 0.0, 0.0, 0.10, 0.12, 1), 120)]
    # 45 m out, 6 points, the flip's energy lower by 0.005: the lane's vote (~0.9 of 0.01 a side) wins
    far = _with_points(_pair(45, 0.8, 0.02, 0.105, 0.100, 2), 6)
    out = heading.choose(near + [far], ['lane'], w, 0.0)
    assert np.cos(out[2].pose[3]) > 0
    flip = next(a for a in out[2].alternatives if a is not out[2])
    assert out[2].terms['cue_lane'] < 0 < flip.terms['cue_lane']
    assert np.cos(heading.choose(near + [far], ['none'], w, 0.0)[2].pose[3]) < 0   # cue off
    # the same car seen with 300 points: its own evidence, not the lane's, decides
    well = _with_points(_pair(45, 0.8, 0.02, 0.105, 0.100, 2), 300)
    assert np.cos(heading.choose(near + [well], ['lane'], w, 0.0)[2].pose[3]) < 0
    # 3 m to the side (another lane): no vote
    side = _with_points(_pair(45, 3.5, 0.02, 0.105, 0.100, 2), 6)
    out = heading.choose(near + [side], ['lane'], w, 0.0)
    assert np.cos(out[2].pose[3]) < 0 and out[2].terms['cue_lane'] == 0.0
    # a worse-seen car never votes for a better-seen one: the near cars keep their energy's choice
    assert all(np.cos(o.pose[3]) > 0 for o in out[:2])


def test_lane_cue_follows_a_bend_and_leans_harder_for_a_hidden_car():
    """Two cars on one circular lane (radius 150 m, bending left): measured across the voter's own
    axis the far car sits 3 m off it and gets no vote; across the bisector of the two axes (the
    chord's direction) it is in lane. A mostly hidden car's vote grows by 1 + LANE_HIDDEN_BOOST."""
    R = 150.0
    def on_arc(s):                     # arc length s along a lane leaving (0, -R... ) heading +x
        t = s / R
        return np.array([R * np.sin(t), R * (1 - np.cos(t)), -1.0, t])
    voter, far = on_arc(10.0), on_arc(40.0)
    off = far[:2] - voter[:2]
    assert abs(off[0] * np.sin(voter[3]) - off[1] * np.cos(voter[3])) > 2.5     # off the voter's axis
    poses = np.stack([voter, far])
    votes = heading.lane_votes(poses, np.array([250.0, 6.0]))
    assert votes[1] @ [np.cos(far[3]), np.sin(far[3])] > 0.7     # in lane: votes for its heading
    assert not votes[0].any()                                    # the better-seen car takes no vote
    # the same far car 3.5 m to the side (the next lane round the bend): no vote
    side = far + np.array([-3.5 * np.sin(far[3]), 3.5 * np.cos(far[3]), 0.0, 0.0])
    assert not heading.lane_votes(np.stack([voter, side]), np.array([250.0, 6.0]))[1].any()
    hidden = heading.lane_votes(poses, np.array([250.0, 6.0]), np.array([0.0, 0.95]))
    half = heading.lane_votes(poses, np.array([250.0, 6.0]), np.array([0.0, 0.5]))
    seen = heading.lane_votes(poses, np.array([250.0, 6.0]), np.array([0.0, 0.1]))
    assert np.allclose(seen, votes)                             # below HIDDEN_FROM: unchanged
    assert np.allclose(hidden[1], votes[1] * (1 + heading.LANE_HIDDEN_BOOST))
    assert np.linalg.norm(votes[1]) < np.linalg.norm(half[1]) < np.linalg.norm(hidden[1])


def test_hidden_boost_turns_a_hidden_car_that_the_plain_lane_vote_cannot():
    w = {'lane': 0.005}
    near = [_with_points(_pair(12, 0.3, 0.0, 0.10, 0.20, 0), 250)]
    def far(occluded):                 # its flip's energy lower by 0.012: more than the plain vote
        f = _with_points(_pair(40, 0.5, 0.02, 0.112, 0.100, 1), 6)
        for a in f.alternatives:
            a.terms['occluded'] = occluded
        return f
    assert np.cos(heading.choose(near + [far(0.0)], ['lane'], w, 0.0)[1].pose[3]) < 0
    assert np.cos(heading.choose(near + [far(0.95)], ['lane'], w, 0.0)[1].pose[3]) > 0


def test_accept_probability_is_monotone_in_every_feature():
    from autolabel_ros.fit.accept_model import COEF, FEATURES
    assert tuple(FEATURES) == ACCEPT_FEATURES
    assert all(c * s >= 0 for c, s in zip(COEF, ACCEPT_SIGNS))
    base = dict(mask_iou=0.8, surface_ratio=0.9, n_points=60, range_m=25.0, heading_logit=0.2,
                occluded_share=0.1, energy=0.15, length_cover=0.5, width_cover=0.5)
    p0 = right_probability(accept_features(**base))
    assert 0.0 < p0 < 1.0
    better = dict(mask_iou=0.95, surface_ratio=1.0, n_points=250, heading_logit=2.0, length_cover=1.0,
                  width_cover=1.0)
    worse = dict(range_m=60.0, occluded_share=0.6, energy=0.4, see_through=0.1)
    for k, v in better.items():
        assert right_probability(accept_features(**dict(base, **{k: v}))) >= p0, k
    for k, v in worse.items():
        assert right_probability(accept_features(**dict(base, **{k: v}))) <= p0, k
    good = right_probability(accept_features(0.92, 1.0, 250, 12.0, 3.0, 0.0, 0.1))
    # 3 scan points cannot span the box: the covers of such a label are small (the defaults, 1.0, are
    # the best case)
    bad = right_probability(accept_features(0.5, 0.4, 3, 60.0, 0.0, 0.6, 0.6,
                                            length_cover=0.1, width_cover=0.1))
    # the good label clears the accept threshold (verify.min_confidence 0.7) with room; the bad one is
    # below even odds (its value moves with each recalibration: 0.31 on the models of 2026-11-30 19:26)
    assert good > 0.8 and bad < 0.5


def test_tight_probability_is_monotone_and_the_score_ranks_a_loose_label_below_a_tight_one():
    from autolabel_ros.fit.accept_model import TIGHT_COEF
    assert all(c * s >= 0 for c, s in zip(TIGHT_COEF, ACCEPT_SIGNS))
    base = dict(mask_iou=0.8, surface_ratio=0.9, n_points=60, range_m=25.0, heading_logit=0.2,
                occluded_share=0.1, energy=0.15, length_cover=0.5, width_cover=0.5)
    t0 = tight_probability(accept_features(**base))
    assert 0.0 < t0 < 1.0
    for k, v in dict(mask_iou=0.95, surface_ratio=1.0, n_points=250, heading_logit=2.0, length_cover=1.0,
                     width_cover=1.0).items():
        assert tight_probability(accept_features(**dict(base, **{k: v}))) >= t0, k
    for k, v in dict(range_m=60.0, occluded_share=0.6, energy=0.4, see_through=0.1).items():
        assert tight_probability(accept_features(**dict(base, **{k: v}))) <= t0, k
    # being tight is rarer than being right: on the shipped models P(tight) < P(right) here
    assert t0 < right_probability(accept_features(**base))
    # two labels both surely right, one surely tight: the tight one ranks first (it passes both thresholds)
    assert label_score(0.99, 0.95) > label_score(0.99, 0.2) > label_score(0.3, 0.1)
    assert label_score(0.7, 0.0) == 0.35


def test_point_cover_tells_a_box_the_scan_spans_from_one_seen_on_a_single_end():
    from autolabel_ros.fit.verify import point_cover
    rng = np.random.default_rng(0)
    box = np.array([20.0, 5.0, -1.0, 4.4, 1.8, 1.5, np.pi / 2])     # length along +y (yaw 90 deg)
    # an L-shaped scan: the whole near side (x = 19.1) and the rear end (y = 2.8)
    side = np.stack([np.full(200, 19.1), rng.uniform(2.8, 7.2, 200), np.full(200, -1.0)], 1)
    rear = np.stack([rng.uniform(19.1, 20.9, 80), np.full(80, 2.8), np.full(80, -1.0)], 1)
    lc, wc = point_cover(np.concatenate([side, rear]), box)
    assert lc > 0.85 and wc > 0.8
    # the rear end alone: the width is seen, the length is the prior's
    lc, wc = point_cover(rear, box)
    assert lc < 0.05 and wc > 0.8
    assert point_cover(rear[:1], box) == (0.0, 0.0)


def test_points_outside_box_rejects_a_car_sized_box_on_part_of_a_longer_structure():
    from autolabel_ros.fit.verify import inside_share, points_outside_box
    rng = np.random.default_rng(1)
    box = np.array([20.0, 5.0, -1.0, 4.2, 1.8, 1.5, np.pi / 2])     # length along +y
    # a car's scan: its near side and rear, all in the box
    car = np.stack([np.full(150, 19.2), rng.uniform(3.0, 7.0, 150), rng.uniform(-1.6, -0.4, 150)], 1)
    assert inside_share(car, box) == 1.0 and not points_outside_box(car, box)
    # a 10 m fence the box was fitted to the middle of: 58 % of its points lie beside the box
    fence = np.stack([np.full(200, 19.2), np.linspace(0.0, 10.0, 200), np.full(200, -1.0)], 1)
    assert inside_share(fence, box) == pytest.approx(0.48, abs=0.02) and points_outside_box(fence, box)
    # a 4-point car with one stray return (25 % out): too few points out to decide
    few = np.concatenate([car[:3], [[24.0, 5.0, -1.0]]])
    assert inside_share(few, box) == 0.75 and not points_outside_box(few, box)
    # within the margin (0.3 m) counts as inside; no points contradict nothing
    assert inside_share(np.array([[20.0, 7.3, -1.0]]), box) == 1.0
    assert inside_share(np.zeros((0, 3)), box) == 1.0


def test_hypothesis_agreement_reads_how_decided_the_placement_is():
    from autolabel_ros.fit.verify import hypothesis_agreement
    me = np.array([20.0, 5.0, -1.0, 0.3])
    flip = me + [0.1, 0.0, 0.0, np.pi]                  # a flip: same place, counts for neither
    # alone (or with its flip only): decided, nothing spreads it
    assert hypothesis_agreement(me, [(me, 0.20)]) == (1.0, 0.0)
    gap, spread = hypothesis_agreement(me, [(me, 0.20), (flip, 0.21)])
    assert gap == 1.0 and spread == pytest.approx(0.1 / 3)
    # a placement 2 m away, 0.06 worse: gap 0.06 / 0.3; too much worse to spread it
    gap, spread = hypothesis_agreement(me, [(me, 0.20), (flip, 0.21), (me + [2.0, 0, 0, 0], 0.26)])
    assert gap == pytest.approx(0.2) and spread == pytest.approx(0.1 / 3)
    # one 6 m away as good as the label: no gap, spread saturated (the car may be elsewhere)
    gap, spread = hypothesis_agreement(me, [(me + [0, 6.0, 0, 0], 0.19), (me, 0.20)])
    assert gap < 0 and spread == 1.0


def test_profile_cue_reads_the_near_end_and_opposes_a_flip_pair():
    from autolabel_ros.fit.heading_model import PROFILE_COEF
    rng = np.random.default_rng(3)
    l, w, h = 4.2, 1.7, 1.5
    # a car seen from behind-left: a low hood at +x (front), the roof from -1.5 m to +0.5 m
    u = rng.uniform(-l / 2, l / 2, 400)
    top = np.where((u > -1.5) & (u < 0.5), h, np.where(u >= 0.5, 0.6 * h, 0.75 * h))
    pts = np.c_[u, rng.uniform(-w / 2, w / 2, 400), rng.uniform(0, 1, 400) * top - h / 2]
    pose = np.array([15.0, 2.0, -0.8, 0.3])
    R = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    pts = np.c_[pts[:, :2] @ R.T + pose[:2], pts[:, 2] + pose[2]]
    flip = pose + [0, 0, 0, np.pi]
    size = np.array([l, w, h])
    fa, facing = heading.profile_features(pts, pose, size, np.zeros(3))
    fb, facing_b = heading.profile_features(pts, flip, size, np.zeros(3))
    assert facing < -0.5 and facing_b == pytest.approx(-facing)          # the rear faces the camera
    assert np.allclose(fa, fb) and len(fa) == len(PROFILE_COEF)            # same near end, same features
    # the cue of a hypothesis and of its flip are opposite; and with a model that reads "hood low at the
    # far end" (top of the far bins below the near ones) the right hypothesis is supported
    ta = heading.profile_cue(pts, pose, size, np.zeros(3))
    tb = heading.profile_cue(pts, flip, size, np.zeros(3))
    assert ta == pytest.approx(-tb)
    nu, nh = heading.PROFILE_BINS
    coef = np.zeros(len(fa))
    coef[nu * nh:nu * nh + nu // 2] = 1.0        # far-end tops high -> near end is the front
    coef[nu * nh + nu // 2:nu * nh + nu] = -1.0
    assert heading.profile_cue(pts, pose, size, np.zeros(3), coef, 0.0) < 0 < \
        heading.profile_cue(pts, flip, size, np.zeros(3), coef, 0.0)


def test_heading_logit_weighs_the_flip_pair_terms():
    f = _pair(10, 0, 0.0, 0.10, 0.13, 0)
    alts = f.alternatives
    coef = (10.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert len(coef) == len(heading.LOGIT_TERMS)
    assert heading.heading_logit(alts, 0, coef) == pytest.approx(0.3)
    assert heading.heading_logit(alts, 1, coef) == pytest.approx(-0.3)
    alts[1].terms['cue_lamps'] = -0.5              # red lamps support the flip
    assert heading.heading_logit(alts, 0, coef) == pytest.approx(-0.2)
    assert heading.heading_logit([alts[0]], 0, coef) == np.inf
    out = heading.choose([f], ['lamps'], {'lamps': 0.2}, 0.0)[0]
    k = next(i for i, a in enumerate(out.alternatives) if a is out)
    assert out.terms['heading_logit'] == pytest.approx(heading.heading_logit(out.alternatives, k))


def test_a_tiebreak_cue_decides_near_ties_and_never_overturns_a_choice():
    """css with method hybrid: the network's front/back read breaks ties the other cues leave and
    cannot overturn a decided choice (it votes with the full weight when it is not a tie-breaker)."""
    def with_css(f):
        for a in f.alternatives:                  # the network says the car heads -x
            a.terms['cue_css'] = 1.0 if np.cos(a.pose[3]) > 0 else -1.0
        return f
    w = {'css': 0.5}
    decided = with_css(_pair(10, 0, 0.0, 0.10, 0.15, 0))     # the energy says +x, clearly
    assert np.cos(heading.choose([decided], ['css'], w, 0.0, tiebreak=('css',))[0].pose[3]) > 0
    decided = with_css(_pair(10, 0, 0.0, 0.10, 0.15, 0))
    assert np.cos(heading.choose([decided], ['css'], w, 0.0)[0].pose[3]) < 0          # voting: overturned
    tie = with_css(_pair(10, 0, 0.0, 0.1000, 0.1005, 0))     # +x by 0.0005: undecided
    out = heading.choose([tie], ['css'], w, 0.0, tiebreak=('css',))[0]
    assert np.cos(out.pose[3]) < 0 and out.terms['flip_margin'] == pytest.approx(0.9995)
    tie = with_css(_pair(10, 0, 0.0, 0.1000, 0.1005, 0))
    assert np.cos(heading.choose([tie], ['none'], w, 0.0, tiebreak=('css',))[0].pose[3]) > 0    # cue off
