"""Shape prior: SDF grids, PCA, persistence, meshing, model loaders (small grids, a few seconds)."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from autolabel_ros.shape.mesh import sdf_to_mesh, tight_extent, transform_mesh
from autolabel_ros.shape.mesh_io import MeshLoadError, load_apollo_json, load_collection
from autolabel_ros.shape.prior import (ShapePrior, build_prior, grid_points, grid_spacing, load_default_prior,
                                       mesh_sdf)

try:  # building grids needs open3d's ray caster (loading and using a prior does not)
    import open3d  # noqa: F401
    HAVE_O3D = True
except ImportError:  # e.g. libusb-1.0 missing on the system
    HAVE_O3D = False
needs_open3d = pytest.mark.skipif(not HAVE_O3D, reason='open3d not importable')

RES = (40, 20, 18)
EXT = (3.0, 1.3, 1.2)
SIZES = [(3.6, 1.6, 1.3), (4.2, 1.8, 1.5), (4.8, 1.9, 1.7), (4.0, 1.7, 1.9), (5.2, 2.0, 1.6)]


@pytest.fixture(scope='module')
def boxes():
    return [trimesh.creation.box(s) for s in SIZES]


@pytest.fixture(scope='module')
def tiny_prior(boxes):
    return build_prior(boxes, resolution=RES, n_components=3, truncation=0.4, extent=EXT, source='boxes')


def test_grid_layout_matches_grid_sample_order():
    pts = grid_points(RES, EXT)
    assert pts.shape == (RES[2], RES[1], RES[0], 3)          # (nz, ny, nx, 3)
    np.testing.assert_allclose(pts[0, 0, 0], -np.array(EXT))
    np.testing.assert_allclose(pts[-1, -1, -1], EXT)
    assert pts[0, 0, 1, 0] > pts[0, 0, 0, 0] and pts[0, 1, 0, 1] > pts[0, 0, 0, 1]
    assert pts[1, 0, 0, 2] > pts[0, 0, 0, 2]


@needs_open3d
def test_mean_sdf_sign_and_values(tiny_prior):
    assert tiny_prior.n_components == 3 and tiny_prior.mean.shape == (RES[2], RES[1], RES[0])
    phi = tiny_prior.sample(np.array([[0.0, 0.0, 0.0], [2.9, 1.2, 1.1], [0.0, 0.0, 1.15], [2.95, 0, 0]]))
    assert phi[0] < -0.3                                      # centre inside (truncated at -0.4)
    assert phi[1] == pytest.approx(0.4, abs=0.01)             # far corner: outside, ~truncated
    assert phi[2] > 0 and phi[3] > 0                          # above the tallest / beyond the longest box
    # a box's SDF on a face normal is linear: at x = 0.5 m beyond the 4.2 m box's end face -> +0.4 (clip)
    box = mesh_sdf(trimesh.creation.box(SIZES[1]), RES, EXT, truncation=None)
    probe = ShapePrior(RES, EXT, box, np.zeros((1,) + box.shape), np.zeros((1, 1)), np.zeros((1, 3)), [1.0])
    np.testing.assert_allclose(probe.sample(np.array([[2.4, 0, 0], [1.6, 0, 0], [0, 0, 0.3]])),
                               [0.3, -0.5, -0.45], atol=0.01)


@needs_open3d
def test_reconstruction_of_training_model(tiny_prior, boxes):
    true = mesh_sdf(boxes[2], RES, EXT, truncation=0.4)
    rec = tiny_prior.decode(tiny_prior.codes[2])
    near = np.abs(true) < 0.2
    err_full = np.abs(rec - true)[near].mean()
    err_mean = np.abs(tiny_prior.mean - true)[near].mean()
    assert err_full < 0.02 < err_mean                         # 3 of 4 components: close, the mean is not
    np.testing.assert_allclose(tiny_prior.encode(true), tiny_prior.codes[2], rtol=1e-3, atol=1e-3)
    assert tiny_prior.sizes[2] == pytest.approx(SIZES[2], abs=1e-6)
    batch = tiny_prior.decode(tiny_prior.codes[:2])
    assert batch.shape == (2,) + tiny_prior.grid_shape


@needs_open3d
def test_save_load_round_trip(tiny_prior, tmp_path):
    path = tmp_path / 'p.npz'
    tiny_prior.save(path, basis_dtype=np.float32)
    back = ShapePrior.load(path)
    for name in ('mean', 'basis', 'codes', 'sizes', 'stdev', 'extent'):
        np.testing.assert_array_equal(getattr(back, name), getattr(tiny_prior, name))
    assert back.grid_res == RES and back.truncation == 0.4
    assert back.meta['source'] == 'boxes' and back.meta['n_models'] == len(SIZES)
    tiny_prior.save(path)                                     # float16 basis: decoding stays within 1 mm
    np.testing.assert_allclose(ShapePrior.load(path).decode(tiny_prior.codes[1]),
                               tiny_prior.decode(tiny_prior.codes[1]), atol=1e-3)


def test_load_errors_name_the_file(tmp_path):
    from autolabel_ros.shape.prior import PriorError
    with pytest.raises(PriorError, match='missing.npz'):
        ShapePrior.load(tmp_path / 'missing.npz')
    bad = tmp_path / 'bad.npz'
    np.savez(bad, mean=np.zeros(3))
    with pytest.raises(PriorError, match='bad.npz'):
        ShapePrior.load(bad)


@needs_open3d
def test_box_mesh_extent_within_a_voxel(tiny_prior, boxes):
    mesh = sdf_to_mesh(tiny_prior.decode(tiny_prior.codes[1]), tiny_prior)
    center, size = tight_extent(mesh)
    vox = grid_spacing(RES, EXT)
    assert np.all(np.abs(size - np.array(SIZES[1])) < vox) and np.all(np.abs(center) < vox)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces)
    assert tm.is_watertight and tm.volume > 0                 # closed, outward faces
    # a shape touching the grid border is still closed (padding)
    full = sdf_to_mesh(-np.ones(tiny_prior.grid_shape, np.float32), EXT)
    assert trimesh.Trimesh(full.vertices, full.faces).is_watertight
    assert len(sdf_to_mesh(np.ones(tiny_prior.grid_shape), EXT).vertices) == 0


@needs_open3d
def test_transform_mesh():
    mesh = sdf_to_mesh(mesh_sdf(trimesh.creation.box((4, 2, 1.5)), RES, EXT), EXT)
    moved = transform_mesh(mesh, center=(10.0, -3.0, 0.5), yaw=np.pi / 2)
    c, s = tight_extent(moved)
    np.testing.assert_allclose(c, [10.0, -3.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(s, [2.0, 4.0, 1.5], atol=0.02)   # length now along y


@needs_open3d
def test_non_watertight_box_inside_outside():
    box = trimesh.creation.box((4.0, 1.8, 1.5))
    holed = box.copy()
    holed.update_faces(np.arange(len(holed.faces)) != 0)      # delete one triangle of the -x end
    assert not holed.is_watertight
    phi = mesh_sdf(holed, RES, EXT, truncation=None)
    ref = mesh_sdf(box, RES, EXT, truncation=None)
    pts = np.array([[0.0, 0.0, 0.3], [1.5, 0.3, 0.2], [2.9, 1.2, 1.1], [0.0, 0.0, 1.15], [-2.6, 0, 0]])
    vals, ref_vals = (ShapePrior(RES, EXT, g, np.zeros((1,) + g.shape), np.zeros((1, 1)), np.zeros((1, 3)),
                                 [1.0]).sample(pts) for g in (phi, ref))
    assert vals[0] == pytest.approx(-0.45, abs=0.01) and vals[1] < -0.3       # inside
    assert vals[2] > 0.5 and vals[3] == pytest.approx(0.4, abs=0.01)          # outside
    assert vals[4] == pytest.approx(0.6, abs=0.01)                            # beyond the holed end
    np.testing.assert_allclose(vals, ref_vals, atol=0.01)
    # the body as a whole: >= 97% of the samples agree in sign with the closed box
    assert np.mean((phi < 0) == (ref < 0)) > 0.97


def test_loaders_and_errors(tmp_path):
    trimesh.creation.box((4.0, 1.8, 1.5)).apply_translation((1, 2, 3)).export(tmp_path / 'a.ply')
    trimesh.creation.capsule(height=3.0, radius=0.8).export(tmp_path / 'b.obj')
    models = load_collection(tmp_path)
    assert [m.name for m in models] == ['a', 'b']
    np.testing.assert_allclose(models[0].mesh.bounds.mean(axis=0), 0, atol=1e-9)   # recentred
    np.testing.assert_allclose(models[0].size, (4.0, 1.8, 1.5))
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('x')
    with pytest.raises(MeshLoadError, match=r'\.obj.*\.json'):
        load_collection(empty)
    (tmp_path / 'bad.json').write_text('{"vertices": [[0, 0, 0]]}')
    with pytest.raises(MeshLoadError, match='bad.json'):
        load_apollo_json(tmp_path / 'bad.json')


@needs_open3d
def test_cli_errors_and_build(tmp_path, capsys):
    from autolabel_ros.cli.build_prior import main
    (tmp_path / 'none').mkdir()
    assert main(['--models', str(tmp_path / 'none'), '--out', str(tmp_path / 'p.npz'), '--no-progress']) == 2
    for i, s in enumerate(SIZES[:4]):
        trimesh.creation.box(s).export(tmp_path / f'box{i}.stl')
    out = tmp_path / 'p.npz'
    assert main(['--models', str(tmp_path), '--out', str(out), '--components', '2',
                 '--resolution', '24,12,12', '--no-progress']) == 0
    prior = ShapePrior.load(out)
    assert prior.n_components == 2 and prior.grid_res == (24, 12, 12) and len(prior.codes) == 4
    # from procedural cars (the default prior's source)
    assert main(['--procedural', '3', '--out', str(out), '--components', '2', '--resolution', '24,12,12',
                 '--no-progress']) == 0
    prior = ShapePrior.load(out)
    assert 'procedural' in prior.meta['source'] and len(prior.codes) == 3
    # an --out that cannot be written: one line before any mesh is read
    (tmp_path / 'a_file').write_text('user data\n')
    for bad, fragment in ((tmp_path, 'is a folder'), (tmp_path / 'a_file' / 'p.npz', 'lies under the file')):
        t0 = time.process_time()
        assert main(['--procedural', '40', '--out', str(bad), '--no-progress']) == 2
        assert fragment in capsys.readouterr().err and time.process_time() - t0 < 1.0
    assert (tmp_path / 'a_file').read_text() == 'user data\n'
    for flag, bad in (('--truncation', '0'), ('--truncation', '-1'), ('--seed-start', '-5')):
        assert main(['--procedural', '3', '--out', str(tmp_path / 'q.npz'), '--components', '2',
                     '--resolution', '24,12,12', flag, bad, '--no-progress']) == 2
        assert f'{flag} {bad}: must be' in capsys.readouterr().err and not (tmp_path / 'q.npz').exists()
    # cars that do not fit the grid box: a clear error, exit 2
    assert main(['--procedural', '3', '--out', str(out), '--extent', '1,1,1', '--no-progress']) == 2
    # as a console process: a one-line error and exit status 2
    r = subprocess.run([sys.executable, '-m', 'autolabel_ros.cli.build_prior', '--models',
                        str(tmp_path / 'nope'), '--out', str(out)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2 and 'nope' in r.stderr and 'Traceback' not in r.stderr


@needs_open3d
def test_torch_tensors_match_numpy_lookup(tiny_prior):
    torch = pytest.importorskip('torch')
    import torch.nn.functional as F
    vol = tiny_prior.torch_tensors()
    assert vol.shape == (1 + tiny_prior.n_components,) + tiny_prior.grid_shape
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (50, 3)) * np.array(EXT) * 1.1   # some outside the box (border padding)
    g = torch.as_tensor(pts, dtype=torch.float32) / tiny_prior.torch_extent()
    out = F.grid_sample(vol[None], g.view(1, 1, 1, -1, 3), align_corners=True, padding_mode='border')
    code = tiny_prior.codes[3]
    phi = out[0, 0, 0, 0] + torch.as_tensor(code) @ out[0, 1:, 0, 0]
    np.testing.assert_allclose(phi.numpy(), tiny_prior.sample(pts, code), atol=1e-4)
    white = tiny_prior.torch_tensors(whitened=True)
    np.testing.assert_allclose(white[1].numpy(), tiny_prior.basis[0] * tiny_prior.stdev[0], rtol=1e-6)


def test_apollo_model_canonical_frame(shared_data):
    path = shared_data / 'cars' / 'apollocar3d' / 'car_models_json' / 'aodi-a6.json'
    if not path.exists():
        pytest.skip(f'{path} not present')
    mesh = load_apollo_json(path)
    lo, hi = mesh.bounds
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-9)
    l, w, h = hi - lo
    assert l > w > h * 1.1 and 4.0 < l < 5.6                  # length along x, height along z
    v = mesh.vertices
    # up is +z: the wheel rims are the lowest part and lie near the ends, the roof spans the middle
    low = v[:, 2] < lo[2] + 0.15 * h
    assert np.abs(v[low, 0]).mean() > 0.25 * l
    top = v[:, 2] > hi[2] - 0.1 * h
    assert np.abs(v[top, 0]).mean() < 0.25 * l
    # front at +x: the side mirrors (widest points above the beltline) sit ahead of the centre
    upper = v[v[:, 2] > 0.0]
    assert upper[np.argmax(np.abs(upper[:, 1])), 0] > 0.2
    # a rotation, not a mirror: the driver's side (left-hand-drive market) is not checkable, so
    # check the determinant of the axis map instead
    from autolabel_ros.shape.mesh_io import APOLLO_TO_CANONICAL
    assert np.linalg.det(APOLLO_TO_CANONICAL) == pytest.approx(1.0)


def test_default_prior():
    prior = load_default_prior()
    assert prior.n_components == 5 and prior.meta['n_models'] >= 80
    assert 'procedural' in prior.meta['source']
    assert prior.sample(np.zeros((1, 3)))[0] < -0.2           # the mean car is solid at its centre
    mesh = sdf_to_mesh(prior.mean, prior)
    _, size = tight_extent(mesh)
    assert 3.5 < size[0] < 5.5 and 1.5 < size[1] < 2.1 and 1.2 < size[2] < 2.0
