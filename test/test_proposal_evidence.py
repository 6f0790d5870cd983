"""What the LiDAR says about fused prompts: hidden clusters, owner clusters, one prompt per object."""
import numpy as np
import pytest

from autolabel_ros.config import from_dict
from autolabel_ros.core.geometry import points_in_box
from autolabel_ros.core.types import Prompt, SensorFrame
from autolabel_ros.fit.ground import GroundPlane
from autolabel_ros.proposals import (box_owners, cluster_boxes, fused_prompts, lidar_proposals, lidar_scene,
                                     merge_same_cluster, sliver)
from autolabel_ros.proposals.fusion import iou_matrix
from autolabel_ros.sim import simulate_frame

from test_proposals import _box_surface, _projected_box

CFG = from_dict({})
G = -1.73


@pytest.fixture(scope='module')
def sim():
    return simulate_frame(100001)


@pytest.fixture(scope='module')
def behind(sim):
    """A car 10 m ahead and, 12 m behind it, only the top of something the LiDAR (above the camera)
    sees over the car's roof: in the image its standing box covers the near car."""
    gx, gy = np.meshgrid(np.arange(3, 45, 0.25), np.arange(-14, 14, 0.25), indexing='ij')
    ground = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, G)])
    car = _box_surface([10.0, 0.0, G + 0.75], [4.2, 1.8, 1.5])
    clump = _box_surface([22.0, 0.0, G + 1.75], [4.2, 1.8, 0.5], step=0.18)   # sparser: twice as far
    pts = np.concatenate([ground, car, clump]).astype(np.float32)
    frame = SensorFrame(image=sim.frame.image, K=sim.frame.K, points=pts, T_cam_lidar=sim.frame.T_cam_lidar)
    scene = lidar_scene(frame, GroundPlane(0.0, 0.0, G), CFG.proposals)
    return frame, scene, car, clump


def _cluster_of(scene, pts):
    """The scene's cluster holding most of the band points nearest to ``pts``' centre."""
    d = np.linalg.norm(scene.xyz[:, :2] - pts[:, :2].mean(0), axis=1)
    return int(scene.label[np.argmin(d)])


def test_a_clump_seen_over_a_near_car_is_hidden_the_car_is_not(behind):
    frame, scene, car, clump = behind
    props = lidar_proposals(frame, CFG, scene=scene)
    by_cluster = {p.cluster: p for p in props}
    near, far = _cluster_of(scene, car), _cluster_of(scene, clump)
    assert near != far and near in by_cluster and far in by_cluster
    assert by_cluster[near].hidden < 0.05
    assert by_cluster[far].hidden > 0.5          # the near car's returns fill its box
    # max_hidden drops it, the car stays
    cfg = from_dict({'proposals': {'max_hidden': 0.5}})
    assert [p.cluster for p in lidar_proposals(frame, cfg, scene=scene)] == [near]


def test_each_box_is_owned_by_the_cluster_whose_box_agrees(behind):
    frame, scene, car, clump = behind
    near, far = _cluster_of(scene, car), _cluster_of(scene, clump)
    cboxes = cluster_boxes(frame, scene, CFG.proposals)
    car_box = _projected_box(frame, car)
    half = car_box.copy()
    half[2] = (car_box[0] + car_box[2]) / 2              # a detection cut at half the car
    owner, agree, n = box_owners(scene, cboxes, [car_box, half, cboxes[far]], CFG.proposals.owner_iou)
    # the far clump's box lies over the near car, yet it is the clump's
    assert owner.tolist() == [near, near, far]
    assert agree[0] > 0.8 and 0.3 < agree[1] < 0.7 and agree[2] == pytest.approx(1.0)
    assert np.all(n > 50)
    # a box over nothing has no owner and no returns
    owner, _, n = box_owners(scene, cboxes, [[5, 5, 40, 30]], CFG.proposals.owner_iou)
    assert owner[0] == -1 and n[0] == 0


def test_one_prompt_per_object():
    p = [Prompt(id=0, box=[100, 100, 200, 180], score=0.9, sources=('detector',)),
         Prompt(id=1, box=[100, 110, 150, 180], score=0.95, sources=('detector',)),    # half of 0's car
         Prompt(id=2, box=[300, 100, 340, 130], score=0.5, sources=('lidar', 'detector')),
         Prompt(id=3, box=[302, 101, 341, 131], score=0.4, sources=('lidar', 'detector')),  # 2's car
         Prompt(id=4, box=[500, 100, 540, 130], score=0.8, sources=('detector',)),
         Prompt(id=5, box=[501, 100, 541, 131], score=0.5, sources=('lidar', 'detector')),  # 20 m behind 4
         Prompt(id=6, box=[150, 100, 260, 180], score=0.6, sources=('detector',))]          # no cluster
    owners = [1, 1, 2, 3, 4, 5, -1]
    fit = [0.9, 0.4, 0.95, 0.9, 0.9, 0.9, 0.0]
    depths = [10.0, 10.0, 40.0, 41.0, 10.0, 30.0, np.nan]
    out = merge_same_cluster(p, owners, 0.3, fit, depths, nms_iou=0.5, depth_gap=3.0)
    assert [q.id for q in out] == [0, 2, 4, 5, 6]
    assert out[0].sources == ('detector',) and np.allclose(out[0].box, [100, 100, 200, 180])
    # with the merge off, everything stays
    assert len(merge_same_cluster(p, owners, 1.1, fit, depths)) == len(p)


def test_fused_prompts_one_per_car_and_the_sure_cars_without_a_detection(sim):
    cars = [g for g in sim.gt if points_in_box(sim.frame.xyz, g.center, g.size, g.yaw, 0.1).sum() >= 100
            and g.box2d[3] - g.box2d[1] > 25]
    assert len(cars) >= 3
    # each car detected twice: its box and a strong box of its left half (a tile's cut)
    dets = []
    for g in cars:
        half = g.box2d.copy()
        half[2] = (g.box2d[0] + g.box2d[2]) / 2
        dets += [Prompt(id=len(dets), box=g.box2d, score=0.9), Prompt(id=len(dets) + 1, box=half, score=0.85)]
    out, _ = fused_prompts(sim.frame, dets, CFG)
    for g in cars:
        iou = iou_matrix(np.array([g.box2d]), np.array([q.box for q in out]))[0][0]
        _, contain, _ = iou_matrix(np.array([q.box for q in out]), np.array([g.box2d]))
        on_car = np.flatnonzero(contain[:, 0] > 0.8)
        # its box (a match as the benchmark counts it): the detection's or (merged_box auto, a dense
        # cluster) its LiDAR cluster's, which may miss a hidden part
        assert iou.max() >= 0.5 and len(on_car) == 1, (g.box2d, [q.box for q in out])
    # no detection at all: the clusters whose shape alone says car are prompts, and they are cars
    out, _ = fused_prompts(sim.frame, [], CFG)
    assert len(out) >= 2 and all(q.sources == ('lidar',) for q in out)
    iou = iou_matrix(np.array([q.box for q in out]), np.array([g.box2d for g in sim.gt]))[0]
    assert iou.max(1).min() >= 0.5
    off = from_dict({'proposals': {'sure_min_points': 0}})
    assert fused_prompts(sim.frame, [], off)[0] == []


def test_slivers_are_no_car_prompts_unless_cut_by_the_image_side():
    assert sliver([100, 100, 120, 150], 0.5, 1242)            # 20 px wide, 50 high: a pole, a door
    assert not sliver([100, 100, 130, 150], 0.5, 1242)        # 30 x 50: a car seen end-on, partly hidden
    assert not sliver([0, 100, 20, 150], 0.5, 1242)           # a car cut by the left side ...
    assert not sliver([1222, 100, 1242, 150], 0.5, 1242)      # ... or the right one
    assert not sliver([100, 100, 120, 150], 0.0, 1242)        # off


def test_a_strong_detection_cut_short_confirms_its_cluster_whose_box_is_kept(sim):
    props = lidar_proposals(sim.frame, CFG)
    dense = [p for p in props if p.n_points >= 4 * CFG.proposals.min_points and p.box[3] - p.box[1] > 30]
    assert dense
    p = dense[0]
    cut = p.box.copy()
    cut[2] = p.box[0] + 0.6 * (p.box[2] - p.box[0])         # the detector saw the left 60 % of the car
    det = [Prompt(id=0, box=cut, score=0.9, sources=('detector',))]
    cfg = from_dict({'proposals': {'sure_min_points': 0}})
    out, _ = fused_prompts(sim.frame, det, cfg)
    assert len(out) == 1 and set(out[0].sources) == {'detector', 'lidar'}
    np.testing.assert_allclose(out[0].box, p.box)
    # before: a strong detection confirmed nothing and its box cut short was the prompt
    old = from_dict({'proposals': {'sure_min_points': 0, 'confirm_strong': False, 'merged_box': 'detector'}})
    out, _ = fused_prompts(sim.frame, det, old)
    assert len(out) == 1 and out[0].sources == ('detector',)
    np.testing.assert_allclose(out[0].box, cut)
