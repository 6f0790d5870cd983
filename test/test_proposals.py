"""LiDAR object proposals and their fusion with the detector's boxes (autolabel_ros.proposals)."""
import dataclasses

import numpy as np
import pytest

from autolabel_ros.config import from_dict
from autolabel_ros.core.geometry import points_in_box
from autolabel_ros.core.types import Prompt, SensorFrame
from autolabel_ros.proposals import fuse_prompts, fused_prompts, lidar_proposals, source_counts
from autolabel_ros.proposals.fusion import iou_matrix
from autolabel_ros.sim import simulate_frame

CFG = from_dict({})


@pytest.fixture(scope='module')
def sim():
    return simulate_frame(100001)


def best_iou(box, props):
    return float(iou_matrix(np.array([box]), np.array([p.box for p in props]))[0].max()) if props else 0.0


def test_lidar_proposals_find_every_simulated_car_with_enough_points(sim):
    props = lidar_proposals(sim.frame, CFG)
    cars = [g for g in sim.gt
            if points_in_box(sim.frame.xyz, g.center, g.size, g.yaw, 0.1).sum() >= 40
            and g.box2d[3] - g.box2d[1] > 25 and np.hypot(*g.center[:2]) < CFG.proposals.max_range]
    assert len(cars) >= 4
    ious = [best_iou(g.box2d, props) for g in cars]
    assert min(ious) >= 0.5, ious
    # and not much else: at most a few clusters that are no car of the scene
    assert len(props) <= len(sim.gt) + 3


def _box_surface(center, size, step=0.08):
    """Points on the faces of an axis-aligned box (a stand-in for any solid object)."""
    lo, hi = np.asarray(center) - np.asarray(size) / 2, np.asarray(center) + np.asarray(size) / 2
    axes = [np.arange(lo[k], hi[k] + 1e-9, step) for k in range(3)]
    pts = []
    for k in range(3):
        a, b = [axes[j] for j in range(3) if j != k]
        A, B = np.meshgrid(a, b, indexing='ij')
        for v in (lo[k], hi[k]):
            p = np.zeros((A.size, 3))
            p[:, k] = v
            p[:, [j for j in range(3) if j != k]] = np.column_stack([A.ravel(), B.ravel()])
            pts.append(p)
    return np.concatenate(pts)


def synthetic_street(sim):
    """Flat ground 1.73 m below the sensor, a car-sized box, a pole and a long wall, with the camera
    of a simulated frame."""
    g = -1.73
    gx, gy = np.meshgrid(np.arange(3, 45, 0.25), np.arange(-14, 14, 0.25), indexing='ij')
    ground = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, g)])
    car = _box_surface([15.0, 2.5, g + 0.75], [4.2, 1.8, 1.5])
    pole = _box_surface([12.0, -3.0, g + 2.0], [0.15, 0.15, 4.0], step=0.05)
    wall = _box_surface([25.0, -7.0, g + 1.5], [0.3, 9.0, 3.0])
    pts = np.concatenate([ground, car, pole, wall]).astype(np.float32)
    frame = SensorFrame(image=sim.frame.image, K=sim.frame.K, points=pts, T_cam_lidar=sim.frame.T_cam_lidar)
    return frame, {'car': car, 'pole': pole, 'wall': wall}


def _projected_box(frame, pts):
    from autolabel_ros.core.geometry import project, transform_points
    uv, z = project(frame.K, transform_points(frame.T_cam_lidar, pts))
    uv = uv[z > 0]
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])


def test_pole_and_wall_are_not_proposed_the_car_is(sim):
    frame, parts = synthetic_street(sim)
    props = lidar_proposals(frame, CFG)
    assert len(props) == 1, [(p.box.round(), p.length, p.top) for p in props]
    assert best_iou(_projected_box(frame, parts['car']), props) > 0.6
    p = props[0]
    assert 4.0 <= p.length <= 4.5 and 1.4 <= p.top <= 1.6


def test_fusion_merges_a_detector_box_and_a_lidar_box_of_one_car(sim):
    props = lidar_proposals(sim.frame, CFG)
    lidar = [Prompt(id=i, box=p.box, score=p.score, sources=('lidar',)) for i, p in enumerate(props)]
    car = max(sim.gt, key=lambda g: best_iou(g.box2d, props))
    det_box = car.box2d + np.array([2.0, -1.0, -3.0, 2.0])          # the detector's own, slightly off
    other = Prompt(id=1, box=[0, 0, 40, 30], score=0.6)           # a detection nothing else saw
    out = fuse_prompts([('detector', [Prompt(id=0, box=det_box, score=0.9), other]), ('lidar', lidar)],
                       CFG.proposals)
    assert len(out) == len(lidar) + 1               # the car once, plus the detector-only box
    both = [p for p in out if set(p.sources) == {'detector', 'lidar'}]
    assert len(both) == 1
    k = int(np.argmax([best_iou(det_box, [p]) for p in props]))
    assert props[k].n_points >= 4 * CFG.proposals.min_points
    np.testing.assert_allclose(both[0].box, props[k].box)    # auto: a dense cluster's box is kept
    assert both[0].score == pytest.approx(0.9)
    assert [p.id for p in out] == list(range(len(out)))
    counts = source_counts(out)
    assert counts['detector'] == 2 and counts['lidar'] == len(lidar) and counts['detector+lidar'] == 1
    groups = [('detector', [Prompt(id=0, box=det_box, score=0.9)]), ('lidar', [lidar[k]])]
    # the detector's box on request; the union of both when the cluster is sparse (its box cut short)
    keep_det = fuse_prompts(groups, dataclasses.replace(CFG.proposals, merged_box='detector'))
    np.testing.assert_allclose(keep_det[0].box, det_box)
    union = fuse_prompts(groups, CFG.proposals, sparse=frozenset({lidar[k].id}))
    lo, hi = np.minimum(det_box, props[k].box), np.maximum(det_box, props[k].box)
    np.testing.assert_allclose(union[0].box, [lo[0], lo[1], hi[2], hi[3]])


def test_containment_merges_similar_boxes_but_not_a_small_car_behind_a_large_one():
    cfg = CFG.proposals
    big = Prompt(box=[100, 100, 300, 200], score=0.9)
    inside_similar = Prompt(box=[110, 105, 290, 200], score=0.5)    # IoU 0.86
    small_behind = Prompt(box=[150, 120, 190, 150], score=0.5)      # inside, 6 % of the area
    out = fuse_prompts([('detector', [big]), ('lidar', [inside_similar, small_behind])], cfg)
    assert len(out) == 2
    assert {tuple(p.sources) for p in out} == {('detector', 'lidar'), ('lidar',)}


def test_fused_prompts_weak_detections_confirm_lidar_proposals(sim):
    props = lidar_proposals(sim.frame, CFG)
    # weak: below detector.score_threshold, at confirm_low_score (props[0] is a roofless clump of clutter)
    weak = [Prompt(id=i, box=p.box + 3.0, score=0.2, sources=('detector',)) for i, p in enumerate(props[:2])]
    noise = Prompt(id=9, box=[5, 5, 30, 25], score=0.1, sources=('detector',))   # weak and alone: dropped
    # (no proposal becomes a prompt on its shape alone here: test_proposal_evidence.py)
    out, t = fused_prompts(sim.frame, weak + [noise], from_dict({'proposals': {'sure_min_points': 0}}))
    assert len(out) == 2 and all(set(p.sources) == {'detector', 'lidar'} for p in out)
    # the confirmed proposals keep their LiDAR box
    assert sorted(tuple(p.box) for p in out) == sorted(tuple(p.box) for p in props[:2])
    assert t['proposals_s'] > 0 and t['n_lidar_proposals'] == len(props)
    # lidar_only: every proposal becomes a prompt
    cfg = from_dict({'proposals': {'lidar_only': True}})
    out, _ = fused_prompts(sim.frame, [], cfg)
    assert len(out) == len(props) and all(p.sources == ('lidar',) for p in out)


def test_sources_travel_from_prompt_to_label_and_the_bag_record(sim):
    from autolabel_ros.offline.worker import FrameLabeler, FrameTask, label_from_dict, prompt_from_dict
    from autolabel_ros.io.report import build_summary
    from autolabel_ros.config import to_dict

    cfg = from_dict({'segmenter': {'model': 'box'}, 'fit': {'iterations': 2, 'yaw_hypotheses': 2}})
    worker = FrameLabeler(to_dict(cfg))
    task = FrameTask(index=0, name='f0', stamp_ns=1, frame=sim.frame, prompts=None, fused=True)
    record, arrays = worker(task)
    assert arrays is not None, record
    assert record['prompt_source'] == 'fused' and 'proposals_s' in record['timings']
    prompts = [prompt_from_dict(d) for d in record['prompts']]
    labels = [label_from_dict(d) for d in record['labels']]
    assert prompts and all(p.sources for p in prompts)
    assert [lab.sources for lab in labels] == [p.sources for p in prompts]
    assert any('lidar' in p.sources for p in prompts)
    summary = build_summary([record], [], {}, {}, 1, {})
    by_source = summary['objects']['prompts_by_source']
    assert by_source == source_counts(prompts)
    assert summary['per_frame'][0]['prompts_by_source'] == by_source


def test_bag_tool_accepts_fused_prompts_and_the_node_statistics_count_sources():
    from autolabel_ros.io.bags import BagError
    from autolabel_ros.nodes.runtime import LatencyStats
    from autolabel_ros.offline.job import parse_prompts

    assert parse_prompts('fused') == ('fused', None)
    with pytest.raises(BagError, match="'detector', 'fused', 'topic:NAME' or 'gt'"):
        parse_prompts('lidar')
    stats = LatencyStats()
    stats.add(0.5, 0.7, 3, sources={'detector': 2, 'lidar': 2, 'detector+lidar': 1})
    stats.add(0.4, 0.6, 1, sources={'lidar': 1})
    line = stats.summary(0)
    assert line.endswith('objects by source: detector 2, detector+lidar 1, lidar 3'), line


def test_duplicate_labels_of_one_car_are_rejected_after_the_fit():
    from autolabel_ros.core.types import Label3D
    from autolabel_ros.proposals import reject_duplicates

    size = [4.0, 1.7, 1.5]
    a = Label3D(center=[10, 2, -1], size=size, yaw=0.0, score=0.9, id=0)
    b = Label3D(center=[10.6, 2.2, -1], size=size, yaw=0.1, score=0.8, id=1)     # same car, worse
    c = Label3D(center=[10, -1.0, -1], size=size, yaw=0.0, score=0.85, id=2)     # the car beside it
    d = Label3D(center=[10, 2, -1], size=size, yaw=0.0, score=0.95, id=3, accepted=False,
                reasons=['low_mask_iou'])                                         # rejected: no say
    labels = [a, b, c, d]
    assert reject_duplicates(labels, 0.3) == 1
    assert [lab.accepted for lab in labels] == [True, False, True, False]
    assert b.reasons == ['duplicate'] and d.reasons == ['low_mask_iou']


def test_a_proposal_without_a_car_roof_needs_more_than_a_noise_level_detection(sim):
    # the same cluster, with sure_min_top just above or below its top: a roofless cluster (a bush, a low
    # wall) is confirmed by a detection of confirm_low_score, not by one barely above the noise
    p = max(lidar_proposals(sim.frame, CFG), key=lambda q: q.n_points)

    def prompts(min_top, score):
        cfg = from_dict({'proposals': {'sure_min_points': 0, 'sure_min_top': min_top}})
        det = Prompt(id=0, box=p.box + 2.0, score=score, sources=('detector',))
        return [q for q in fused_prompts(sim.frame, [det], cfg)[0] if best_iou(q.box, [p]) > 0.9]

    low = CFG.proposals.confirm_low_score
    assert len(prompts(p.top - 0.1, low - 0.05)) == 1          # a roof: a weak detection confirms it
    assert prompts(p.top + 0.1, low - 0.05) == []             # no roof, a noise-level detection: dropped
    assert len(prompts(p.top + 0.1, low)) == 1                # no roof, a detection of confirm_low_score
