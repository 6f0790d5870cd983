"""The track refit (track/refit.py): a static car's scans of all frames, fitted once in its object frame."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from autolabel_ros.config import AutolabelConfig
from autolabel_ros.core.geometry import rot_z
from autolabel_ros.core.types import wrap_angle
from autolabel_ros.fit.result import canonical_mesh
from autolabel_ros.fit.sdf import SdfModel, analytic_prior
from autolabel_ros.track.refine import RefineSettings, refine_track
from autolabel_ros.track.refit import TrackRefitter, _batch
from autolabel_ros.track.tracker import Detection, Track

CAR_YAW = 0.3


def test_freespace_samples_lie_between_each_point_and_its_own_sensor():
    pts = np.array([[10.0, 0, 0], [0, 5.0, 0]])
    eyes = np.array([[0.0, 0, 0], [0, 5.0, 10.0]])
    fc = dataclasses.replace(AutolabelConfig().fit, freespace_samples=3, freespace_step=0.25)
    fs = _batch(pts, eyes, 0.0, fc, 'cpu').fs[0].numpy()
    assert fs.shape == (2, 3, 3)
    np.testing.assert_allclose(fs[0, :, 0], [9.75, 9.5, 9.25], atol=1e-6)
    np.testing.assert_allclose(fs[1, :, 2], [0.25, 0.5, 0.75], atol=1e-6)
    np.testing.assert_allclose(fs[1, :, :2], np.tile([0.0, 5.0], (3, 1)), atol=1e-6)


@pytest.fixture(scope='module')
def scene():
    """The shape space's mean car parked at (25, 4) with heading 0.3, scanned from an ego driving
    past it on y = 0 (open3d ray casting, 0.4 deg beams): per frame its world points and sensor."""
    import open3d as o3d

    sdf = SdfModel(analytic_prior(), mode='decode')
    mesh = canonical_mesh(sdf.decode_full(np.zeros(sdf.d)), sdf.arrays.extent)
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    size = hi - lo
    local = mesh.vertices - (lo + hi) / 2
    center = np.array([25.0, 4.0, size[2] / 2])
    world = local @ rot_z(CAR_YAW).T + center
    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(o3d.t.geometry.TriangleMesh(o3d.core.Tensor(world.astype(np.float32)),
                                                 o3d.core.Tensor(np.asarray(mesh.faces, np.int32))))
    frames = []
    for x in np.linspace(0.0, 22.0, 8):
        eye = np.array([x, 0.0, 1.7])
        to = center - eye
        az0 = np.arctan2(to[1], to[0])
        az, el = np.meshgrid(az0 + np.radians(np.arange(-25, 25, 0.4)), np.radians(np.arange(-15, 3, 0.4)))
        d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
        rays = np.hstack([np.broadcast_to(eye, d.shape), d]).astype(np.float32)
        t = rs.cast_rays(o3d.core.Tensor(rays))['t_hit'].numpy()
        hit = np.isfinite(t)
        frames.append((eye + d[hit] * t[hit, None], eye))
    return sdf, center, size, frames


def _track(center, size, flipped_frames, n_frames, rng):
    obs = {}
    for f in range(n_frames):
        yaw = CAR_YAW + (np.pi if f in flipped_frames else 0.0)
        c = center + np.r_[rng.normal(0, 0.15, 2), 0.0]
        obs[f] = Detection(frame=f, index=0, center=c, size=size * np.array([1.1, 1.05, 1.0]),
                           yaw=float(wrap_angle(yaw)), weight=1.0, n_points=60)
    return Track(id=1, obs=obs)


def _refine(scene, flipped):
    sdf, center, size, frames = scene
    refitter = TrackRefitter(sdf, AutolabelConfig().fit, 'cpu')
    tr = _track(center, size, flipped, len(frames), np.random.default_rng(0))
    boxes = refine_track(tr, np.arange(len(frames)) * 0.1, points=lambda f: frames[f][0],
                         sensor=lambda f: frames[f][1], refitter=refitter)
    return boxes, refitter


@pytest.mark.parametrize('flipped', [{0, 2, 4, 6, 7}, {1, 3, 5}])
def test_split_vote_is_settled_by_the_accumulated_scans(scene, flipped):
    _, center, size, _ = scene
    # 5 of 8 frames backwards (the vote alone turns the car round) or 3 of 8 (it does not): either
    # way the vote is split and the refit decides
    boxes, refitter = _refine(scene, flipped=flipped)
    assert refitter.calls == 1
    for b in boxes:
        assert abs(float(wrap_angle(b.yaw - CAR_YAW))) < np.radians(10)
        assert b.refit is not None          # no frame saw it fully: the refit's box
        # the frames' boxes were 10 % long and scattered by 15 cm; the refit's is the car's
        assert abs(b.size[0] - size[0]) < 0.25
        assert np.linalg.norm(b.center[:2] - center[:2]) < 0.3


def test_a_unanimous_vote_keeps_its_heading_and_a_well_seen_car_its_box(scene):
    sdf, center, size, frames = scene
    refitter = TrackRefitter(sdf, AutolabelConfig().fit, 'cpu')
    tr = _track(center, size, set(), len(frames), np.random.default_rng(1))
    for d in tr.obs.values():
        d.n_points = 500                    # every frame saw it fully
    boxes = refine_track(tr, np.arange(len(frames)) * 0.1, points=lambda f: frames[f][0],
                         sensor=lambda f: frames[f][1], refitter=refitter)
    assert all(b.refit is None for b in boxes)
    assert all(abs(float(wrap_angle(b.yaw - CAR_YAW))) < np.radians(5) for b in boxes)
    np.testing.assert_allclose(boxes[0].size, size * np.array([1.1, 1.05, 1.0]))


def test_a_decisive_refit_overrules_a_unanimous_vote_of_weak_frames(scene):
    sdf, center, size, frames = scene
    # every frame backwards, none saw the car fully (60 points each): the vote is unanimous, but the
    # accumulated scans fit the car's way round with far less energy than the other (35x here)
    for overrule, right in ((RefineSettings().refit_overrule, True), (np.inf, False)):
        refitter = TrackRefitter(sdf, AutolabelConfig().fit, 'cpu')
        tr = _track(center, size, set(range(len(frames))), len(frames), np.random.default_rng(2))
        boxes = refine_track(tr, np.arange(len(frames)) * 0.1, RefineSettings(refit_overrule=overrule),
                             points=lambda f: frames[f][0], sensor=lambda f: frames[f][1], refitter=refitter)
        errs = [abs(float(wrap_angle(b.yaw - CAR_YAW))) for b in boxes]
        if right:
            assert max(errs) < np.radians(10)
            assert all(b.refit is not None for b in boxes)
        else:
            assert min(errs) > np.radians(170)   # the vote alone keeps the car backwards
