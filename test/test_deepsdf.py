"""The DeepSDF shape space (shape/deepsdf.py): auto-decoder training with latents on the unit sphere,
analytic normals, the bake into the fitter's grids, safe files, and the packaged space in the pipeline."""
import numpy as np
import pytest
import torch

from autolabel_ros.core.device import torch_threads
from autolabel_ros.shape.deepsdf import (DeepSdf, DeepSdfSpace, bake_prior, decode_grid, default_deepsdf_path,
                                         exp_map, log_map, train_deepsdf)
from autolabel_ros.shape.prior import PriorError, grid_points

RES = (32, 14, 13)
EXT = (3.2, 1.35, 1.25)


def _box_grids(n: int, seed: int = 0):
    """SDF grids of rounded boxes of varied length / width / height (a family a 3-D latent can span)."""
    rng = np.random.default_rng(seed)
    P = grid_points(RES, EXT)
    grids, sizes = [], []
    for _ in range(n):
        half = np.array([rng.uniform(1.8, 2.5), rng.uniform(0.75, 0.95), rng.uniform(0.6, 0.8)])
        q = np.abs(P) - (half - 0.1)
        phi = np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0) - 0.1
        grids.append(np.clip(phi, -0.4, 0.4).astype(np.float32))
        sizes.append(2 * half)
    return np.stack(grids), np.stack(sizes)


@pytest.fixture(scope='module')
def trained():
    with torch_threads(1):
        grids, sizes = _box_grids(8)
        net, z, losses = train_deepsdf(grids, EXT, latent=3, width=32, depth=4, steps=300, minutes=1.0,
                                       batch_models=4, points=512, lr=3e-3, log=None)
    return grids, sizes, net, z, losses


def test_training_fits_the_grids_with_latents_on_the_sphere(trained):
    grids, _, net, z, losses = trained
    assert np.mean(losses[-20:]) < 0.75 * np.mean(losses[:20])
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # near the surface the decoder reproduces each training model to a few centimetres
    g = decode_grid(net, z[0], RES, EXT)
    near = np.abs(grids[0]) < 0.1
    assert np.abs(g - grids[0])[near].mean() < 0.08
    assert (z @ z.mean(0) / np.linalg.norm(z.mean(0))).min() > 0.5       # one cap of the sphere


def test_normals_by_autograd_match_finite_differences(trained):
    _, _, net, z, _ = trained
    x = torch.tensor([[2.0, 0.1, 0.0], [0.0, 0.9, 0.1], [0.3, -0.2, 0.75]])
    zt = torch.as_tensor(z[1], dtype=torch.float32)
    phi, n = net.normals(x, zt)
    eps = 1e-3
    fd = torch.stack([(net(x + eps * e, zt) - net(x - eps * e, zt)) / (2 * eps) for e in torch.eye(3)], -1)
    fd = torch.nn.functional.normalize(fd, dim=-1)
    assert torch.allclose(n.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert (n * fd).sum(-1).min() > 0.99


def test_maps_and_bake_and_file_round_trip(trained, tmp_path):
    grids, sizes, net, z, _ = trained
    c = z.mean(0) / np.linalg.norm(z.mean(0))
    assert np.allclose(exp_map(c, log_map(c, z)), z, atol=1e-5)
    prior = bake_prior(net, z, sizes, RES)
    assert prior.n_components == 2 and prior.codes.shape == (8, 2) and prior.grid_res == RES
    # first order: the baked grid of a training code is close to the decoder's own grid near the surface
    space = DeepSdfSpace(net, z, prior)
    k = int(np.argmin(np.linalg.norm(prior.codes, axis=1)))
    exact = space.decode_code(prior.codes[k])
    near = np.abs(exact) < 0.1
    assert np.abs(prior.decode(prior.codes[k]) - exact)[near].mean() < 0.03
    path = tmp_path / 'dsdf.pt'
    space.save(path)
    blob = torch.load(path, weights_only=True)
    assert blob['format'].startswith('autolabel-deepsdf')
    again = DeepSdfSpace.load(path)
    assert np.abs(again.prior.mean - prior.mean).max() < 2e-3          # float16 storage
    x = torch.rand(5, 3)
    assert torch.allclose(again.net(x, torch.as_tensor(z[0], dtype=torch.float32)),
                          net(x, torch.as_tensor(z[0], dtype=torch.float32)), atol=1e-6)
    bad = tmp_path / 'bad.pt'
    torch.save({'format': 'other'}, bad)
    for p in (bad, tmp_path / 'missing.pt'):
        with pytest.raises(PriorError, match=p.name):
            DeepSdfSpace.load(p)


def test_decoder_shapes():
    net = DeepSdf(latent=3, width=16, depth=4)
    out = net(torch.zeros(7, 3), torch.tensor([1.0, 0, 0]))
    assert out.shape == (7,) and out.abs().max() <= net.truncation


@pytest.mark.skipif(not default_deepsdf_path().is_file(), reason='packaged DeepSDF space not built')
def test_packaged_space_is_small_and_fits_a_simulated_car():
    from autolabel_ros.config import from_dict
    from autolabel_ros.core.types import Prompt, wrap_angle
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.sim.drive import simulate_frame
    assert default_deepsdf_path().stat().st_size < 5e6
    space = DeepSdfSpace.load(default_deepsdf_path())
    assert 'procedural' in str(space.prior.meta.get('source'))
    sf = simulate_frame(100006)
    gt = [g for g in sf.gt if g.metrics['lidar_points'] >= 200 and g.occlusion == 0][:2]
    al = Autolabeler(from_dict({'device': 'cpu', 'shape': {'kind': 'deepsdf'}}))
    assert al.sdf.d == space.prior.n_components
    with torch_threads(1):
        res = al.label(sf.frame, [Prompt(id=g.id, box=g.box2d) for g in gt], [sf.masks == g.id for g in gt])
    for lab, g in zip(res.labels, gt):
        assert abs(np.degrees(wrap_angle(lab.yaw - g.yaw))) < 10
        assert np.linalg.norm(lab.center - g.center) < 0.3
        assert np.all(np.abs(lab.size - g.size) < 0.4)
