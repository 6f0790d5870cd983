"""The fit's faster formulations give what the plain ones give (analytic prior; fast)."""
import numpy as np
import pytest
import torch

from autolabel_ros.config import AutolabelConfig
from autolabel_ros.fit.batch import FitBatch
from autolabel_ros.fit.energies import compute_energies
from autolabel_ros.fit.optimize import _State
from autolabel_ros.fit.rays import to_object_frame
from autolabel_ros.fit.sdf import SdfModel, analytic_prior
from autolabel_ros.core.stage_clock import StageClock


@pytest.fixture(scope='module')
def sdf():
    return SdfModel(analytic_prior(), mode='decode')


def _padded_batch(counts, seed=0):
    """Objects with very different point counts in the padded (N, M) layout (weight 0 = padding)."""
    g = torch.Generator().manual_seed(seed)
    N, M, K = len(counts), max(counts), 3
    pts = torch.zeros(N, M, 3)
    w = torch.zeros(N, M)
    for k, n in enumerate(counts):
        pts[k, :n] = torch.tensor([10.0 + 3 * k, 2.0, -0.8]) + torch.randn(n, 3, generator=g) * torch.tensor(
            [1.5, 0.7, 0.4])
        w[k, :n] = 1.0
    fs = pts[:, :, None] * (1 - 0.25 * torch.arange(1, K + 1) / pts.norm(dim=-1, keepdim=True).clamp_min(1e-3)
                            )[..., None]
    return FitBatch(ray_o=torch.zeros(3), ray_d=torch.zeros(N, 1, 3), target=torch.zeros(N, 1),
                    valid=torch.ones(N, 1), pts=pts, w=w, fs=fs, ground=None,
                    has_mask=torch.zeros(N, dtype=torch.bool))


def test_lidar_term_skips_padding_with_the_same_value(sdf):
    """The packed LiDAR rows give the weighted means of the padded layout, an object without points 0."""
    cfg = AutolabelConfig().fit
    batch = _padded_batch([200, 7, 0, 41])
    obj = torch.tensor([0, 0, 1, 2, 3, 3, 1])
    B = len(obj)
    g = torch.Generator().manual_seed(1)
    centre = torch.tensor([[10.0, 2.0, -0.8]]) + torch.tensor([3.0, 0, 0]) * obj[:, None]
    pose = torch.cat([centre + torch.randn(B, 3, generator=g) * 0.2, torch.rand(B, 1, generator=g) * 6], 1)
    code_n = torch.randn(B, sdf.d, generator=g) * 0.5
    terms = compute_energies(sdf, batch, obj, pose, code_n, None, cfg, 10.0, on=['lidar'])
    # the plain padded computation
    codes = code_n * sdf.stdev
    M, K = batch.w.shape[1], batch.fs.shape[2]
    p = to_object_frame(batch.pts[obj], pose)
    q = to_object_frame(batch.fs[obj].reshape(B, M * K, 3), pose)
    phi = sdf.query(torch.cat([p, q], 1), torch.arange(B), codes)
    w = batch.w[obj]
    tau = cfg.lidar_robust
    lidar = (tau * torch.tanh(phi[:, :M].abs() / tau) * w).sum(-1) / w.sum(-1).clamp_min(1e-6)
    free = (torch.relu(-phi[:, M:]).view(B, M, K).mean(-1) * w).sum(-1) / w.sum(-1).clamp_min(1e-6)
    assert torch.allclose(terms['lidar'], lidar, atol=1e-6)
    assert torch.allclose(terms['freespace'], free, atol=1e-6)
    assert terms['lidar'][3] == 0 and terms['lidar'][0] > 0.01
    assert len(batch.lidar_rows.rows) == 248


def test_ground_search_finds_the_lowest_crossing_of_every_column(sdf):
    """The vectorised search = a column-by-column walk up from the bottom node."""
    g = torch.Generator().manual_seed(2)
    codes = torch.randn(5, sdf.d, generator=g) * sdf.stdev * 2
    zc, valid, first = sdf.bottom_heights(codes)
    vol, z = sdf.bot_vol, sdf.bot_z                                      # 1+d, k, C
    phi = vol[0] + torch.einsum('bj,jkc->bkc', codes, vol[1:])
    assert valid.any()
    for b in range(len(codes)):
        for c in range(0, phi.shape[2], 37):
            inside = np.flatnonzero(phi[b, :, c].numpy() <= 0)
            assert bool(valid[b, c]) == (len(inside) > 0)
            if len(inside):
                j = int(inside[0])
                assert int(first[b, c]) == j
                if j > 0:       # linear zero crossing between node j - 1 (outside) and node j (inside)
                    p0, p1 = float(phi[b, j - 1, c]), float(phi[b, j, c])
                    want = float(z[j - 1]) + p0 / (p0 - p1) * float(z[1] - z[0])
                    assert abs(float(zc[b, c]) - want) < 1e-5


def test_one_block_adam_matches_torch_adam():
    """The hypotheses' single-leaf Adam takes torch.optim.Adam's steps (one learning rate per group)."""
    cfg = AutolabelConfig().fit
    g = torch.Generator().manual_seed(3)
    xyz, yaw, code, ls = (torch.randn(4, 3, generator=g), torch.randn(4, generator=g),
                          torch.randn(4, 5, generator=g), torch.randn(4, 3, generator=g) * 0.1)
    st = _State(xyz, yaw, code, ls, torch.zeros(4, dtype=torch.long), torch.arange(4), cfg)
    ref = [t.clone().requires_grad_(True) for t in (xyz, yaw, code, ls)]
    opt = torch.optim.Adam([{'params': [r], 'lr': lr} for r, lr in
                            zip(ref, (cfg.lr, cfg.lr_yaw, cfg.lr_shape, cfg.lr_scale))])
    target = torch.randn(4, 12, generator=g)
    for it in range(20):
        f = 0.5 ** (it / 19)
        ((st.p - target) ** 4).sum().backward()
        st.step(f)
        for grp, lr in zip(opt.param_groups, (cfg.lr, cfg.lr_yaw, cfg.lr_shape, cfg.lr_scale)):
            grp['lr'] = lr * f
        opt.zero_grad()
        ((torch.cat([ref[0], ref[1][:, None], ref[2], ref[3]], 1) - target) ** 4).sum().backward()
        opt.step()
    got = torch.cat([st.xyz, st.yaw[:, None], st.code_n, st.log_scale], 1).detach()
    want = torch.cat([ref[0], ref[1][:, None], ref[2], ref[3]], 1).detach()
    assert torch.allclose(got, want, atol=1e-6)
    assert (got - torch.cat([xyz, yaw[:, None], code, ls], 1)).abs().max() > 0.05     # it did move


def test_stage_clock_adds_up():
    clock = StageClock()
    for _ in range(3):
        with clock('a'):
            sum(range(20000))
    with clock('b'):
        pass
    assert set(clock.cpu) == {'a', 'b'} and clock.wall['a'] > clock.wall['b'] >= 0


def _ray_batch(sdf, B=3, P=40, seed=4, dtype=torch.float32):
    """Rays from a camera 8 m behind B cars (random poses, codes, scales) through their volumes."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.cat([torch.tensor([[8.0, 0.5, -0.8]]) + torch.randn(B, 3, generator=g) * 0.3,
                      torch.rand(B, 1, generator=g) * 6], 1).to(dtype)
    codes = (torch.randn(B, sdf.d, generator=g) * sdf.stdev).to(dtype)
    scales = torch.exp(torch.randn(B, 3, generator=g) * 0.05).to(dtype)
    target = pose[:, None, :3] + torch.randn(B, P, 3, generator=g).to(dtype) * torch.tensor([1.5, 0.8, 0.5],
                                                                                             dtype=dtype)
    ray_d = target / target.norm(dim=-1, keepdim=True)
    return pose, codes, scales, torch.zeros(3, dtype=dtype), ray_d


def test_outline_render_backward_matches_autograd_through_all_samples(sdf):
    """The outline render's backward through the 3 samples around each ray's minimum (one hand-written
    node) gives the gradient of autograd through every sample of the plain render."""
    from autolabel_ros.fit.render import (composite_silhouette, outline_min_sdf, ray_min_sdf, sample_rays,
                                          sdf_at_samples)
    pose, codes, scales, ray_o, ray_d = _ray_batch(sdf)
    half = sdf.extent.view(1, 1, 3) * scales.view(-1, 1, 3)
    w = torch.rand(ray_d.shape[:2], generator=torch.Generator().manual_seed(5))
    grads = []
    for fast in (True, False):
        p = pose.clone().requires_grad_(True)
        c = codes.clone().requires_grad_(True)
        s = scales.clone().requires_grad_(True)
        rs = sample_rays(p, ray_o, ray_d, half, 12)
        vols = sdf.volumes(c)
        m = (outline_min_sdf(sdf, rs, c, s, vols) if fast
             else ray_min_sdf(sdf_at_samples(sdf, rs, c, s, vols)))
        (composite_silhouette(m, rs, 20.0, 'outline') * w).sum().backward()
        grads.append((m.detach(), p.grad, c.grad, s.grad))
    (m1, *g1), (m0, *g0) = grads
    assert len(m1) > 50 and torch.allclose(m1, m0, atol=1e-5)   # the same values (2D vs 3D lookups)
    for a, b in zip(g1, g0):
        assert b.abs().max() > 1e-3                       # the gradient is not trivially zero
        assert torch.allclose(a, b, rtol=2e-3, atol=1e-4)  # float32 row coordinates of the 2D lookup


def test_outline_render_without_gradient_is_the_plain_one(sdf):
    """Without gradient (verification, pruning, final energy) the outline render's 2D lookups give the
    plain render's ray minima (3D lookups of every sample)."""
    from autolabel_ros.fit.render import outline_min_sdf, ray_min_sdf, sample_rays, sdf_at_samples
    pose, codes, scales, ray_o, ray_d = _ray_batch(sdf)
    rs = sample_rays(pose, ray_o, ray_d, sdf.extent.view(1, 1, 3) * scales.view(-1, 1, 3), 32)
    with torch.no_grad():
        fast = outline_min_sdf(sdf, rs, codes, scales)
        plain = ray_min_sdf(sdf_at_samples(sdf, rs, codes, scales))
    assert len(fast) > 50 and torch.allclose(fast, plain, atol=1e-5)


def test_outline_samples_node_passes_gradcheck():
    """The hand-written node's backward against finite differences (float64, two hypotheses' small
    6 x 5 x 7 volumes in a stack of 16 rows of 6 x 7 (z, x) planes)."""
    from autolabel_ros.fit.render import _RayMinSamples
    g = torch.Generator().manual_seed(6)
    shape = (6, 5, 7)
    vols = torch.randn(1, 1, 16, 6, 7, dtype=torch.float64, generator=g).requires_grad_(True)
    o = (torch.rand(9, 3, dtype=torch.float64, generator=g) * 0.4 - 0.9).requires_grad_(True)
    d = (torch.rand(9, 3, dtype=torch.float64, generator=g) * 0.3 + 0.1).requires_grad_(True)
    t = (torch.arange(8, dtype=torch.float64) + 0.5)[None].repeat(9, 1) * 0.6
    smin = torch.ones(9, dtype=torch.float64)
    hyp = torch.randint(0, 2, (9,), generator=g)

    def f(vols, o, d):
        return _RayMinSamples.apply(vols, o, d, t, smin, hyp, shape)[0]

    picks = _RayMinSamples.apply(vols, o, d, t, smin, hyp, shape)[1]
    assert torch.autograd.gradcheck(f, (vols, o, d), eps=1e-6, atol=1e-5)
    assert (picks == 1).any()                            # some rays take the parabola's vertex


def test_object_rays_node_is_the_plain_transform():
    """The rays' object-frame node (rotation as a product, gradient by hand) gives the plain transform
    (to_object_frame, rotate_dirs, over the half sizes) and its autograd gradient in pose and half
    sizes, per-hypothesis half sizes and one for all."""
    from autolabel_ros.fit.rays import _ObjectRays, rotate_dirs
    g = torch.Generator().manual_seed(16)
    B, P = 5, 7
    pose0 = torch.cat([torch.randn(B, 3, generator=g) * 4, torch.rand(B, 1, generator=g) * 6], 1).double()
    ray_o = torch.randn(3, generator=g).double()
    ray_d = torch.randn(B, P, 3, generator=g).double()
    halves = (torch.rand(B, 1, 3, generator=g).double() + 0.5, torch.rand(1, 1, 3, generator=g).double() + 1)
    for half0 in halves:
        wo, wd = torch.randn(B, 1, 3, generator=g).double(), torch.randn(B, P, 3, generator=g).double()
        out = []
        for plain in (False, True):
            pose, half = pose0.clone().requires_grad_(True), half0.clone().requires_grad_(True)
            if plain:
                o = to_object_frame(ray_o.view(1, 1, 3).expand(B, 1, 3), pose) / half
                d = rotate_dirs(ray_d, pose[:, 3]) / half
            else:
                o, d = _ObjectRays.apply(pose, half, ray_o, ray_d)
            ((o * wo).sum() + (d * wd).sum()).backward()
            out.append((o.detach(), d.detach(), pose.grad, half.grad))
        for a, b in zip(*out):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-10)
        args = (pose0.clone().requires_grad_(True), half0.clone().requires_grad_(True))
        assert torch.autograd.gradcheck(lambda p, h: _ObjectRays.apply(p, h, ray_o, ray_d), args)


def test_points_to_object_node_is_the_plain_transform():
    """The LiDAR points' object-frame node: to_object_frame's values and autograd gradient on the poses,
    several points per hypothesis and a hypothesis without points."""
    from autolabel_ros.fit.rays import points_to_object
    g = torch.Generator().manual_seed(17)
    pose0 = torch.cat([torch.randn(4, 3, generator=g) * 4, torch.rand(4, 1, generator=g) * 6], 1).double()
    p = torch.randn(30, 3, generator=g).double() * 5
    hyp = torch.randint(0, 3, (30,), generator=g)
    w = torch.randn(30, 3, generator=g).double()
    out = []
    for plain in (False, True):
        pose = pose0.clone().requires_grad_(True)
        q = to_object_frame(p[:, None], pose[hyp])[:, 0] if plain else points_to_object(p, pose, hyp)
        (q * w).sum().backward()
        out.append((q.detach(), pose.grad))
    for a, b in zip(*out):
        assert torch.allclose(a, b, atol=1e-10)
    assert out[0][1][3].abs().max() == 0 and out[0][1][:3].abs().min() > 0


def test_freespace_term_gradient_is_the_padded_one(sdf):
    """Free-space samples looked up with gradient only when inside the model: the same gradient as the
    plain lookup of every sample."""
    cfg = AutolabelConfig().fit
    batch = _padded_batch([120, 30])
    obj = torch.tensor([0, 0, 1])
    g = torch.Generator().manual_seed(7)
    centre = torch.tensor([[10.0, 2.0, -0.8]]) + torch.tensor([3.0, 0, 0]) * obj[:, None]
    pose0 = torch.cat([centre + torch.randn(3, 3, generator=g) * 0.3, torch.rand(3, 1, generator=g) * 6], 1)
    code0 = torch.randn(3, sdf.d, generator=g) * 0.5
    pose, code_n = pose0.clone().requires_grad_(True), code0.clone().requires_grad_(True)
    terms = compute_energies(sdf, batch, obj, pose, code_n, None, cfg, 10.0, on=['lidar'])
    terms['freespace'].sum().backward()
    pose_r, code_r = pose0.clone().requires_grad_(True), code0.clone().requires_grad_(True)
    B, M, K = 3, batch.w.shape[1], batch.fs.shape[2]
    q = to_object_frame(batch.fs[obj].reshape(B, M * K, 3), pose_r)
    phi = sdf.query(q, torch.arange(B), code_r * sdf.stdev)
    w = batch.w[obj]
    free = (torch.relu(-phi).view(B, M, K).mean(-1) * w).sum(-1) / w.sum(-1).clamp_min(1e-6)
    free.sum().backward()
    assert free.min() > 1e-3                              # some samples are inside the model
    assert torch.allclose(terms['freespace'], free, atol=1e-6)
    assert torch.allclose(pose.grad, pose_r.grad, atol=1e-5)
    assert torch.allclose(code_n.grad, code_r.grad, atol=1e-5)


def _hypotheses_over_a_plane(sdf, seed: int, B: int = 6):
    """B random hypotheses (pose, code, scales) around a car-like height over a slightly tilted plane."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.cat([torch.randn(B, 2, generator=g) * 5, torch.randn(B, 1, generator=g) * 0.2 - 0.9,
                      torch.rand(B, 1, generator=g) * 6], 1)
    codes = torch.randn(B, sdf.d, generator=g) * sdf.stdev
    scales = torch.exp(torch.randn(B, 3, generator=g) * 0.05)
    return pose, codes, scales, torch.tensor([0.03, -0.02, -1.7]).expand(B, 3)   # the plane under each


def test_ground_gap_is_the_lowest_column_gap(sdf):
    """The ground term's column search (the plane under every column as one product) picks the column
    of the smallest gap of the plain per-column formula, and its value."""
    from autolabel_ros.fit.energies import ground_gap
    pose, codes, scales, plane = _hypotheses_over_a_plane(sdf, 8)
    got = ground_gap(sdf, pose, codes, scales, plane)
    zc, valid, _ = sdf.bottom_heights(codes)
    xy = sdf.bot_xy[None] * scales[:, None, :2]
    c, s = torch.cos(pose[:, 3:4]), torch.sin(pose[:, 3:4])
    X = pose[:, 0:1] + c * xy[..., 0] - s * xy[..., 1]
    Y = pose[:, 1:2] + s * xy[..., 0] + c * xy[..., 1]
    gap = pose[:, 2:3] + zc * scales[:, 2:3] - (plane[:, 0:1] * X + plane[:, 1:2] * Y + plane[:, 2:3])
    want = torch.where(valid, gap, torch.full_like(gap, 1e3)).min(1).values
    assert valid.any(1).all()
    assert torch.allclose(got, want, atol=1e-5)


def _plain_ground_gap(sdf, pose, codes, scales, plane, col, first):
    """The ground gap at column ``col`` (B,) with first inside node ``first`` (B,), by autograd through
    the plain formulas: the crossing of the column's two nodes, the plane under the rotated column."""
    lo = (first - 1).clamp_min(0)
    v = torch.stack([sdf.bot_vol[:, lo, col], sdf.bot_vol[:, first, col]], -1)      # 1+d, B, 2
    p = v[0] + torch.einsum('kbt,bk->bt', v[1:], codes)
    t = (p[:, 0] / (p[:, 0] - p[:, 1]).clamp_min(1e-6)).clamp(0.0, 1.0)
    z1 = sdf.bot_z[lo] + torch.where(first > 0, t, torch.zeros_like(t)) * (sdf.bot_z[1] - sdf.bot_z[0])
    uv = sdf.bot_xy[col] * scales[:, :2]
    c, s = torch.cos(pose[:, 3]), torch.sin(pose[:, 3])
    X = pose[:, 0] + c * uv[:, 0] - s * uv[:, 1]
    Y = pose[:, 1] + s * uv[:, 0] + c * uv[:, 1]
    return pose[:, 2] + z1 * scales[:, 2] - (plane[:, 0] * X + plane[:, 1] * Y + plane[:, 2])


def test_ground_gap_node_gradient_is_autograd_of_the_plain_formula(sdf):
    """The ground term's hand-written derivatives (pose, code, scales) = autograd's through the plain
    formulas at the lowest column, and its value, on hypotheses with crossings between nodes."""
    from autolabel_ros.fit.energies import ground_gap
    pose0, code0, scales0, plane = _hypotheses_over_a_plane(sdf, 14, B=8)
    w = torch.randn(8, generator=torch.Generator().manual_seed(15))
    grads = []
    for plain in (False, True):
        pose, code, scales = (t.clone().requires_grad_(True) for t in (pose0, code0, scales0))
        if plain:       # the lowest column by the plain per-column search of the test above
            zc, valid, first = sdf.bottom_heights(code0)
            xy = sdf.bot_xy[None] * scales0[:, None, :2]
            c, s = torch.cos(pose0[:, 3:4]), torch.sin(pose0[:, 3:4])
            X = pose0[:, 0:1] + c * xy[..., 0] - s * xy[..., 1]
            Y = pose0[:, 1:2] + s * xy[..., 0] + c * xy[..., 1]
            under = plane[:, 0:1] * X + plane[:, 1:2] * Y + plane[:, 2:3]
            col = torch.where(valid, pose0[:, 2:3] + zc * scales0[:, 2:3] - under, 1e3).argmin(1)
            gap = _plain_ground_gap(sdf, pose, code, scales, plane, col, first[torch.arange(8), col])
        else:
            gap = ground_gap(sdf, pose, code, scales, plane)
        (gap * w).sum().backward()
        grads.append((gap.detach(), pose.grad, code.grad, scales.grad))
    (g1, *d1), (g0, *d0) = grads
    assert torch.allclose(g1, g0, atol=1e-5)
    for a, b in zip(d1, d0):
        assert b.abs().max() > 1e-3
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_ground_search_on_the_columns_near_the_plane_gives_the_full_search(sdf):
    """The ground term over each hypothesis' own k columns nearest the plane (the fit's search between
    full searches) = the search over every column, value and gradient."""
    from autolabel_ros.fit.energies import ground_columns, ground_gap
    pose0, code0, scales, plane = _hypotheses_over_a_plane(sdf, 9)
    cols = ground_columns(sdf, pose0, code0, scales, plane, 8)
    assert cols.shape == (len(pose0), 8) and len(sdf.bot_xy) > 8
    out = []
    for c in (None, cols):
        pose, code = pose0.clone().requires_grad_(True), code0.clone().requires_grad_(True)
        gap = ground_gap(sdf, pose, code, scales, plane, c)
        gap.sum().backward()
        out.append((gap.detach(), pose.grad, code.grad))
    (g0, p0, c0), (g1, p1, c1) = out
    assert torch.allclose(g0, g1, atol=1e-6) and torch.allclose(p0, p1, atol=1e-6)
    assert torch.allclose(c0, c1, atol=1e-6) and c0.abs().max() > 1e-3


def test_bottom_columns_are_gathered_once_per_column_set(sdf):
    """The ground search's column slab: the gathered columns of the full slab, kept for the same cols
    tensor, gathered again for a new one (equal values or not)."""
    cols = torch.tensor([3, 17, 40])
    vol, xy = sdf.bottom_columns(cols)
    assert torch.equal(vol, sdf.bot_vol_ck[:, cols]) and torch.equal(xy, sdf.bot_xy[cols])
    assert sdf.bottom_columns(cols)[0] is vol
    other = cols.clone()
    assert sdf.bottom_columns(other)[0] is not vol and torch.equal(sdf.bottom_columns(other)[0], vol)
    assert sdf.bottom_columns(None)[0] is sdf.bot_vol_ck
    per_hyp = torch.tensor([[3, 17], [40, 5], [9, 9]])                 # each hypothesis' own columns
    vol, xy = sdf.bottom_columns(per_hyp)
    assert vol.shape == (3, 1 + sdf.d, 2, sdf.bot_vol_ck.shape[2]) and xy.shape == (3, 2, 2)
    assert torch.equal(vol[1, :, 0], sdf.bot_vol_ck[:, 40]) and torch.equal(xy[1, 0], sdf.bot_xy[40])


def test_views_of_are_the_gathered_crops_and_follow_a_new_obj_tensor():
    """FitBatch.views_of keeps the silhouette term's gathered crop tensors for one obj tensor and
    gathers again for another (the optimiser's pruning): the same values as indexing directly."""
    g = torch.Generator().manual_seed(12)
    N, P = 3, 16
    target = (torch.rand(N, P, generator=g) > 0.5).float()
    valid = (torch.rand(N, P, generator=g) > 0.2).float()
    batch = FitBatch(ray_o=torch.zeros(3), ray_d=torch.randn(N, P, 3, generator=g), target=target,
                     valid=valid,
                     pts=torch.zeros(N, 1, 3), w=torch.ones(N, 1), fs=torch.zeros(N, 1, 3, 3), ground=None,
                     has_mask=target.sum(-1) > 0.5)
    for obj in (torch.tensor([0, 0, 1, 2]), torch.tensor([2, 1])):
        v = batch.views_of(obj)
        assert batch.views_of(obj) is v
        assert torch.equal(v.ray_d, batch.ray_d[obj]) and torch.equal(v.valid, valid[obj])
        assert torch.equal(v.target, target[obj] * valid[obj])
        assert torch.equal(v.target_sum, (target[obj] * valid[obj]).sum(-1))
    assert batch.views_of(torch.tensor([2, 1])) is not v          # a new tensor: gathered again
