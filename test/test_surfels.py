"""SDFLabel's surfel renderer and losses (fit/surfels.py) on the packaged PCA prior: surfels lie on
the surface, the NOCS rendering shows the end that faces the camera, and the 2D NOCS / 3D losses are
lowest at the true pose and pull a perturbed pose back towards it."""
import numpy as np
import pytest
import torch

from autolabel_ros.css.predict import NocsPrediction
from autolabel_ros.fit.sdf import SdfModel
from autolabel_ros.fit.surfels import (nocs_loss, nocs_targets, render_nocs, surface_loss, surface_seeds,
                                       surfels)
from autolabel_ros.shape.prior import load_prior

K = np.array([[720.0, 0, 620], [0, 720.0, 190], [0, 0, 1]])
T = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])   # camera at the LiDAR origin
G = 32


@pytest.fixture(scope='module')
def sdf():
    torch.set_num_threads(1)
    return SdfModel(load_prior(None), downsample=2)


def _window(pose, sdf, code):
    """A patch window around the projected box of a car at pose."""
    size = sdf.size_of(code)[0].numpy()
    c = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size / 2
    yaw = pose[3]
    R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    pts = c @ R.T + pose[:3]
    uvw = (pts @ T[:3, :3].T + T[:3, 3]) @ K.T
    uv = uvw[:, :2] / uvw[:, 2:]
    (x1, y1), (x2, y2) = uv.min(0), uv.max(0)
    side = 1.2 * max(x2 - x1, y2 - y1)
    return np.array([(x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side])


def _perfect_prediction(sdf, seeds, pose, code):
    """The NOCS map a perfect network would predict: the surfel rendering at the true pose."""
    win = _window(pose, sdf, code)
    c = (np.arange(G) + 0.5) * win[2] / G
    uu, vv = np.meshgrid(win[0] + c, win[1] + c)
    pix = np.stack([uu.ravel(), vv.ravel(), np.ones(G * G)], -1)
    d = pix @ np.linalg.inv(K).T @ T[:3, :3]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ray_o = torch.as_tensor(-T[:3, :3].T @ T[:3, 3], dtype=torch.float32)
    img, cov = render_nocs(sdf, seeds, torch.as_tensor(pose[None], dtype=torch.float32), code, None, ray_o,
                           torch.as_tensor(d[None], dtype=torch.float32))
    return NocsPrediction(window=win, nocs=img[0].reshape(G, G, 3).detach().numpy(),
                          valid=cov[0].reshape(G, G).detach().numpy() > 0.5, dims=np.zeros(3))


def test_surfels_lie_on_the_surface(sdf):
    seeds = surface_seeds(sdf, max_points=400)
    code = torch.tensor([[0.5, -0.3, 0.2, 0.0, 0.1]]) * sdf.stdev
    hyp = torch.zeros(1, dtype=torch.long)
    fit = sdf.query(surfels(sdf, seeds, code)[0], hyp, code).abs()     # one Newton step, mean normals
    p, n = surfels(sdf, seeds, code, exact_normals=True)
    phi = sdf.query(p, hyp, code)
    assert p.shape == (1, 400, 3)
    # seeds lie up to 12 cm off the surface, on a 13 cm fit grid
    assert fit.median() < 0.01 and fit.quantile(0.75) < 0.03
    assert phi.abs().median() < 0.001 and phi.abs().quantile(0.9) < 0.05
    assert torch.allclose(n.norm(dim=-1), torch.ones(1, 400), atol=1e-4)
    # outward: a step along the normal goes outside
    assert (sdf.query(p + 0.05 * n, torch.zeros(1, dtype=torch.long), code) > phi).float().mean() > 0.9


def test_nocs_rendering_shows_the_end_facing_the_camera(sdf):
    seeds = surface_seeds(sdf, max_points=3000)
    code = torch.zeros(1, sdf.d)
    front = _perfect_prediction(sdf, seeds, np.array([12.0, 0.0, -0.9, np.pi]), code)   # front to camera
    rear = _perfect_prediction(sdf, seeds, np.array([12.0, 0.0, -0.9, 0.0]), code)
    for p in (front, rear):
        assert p.valid.mean() > 0.2
        assert np.all((p.nocs[p.valid] > -0.05) & (p.nocs[p.valid] < 1.05))
    assert front.nocs[front.valid][:, 0].mean() > 0.6 > 0.4 > rear.nocs[rear.valid][:, 0].mean()


def test_nocs_and_3d_losses_prefer_and_recover_the_true_pose(sdf):
    seeds_r = surface_seeds(sdf, max_points=3000)
    seeds = surface_seeds(sdf, max_points=400)
    code = torch.zeros(1, sdf.d)
    truth = np.array([14.0, 3.0, -0.9, 2.3])
    tg = nocs_targets([_perfect_prediction(sdf, seeds_r, truth, code)], K, T, 'cpu')
    obj = torch.zeros(1, dtype=torch.long)
    pts = surfels(sdf, seeds_r, code)[0][0].detach().numpy()
    c, s = np.cos(truth[3]), np.sin(truth[3])
    lidar = torch.as_tensor(pts @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + truth[:3],
                            dtype=torch.float32)[None]
    cam = torch.zeros(3)

    def losses(pose):
        pose = torch.as_tensor(pose, dtype=torch.float32)[None]
        p, n = surfels(sdf, seeds, code)
        e2d, share = nocs_loss(sdf, p, n, pose, code, None, obj, tg)
        e3d = surface_loss(p, n, pose, lidar, torch.ones(1, lidar.shape[1]), cam)
        return float(e2d), float(share), float(e3d)

    at_truth = losses(truth)
    assert at_truth[1] > 0.5 and at_truth[2] < 0.06
    for delta in ([0, 0.4, 0, 0], [0, 0, 0, 0.3]):
        off = losses(truth + np.array(delta))
        assert off[0] > at_truth[0] + 0.01 and off[2] > at_truth[2]
    # a few Adam steps on the 2D + 3D loss bring a perturbed pose back
    pose = torch.tensor((truth + [0.3, -0.4, 0.0, 0.25])[None], dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([pose], lr=0.03)
    for _ in range(60):
        p, n = surfels(sdf, seeds, code)
        e = nocs_loss(sdf, p, n, pose, code, None, obj, tg)[0] + surface_loss(
            p, n, pose, lidar, torch.ones(1, lidar.shape[1]), cam)
        opt.zero_grad()
        e.sum().backward()
        opt.step()
    err = (pose.detach()[0] - torch.as_tensor(truth, dtype=torch.float32)).numpy()
    assert np.hypot(err[0], err[1]) < 0.15 and abs(err[3]) < 0.05
