"""Unit tests of the differentiable fit core (analytic prior, synthetic geometry; fast)."""
import numpy as np
import pytest
import torch

from autolabel_ros.config import AutolabelConfig, GroundConfig
from autolabel_ros.fit.batch import FitBatch
from autolabel_ros.fit.energies import compute_energies, total_energy
from autolabel_ros.fit.ground import fit_ground
from autolabel_ros.fit.init import select_cluster
from autolabel_ros.fit.rays import camera_rays, crop_box, crop_pixels
from autolabel_ros.fit.render import render_silhouettes
from autolabel_ros.fit.result import box_from_fit, canonical_mesh
from autolabel_ros.fit.sdf import SdfModel, analytic_prior

K = np.array([[700.0, 0, 620], [0, 700.0, 190], [0, 0, 1]])
# LiDAR (x fwd, y left, z up) -> camera optical (x right, y down, z fwd), camera 0.3 m below the LiDAR
T = np.array([[0, -1, 0, 0], [0, 0, -1, -0.3], [1, 0, 0, 0], [0, 0, 0, 1]], float)


@pytest.fixture(scope='module')
def sdf():
    return SdfModel(analytic_prior(), mode='decode')


def test_decode_and_shared_lookup_agree(sdf):
    shared = SdfModel(analytic_prior(), mode='shared')
    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(3, 500, 3, generator=g) * 2 - 1) * torch.tensor([3.5, 1.5, 1.2])
    codes = torch.randn(3, sdf.d, generator=g) * sdf.stdev
    hyp = torch.arange(3)
    a = sdf.query(pts, hyp, codes)
    b = shared.query(pts, hyp, codes)
    assert torch.allclose(a, b, atol=1e-4)
    # the lookup matches the analytic volume at grid nodes (x forward: the car is longer than wide)
    assert sdf.query(torch.tensor([[[2.6, 0.0, -0.3]]]), hyp[:1], codes[:1] * 0)[0, 0] > 0
    assert sdf.query(torch.tensor([[[1.8, 0.0, -0.3]]]), hyp[:1], codes[:1] * 0)[0, 0] < 0


def _scene(sdf, pose, n_pts=300, seed=0):
    """Points on the surface of the mean shape at ``pose`` that face the LiDAR, and the object's 2D box."""
    mesh = canonical_mesh(sdf.arrays.mean, sdf.arrays.extent)
    c, s = np.cos(pose[3]), np.sin(pose[3])
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    v = mesh.vertices @ R.T + pose[:3]
    rng = np.random.default_rng(seed)
    n = np.cross(v[mesh.faces[:, 1]] - v[mesh.faces[:, 0]], v[mesh.faces[:, 2]] - v[mesh.faces[:, 0]])
    ctr = v[mesh.faces].mean(1)
    facing = np.einsum('ij,ij->i', n, -ctr) > 0
    pts = ctr[facing][rng.choice(facing.sum(), n_pts)]
    pc = pts @ T[:3, :3].T + T[:3, 3]
    uv = pc @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    box = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
    return pts, box


def _batch(sdf, pose_gt, S=24):
    pts, box = _scene(sdf, pose_gt)
    crop = crop_box(box, 1240, 380, 0.1)
    o, d = camera_rays(K, T, crop_pixels(crop, S))
    f32 = dict(dtype=torch.float32)
    ray_o, ray_d = torch.as_tensor(o, **f32), torch.as_tensor(d[None], **f32)
    with torch.no_grad():   # target: the hard silhouette of the true pose
        target = render_silhouettes(sdf, torch.as_tensor(pose_gt[None], **f32), torch.zeros(1, sdf.d), ray_o,
                                    ray_d, 48, 200.0)
    fs = pts[None, :, None, :] * (1 - 0.25 / np.linalg.norm(pts, axis=1))[None, :, None, None]
    ground = torch.tensor([0.0, 0.0, pose_gt[2] - sdf.mean_size[2] / 2], **f32)
    return FitBatch(ray_o=ray_o, ray_d=ray_d, target=(target > 0.5).float(), valid=torch.ones_like(target),
                    pts=torch.as_tensor(pts[None], **f32), w=torch.ones(1, len(pts)),
                    fs=torch.as_tensor(fs, **f32), ground=ground, has_mask=torch.tensor([True]))


def test_gradients_flow_to_pose_and_shape(sdf):
    pose_gt = np.array([12.0, 1.0, -0.9, 0.4])
    batch = _batch(sdf, pose_gt)
    xyz = torch.tensor([[12.3, 1.2, -0.8]], requires_grad=True)
    yaw = torch.tensor([0.55], requires_grad=True)
    code = torch.full((1, sdf.d), 0.3, requires_grad=True)
    cfg = AutolabelConfig().fit
    terms = compute_energies(sdf, batch, torch.tensor([0]), torch.cat([xyz, yaw[:, None]], 1), code, None,
                             cfg, 10.0)
    assert set(terms) >= {'mask', 'lidar', 'freespace', 'ground', 'shape'}
    total_energy(terms, cfg).sum().backward()
    for name, t in (('xyz', xyz), ('yaw', yaw), ('code', code)):
        assert torch.all(torch.isfinite(t.grad)), name
        assert torch.all(t.grad.abs() > 0), (name, t.grad)
    # the silhouette alone also moves the pose (render -> SDF -> pose)
    xyz.grad = None
    m = compute_energies(sdf, batch, torch.tensor([0]), torch.cat([xyz, yaw[:, None]], 1), code, None, cfg,
                         10.0, on=['mask'])['mask']
    m.sum().backward()
    assert torch.all(torch.isfinite(xyz.grad)) and xyz.grad.abs().sum() > 0


def test_optimizer_recovers_pose_from_perturbed_start(sdf):
    from autolabel_ros.fit.optimize import optimize
    pose_gt = np.array([14.0, -1.5, -0.9, 2.0])
    batch = _batch(sdf, pose_gt)
    cfg = AutolabelConfig().fit
    init_yaw = pose_gt[3] + 0.25 + np.arange(4) * np.pi / 2          # 4 hypotheses incl. the flip
    init_xyz = np.repeat([pose_gt[:3] + [0.4, -0.3, 0.1]], 4, 0)
    fit = optimize(sdf, batch, init_xyz, init_yaw, np.zeros(4, int), cfg, torch.device('cpu'))[0]
    assert np.linalg.norm(fit.pose[:2] - pose_gt[:2]) < 0.2
    assert abs(fit.pose[2] - pose_gt[2]) < 0.2
    dyaw = (fit.pose[3] - pose_gt[3] + np.pi) % (2 * np.pi) - np.pi
    assert abs(np.degrees(dyaw)) < 5
    assert len(fit.hyp_energies) == 4


def test_twin_rows_add_the_flip_of_the_best_only_where_no_survivor_is_near_it():
    from autolabel_ros.fit.optimize import twin_rows
    # object 0: survivors at 10 deg (best) and 100 deg (sideways) -> its twin (190 deg) is missing;
    # object 1: survivors at 5 deg and 170 deg (best) -> the 5-deg one is its twin already
    yaw = np.radians([10.0, 55.0, 100.0, 5.0, 90.0, 170.0])
    energy = np.array([1.0, 3.0, 2.0, 2.0, 5.0, 1.0])
    obj = np.array([0, 0, 0, 1, 1, 1])
    keep = np.array([0, 2, 3, 5])
    assert twin_rows(energy, obj, yaw, keep).tolist() == [0]     # row 0 of keep: object 0's best
    assert twin_rows(energy, obj, yaw, np.array([3, 5])).tolist() == []


def test_pruning_keeps_the_front_back_twin_of_the_best(sdf):
    """Four headings, none of them starting near the flip of the truth, and diverse pruning to two:
    the best (near the truth) and a sideways one go on, and the best's twin joins them as a third;
    with prune_twin off the flip is gone."""
    import dataclasses

    from autolabel_ros.fit.optimize import optimize
    pose_gt = np.array([14.0, -1.5, -0.9, 0.3])
    batch = _batch(sdf, pose_gt)
    init_yaw = pose_gt[3] + np.radians([5.0, 40.0, 95.0, -100.0])
    init_xyz = np.repeat([pose_gt[:3] + [0.2, -0.1, 0.0]], 4, 0)
    cfg = dataclasses.replace(AutolabelConfig().fit, iterations=40, prune_after=15, mask_from=10)

    def errs(c):
        fit = optimize(sdf, batch, init_xyz, init_yaw, np.zeros(4, int), c, torch.device('cpu'))[0]
        return [abs(np.degrees((a.pose[3] - pose_gt[3] + np.pi) % (2 * np.pi) - np.pi))
                for a in fit.alternatives]
    on, off = errs(cfg), errs(dataclasses.replace(cfg, prune_twin=False))
    assert len(off) == 2 and min(off) < 10 and max(off) < 150          # no flip of the truth survived
    assert len(on) == 3 and min(on) < 10 and max(on) > 150              # the twin did


def test_coarse_to_fine_and_early_stop_schedule(sdf):
    """The coarse-to-fine silhouette steps and the per-hypothesis early stop still recover the pose;
    a hypothesis stops as soon as its energy has moved less than settle_tol over settle_steps steps."""
    import dataclasses

    from autolabel_ros.fit.optimize import optimize
    def two(S):     # two cars in one batch: hypotheses that stop at different steps keep their object
        a, b = _batch(sdf, poses[0], S), _batch(sdf, poses[1], S)
        return FitBatch(**{k: torch.cat([getattr(a, k), getattr(b, k)]) for k in
                           ('ray_d', 'target', 'valid', 'pts', 'w', 'fs', 'has_mask')},
                        ray_o=a.ray_o, ground=a.ground)

    poses = np.array([[14.0, -1.5, -0.9, 2.0], [20.0, 3.0, -0.9, 0.5]])
    cfg = dataclasses.replace(AutolabelConfig().fit, iterations=80, prune_after=30, mask_from=30,
                              coarse_crop_size=12, coarse_ray_samples=6, fine_steps=30, settle_steps=5,
                              settle_tol=1e-2)
    fine_from = cfg.iterations - cfg.fine_steps
    cpu = torch.device('cpu')
    fits = optimize(sdf, two(24), np.repeat(poses[:, :3] + [0.4, -0.3, 0.1], 4, 0),
                    (poses[:, 3:] + 0.25 + np.arange(4) * np.pi / 2).ravel(), np.repeat([0, 1], 4), cfg, cpu,
                    coarse=two(12))
    for fit, pose_gt in zip(fits, poses):
        assert np.linalg.norm(fit.pose[:2] - pose_gt[:2]) < 0.2 and abs(fit.pose[2] - pose_gt[2]) < 0.2
        dyaw = (fit.pose[3] - pose_gt[3] + np.pi) % (2 * np.pi) - np.pi
        assert abs(np.degrees(dyaw)) < 5
        assert len(fit.alternatives) == cfg.keep_hypotheses
        assert all(fine_from + cfg.settle_steps <= a.steps <= cfg.iterations for a in fit.alternatives)
    assert len({a.steps for f in fits for a in f.alternatives}) > 1      # they did stop at different steps
    pose_gt = poses[0]
    batch, coarse = _batch(sdf, pose_gt), _batch(sdf, pose_gt, S=12)
    init_yaw = pose_gt[3] + 0.25 + np.arange(4) * np.pi / 2
    init_xyz = np.repeat([pose_gt[:3] + [0.4, -0.3, 0.1]], 4, 0)
    # any energy change counts as settled: every survivor stops once its window is full
    loose = dataclasses.replace(cfg, settle_tol=1e9)
    fits = optimize(sdf, batch, init_xyz, init_yaw, np.zeros(4, int), loose, cpu, coarse=coarse)[0]
    assert [a.steps for a in fits.alternatives] == [fine_from + cfg.settle_steps] * 2


def test_mesh_and_tight_box(sdf):
    mesh = canonical_mesh(sdf.arrays.mean, sdf.arrays.extent)
    center, size, yaw, mesh_l = box_from_fit(np.array([5.0, 2.0, -1.0, np.pi / 2]), mesh, np.ones(3))
    import trimesh
    assert trimesh.Trimesh(mesh.vertices, mesh.faces).is_watertight
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    assert np.allclose(size, hi - lo)
    assert 4.0 < size[0] < 4.5 and 1.6 < size[1] < 1.8            # the analytic mean car: 4.2 x 1.7
    # yaw 90 deg: the car's length lies along LiDAR y
    ext = mesh_l.vertices.max(0) - mesh_l.vertices.min(0)
    assert ext[1] == pytest.approx(size[0], abs=1e-6) and ext[0] == pytest.approx(size[1], abs=1e-6)


def test_ground_plane_ransac():
    rng = np.random.default_rng(1)
    xy = rng.uniform([-30, -20], [30, 20], (4000, 2))
    z = 0.02 * xy[:, 0] - 0.01 * xy[:, 1] - 1.7 + rng.normal(0, 0.02, len(xy))
    clutter = rng.uniform([-30, -20, -1.5], [30, 20, 2.0], (1500, 3))
    pts = np.vstack([np.column_stack([xy, z]), clutter])
    g = fit_ground(pts, GroundConfig(), np.random.default_rng(0))
    assert g is not None
    assert g.a == pytest.approx(0.02, abs=0.005) and g.b == pytest.approx(-0.01, abs=0.005)
    assert g.c == pytest.approx(-1.7, abs=0.05)
    assert fit_ground(np.zeros((5, 3)), GroundConfig(), np.random.default_rng(0)) is None


def test_cluster_choice_prefers_box_consistent_depth():
    rng = np.random.default_rng(2)
    gx, gz = np.meshgrid(np.arange(0, 4, 0.25), np.arange(0, 1, 0.4))
    car = np.column_stack([30 + gx.ravel(), np.zeros(gx.size), gz.ravel() - 1.2])   # 48 points
    bush = rng.normal([15, 0, -0.8], [0.3, 0.3, 0.3], (60, 3))     # more points, but at half the depth
    pts = np.vstack([car, bush])
    depth = pts[:, 0]
    keep = select_cluster(pts, depth, 0.6, box_depth=31.0)
    assert keep[:len(car)].all() and not keep[len(car):].any()
    keep = select_cluster(pts, depth, 0.6, box_depth=None)          # no box cue: the largest cluster
    assert keep[len(car):].all()


def test_ground_gap_is_the_mesh_bottom_above_a_tilted_plane():
    """The ground term reads the shape's own lowest point: it must agree with the marching-cubes mesh
    (the label's box), follow the plane's tilt and give gradients to height, heading and shape."""
    from autolabel_ros.fit.energies import ground_gap
    from autolabel_ros.shape.prior import load_prior
    sdf = SdfModel(load_prior(None), downsample=2)
    rng = np.random.default_rng(3)
    codes = torch.as_tensor(np.concatenate([np.zeros((1, sdf.d)), rng.standard_normal((3, sdf.d))])
                            * sdf.arrays.stdev, dtype=torch.float32).requires_grad_(True)
    pose = torch.tensor([[10.0, 2.0, -0.9, 0.3]] * 4, requires_grad=True)
    plane = torch.tensor([0.03, -0.02, -1.8])                      # a ~2 deg slope
    gap = ground_gap(sdf, pose, codes, None, plane.expand(4, 3))      # the plane under each hypothesis
    for b in range(4):
        mesh = canonical_mesh(sdf.decode_full(codes[b].detach().numpy()), sdf.arrays.extent)
        _, _, _, m = box_from_fit(pose[b].detach().numpy(), mesh, np.ones(3))
        v = m.vertices
        expected = (v[:, 2] - (0.03 * v[:, 0] - 0.02 * v[:, 1] - 1.8)).min()
        assert float(gap[b].detach()) == pytest.approx(expected, abs=0.015)
    gap.sum().backward()
    assert torch.allclose(pose.grad[:, 2], torch.ones(4))                # d gap / d z = 1
    assert torch.all(pose.grad[:, 3] != 0) and torch.all(codes.grad.abs().sum(1) > 0)
    # one plane per hypothesis (the road under each object): a plane 0.12 m higher under the second
    # hypothesis lowers its gap by 0.12 m and leaves the others as they were
    planes = plane.repeat(4, 1)
    planes[1, 2] += 0.12
    gap2 = ground_gap(sdf, pose, codes, None, planes).detach()
    assert float(gap2[1]) == pytest.approx(float(gap[1].detach()) - 0.12, abs=1e-4)
    assert torch.allclose(gap2[[0, 2, 3]], gap.detach()[[0, 2, 3]])


def test_local_ground_offsets_follow_the_road_under_each_object():
    """A road that rises 0.10 m beyond x = 30 m (a plane fit over 40 m sits between its parts): the
    offset under a car at 40 m is that road's height above the plane, under a car at 10 m the near
    road's; too few road points near a centre, or radius 0, give 0; a car's own points above the road
    do not count."""
    from autolabel_ros.fit.ground import GroundPlane, local_offsets
    rng = np.random.default_rng(0)
    xy = rng.uniform([2.0, -10.0], [50.0, 10.0], (20000, 2))
    z = -1.7 + np.where(xy[:, 0] > 30.0, 0.10, 0.0) + rng.normal(0.0, 0.01, len(xy))
    car = np.column_stack([rng.uniform(38.0, 42.0, 500), rng.uniform(-1.0, 1.0, 500),
                           rng.uniform(-1.5, -0.2, 500)])            # body points of a car at 40 m
    scan = np.concatenate([np.column_stack([xy, z]), car])
    plane = GroundPlane(0.0, 0.0, -1.66)                                # between the two road parts
    off = local_offsets(scan, plane, np.array([[40.0, 0.0], [10.0, 0.0], [80.0, 0.0]]), 4.0, 0.15)
    assert off[0] == pytest.approx(0.06, abs=0.01)
    assert off[1] == pytest.approx(-0.04, abs=0.01)
    assert off[2] == 0.0                                                 # no road point within 4 m
    assert np.all(local_offsets(scan, plane, np.array([[40.0, 0.0]]), 0.0, 0.15) == 0.0)
    assert np.all(local_offsets(scan, None, np.array([[40.0, 0.0]]), 4.0, 0.15) == 0.0)


def test_thinned_batch_keeps_evenly_spaced_points_of_the_large_objects(sdf):
    a, b = _batch(sdf, np.array([14.0, -1.5, -0.9, 2.0])), _batch(sdf, np.array([20.0, 3.0, -0.9, 0.5]))
    n_b = 40                                        # the second object: fewer points than the cap
    w_b = torch.zeros_like(b.w)
    w_b[0, :n_b] = 1.0
    two = FitBatch(**{k: torch.cat([getattr(a, k), getattr(b, k)]) for k in
                      ('ray_d', 'target', 'valid', 'pts', 'fs', 'has_mask')},
                   w=torch.cat([a.w, w_b]), ray_o=a.ray_o, ground=a.ground)
    thin = two.thinned(64)
    assert thin.pts.shape[:2] == (2, 64) and thin.fs.shape[:2] == (2, 64)
    rows = np.arange(64) * 300 // 64                # object 0 has 300 points: every ~4.7th
    assert torch.equal(thin.pts[0], a.pts[0, rows]) and torch.equal(thin.fs[0], a.fs[0, rows])
    assert torch.equal(thin.w[0], torch.ones(64))
    assert torch.equal(thin.pts[1, :n_b], b.pts[0, :n_b]) and torch.equal(thin.w[1, :n_b], torch.ones(n_b))
    assert float(thin.w[1, n_b:].sum()) == 0.0       # padding stays padding
    assert thin.lidar_rows.rows.shape[0] == 64 + n_b
    assert thin.target is two.target and two.thinned(300) is two


@pytest.mark.parametrize('coarse_points', [0, 32])
def test_optimizer_recovers_pose_with_fewer_points_before_the_fine_steps(sdf, coarse_points):
    import dataclasses

    from autolabel_ros.fit.optimize import optimize
    pose_gt = np.array([14.0, -1.5, -0.9, 2.0])
    cfg = dataclasses.replace(AutolabelConfig().fit, prune_points=32, coarse_points=coarse_points)
    init_yaw = pose_gt[3] + 0.25 + np.arange(4) * np.pi / 2
    fit = optimize(sdf, _batch(sdf, pose_gt), np.repeat([pose_gt[:3] + [0.4, -0.3, 0.1]], 4, 0), init_yaw,
                   np.zeros(4, int), cfg, torch.device('cpu'))[0]
    assert np.linalg.norm(fit.pose[:2] - pose_gt[:2]) < 0.2 and abs(fit.pose[2] - pose_gt[2]) < 0.2
    assert abs(np.degrees((fit.pose[3] - pose_gt[3] + np.pi) % (2 * np.pi) - np.pi)) < 5


def test_lidar_term_reads_the_capped_points_in_the_steps_of_each_phase(sdf, monkeypatch):
    import dataclasses

    import autolabel_ros.fit.energies as energies
    from autolabel_ros.fit.optimize import optimize
    seen, lidar0 = [], energies._lidar_terms

    def counting(sdf_, batch, *a):
        seen.append(int(batch.lidar_rows.rows.shape[0]))
        return lidar0(sdf_, batch, *a)
    monkeypatch.setattr(energies, '_lidar_terms', counting)
    pose_gt = np.array([14.0, -1.5, -0.9, 2.0])
    cfg = dataclasses.replace(AutolabelConfig().fit, iterations=12, prune_after=4, mask_from=4, fine_steps=3,
                              prune_points=32, coarse_points=100, settle_steps=0)
    optimize(sdf, _batch(sdf, pose_gt), np.repeat([pose_gt[:3]], 4, 0), pose_gt[3] + np.arange(4) * np.pi / 2,
             np.zeros(4, int), cfg, torch.device('cpu'))
    # 4 steps on 32 points, the pruning on all 300, 5 coarse steps on 100, 3 fine steps and the final
    # energy on all
    assert seen == [32] * 4 + [300] + [100] * 5 + [300] * 4
