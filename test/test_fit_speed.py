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
from autolabel_ros.fit.stages import StageClock


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
