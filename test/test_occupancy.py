"""Occupancy export: free space by ray casting, cars from the fitted shapes, a simulated drive against its
ground truth, and the bag tool's files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from autolabel_ros.core.types import Label3D, Mesh
from autolabel_ros.io.occupancy import CAR, FREE, GROUND, OTHER, UNKNOWN, read_grid
from autolabel_ros.track.occupancy import OccupancySettings, Scan, grid_shape, occupancy_grid


def _wall(x=10.0, n=60):
    """Returns on a wall x = const, y in [-2, 2], z in [-1, 1] (sensor at the origin)."""
    y, z = np.meshgrid(np.linspace(-2, 2, n), np.linspace(-1, 1, n // 2))
    return np.column_stack([np.full(y.size, x), y.ravel(), z.ravel()])


def test_rays_carve_free_space_up_to_the_wall_and_not_behind_it():
    s = OccupancySettings(voxel=0.2, extent=(-2.0, -4.0, -2.0, 16.0, 4.0, 2.0), window=0, ray_step=0.5)
    g = occupancy_grid([Scan(_wall())], [], s)
    ijk = lambda x, y, z: tuple(np.floor((np.array([x, y, z]) - g.origin) / g.voxel).astype(int))  # noqa: E731
    assert g.labels[ijk(10.05, 0.05, 0.05)] == OTHER                     # the wall
    for x in (1.0, 5.0, 9.5):                                           # between the sensor and the wall
        assert g.labels[ijk(x + 0.05, 0.05, 0.05)] == FREE
    assert g.labels[ijk(12.05, 0.05, 0.05)] == UNKNOWN                  # behind it
    assert g.labels[ijk(5.05, 3.05, 0.05)] == UNKNOWN                   # outside every ray
    # the pyramid from the origin to the wall is free, plus the voxels its faces cut (measured: 1.11 x)
    cone = (4.0 * 2.0 * 10.0) / 3.0
    assert 0.95 * cone < g.counts()['free'] * 0.2 ** 3 < 1.25 * cone


def _sphere_label(c, r=1.0, lab_id=7):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=3, radius=r)
    return Label3D(center=c, size=[2 * r] * 3, yaw=0.3, id=lab_id,
                   mesh=Mesh(vertices=np.asarray(m.vertices) + c, faces=np.asarray(m.faces)))


def test_car_voxels_come_from_the_shape_not_its_box():
    s = OccupancySettings(voxel=0.1, extent=(0.0, -3.0, -2.0, 10.0, 3.0, 2.0), window=0)
    lab = _sphere_label(np.array([5.0, 0.0, 0.0]))
    g = occupancy_grid([Scan(np.zeros((0, 3)))], [lab], s)
    n = int((g.labels == CAR).sum())
    assert set(np.unique(g.instance[g.labels == CAR])) == {7}
    sphere, box = 4 / 3 * np.pi / 0.1 ** 3, 8 / 0.1 ** 3                 # voxels
    assert abs(n - sphere) < 0.05 * sphere and n < 0.6 * box
    # a rejected label fills nothing
    lab.accepted = False
    assert (occupancy_grid([Scan(np.zeros((0, 3)))], [lab], s).labels == CAR).sum() == 0


def test_returns_on_a_shape_are_the_cars_and_the_rest_ground_or_other():
    s = OccupancySettings(voxel=0.2, extent=(0.0, -4.0, -2.0, 12.0, 4.0, 2.0), window=0)
    lab = _sphere_label(np.array([8.0, 0.0, 0.0]), lab_id=3)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(400, 3))
    on_sphere = lab.center + d / np.linalg.norm(d, axis=1, keepdims=True) * 1.1   # 10 cm off the surface
    xy = rng.uniform([1, -3], [11, 3], size=(3000, 2))
    ground = np.column_stack([xy, np.full(len(xy), -1.7)])
    pole = np.column_stack([np.full(50, 3.0), np.full(50, 2.0), np.linspace(-1.5, 1.5, 50)])
    g = occupancy_grid([Scan(np.vstack([on_sphere, ground, pole]))], [lab], s)
    ij, ok = g.index_of(on_sphere)
    assert ok.all() and np.all(g.labels[tuple(ij.T)] == CAR) and np.all(g.instance[tuple(ij.T)] == 3)
    ij, _ = g.index_of(ground[np.linalg.norm(ground[:, :2] - lab.center[:2], axis=1) > 1.5])
    assert np.mean(g.labels[tuple(ij.T)] == GROUND) > 0.99
    ij, _ = g.index_of(pole[pole[:, 2] > -1.3])
    assert np.all(g.labels[tuple(ij.T)] == OTHER)


def test_bad_settings_name_the_key():
    from autolabel_ros.track.occupancy import check_settings

    with pytest.raises(ValueError, match='occupancy.extent'):
        check_settings(OccupancySettings(extent=(0, 0, 0, -1, 1, 1)))
    with pytest.raises(ValueError, match='voxels'):
        check_settings(OccupancySettings(voxel=0.02))


# ------------------------------------------------------------------------ a simulated drive, end to end
FAST_FIT = ('segmenter: {model: box}\n'
            'fit: {iterations: 24, prune_after: 8, mask_from: 8, yaw_hypotheses: 4}\n'
            'occupancy: {x_min: -6.0, x_max: 34.0, y_min: -12.0, y_max: 12.0, window: 1}\n')


@pytest.fixture(scope='module')
def occupancy_run(tmp_path_factory):
    """Two frames of a simulated drive (32 beams, small camera), labelled by the bag tool from the
    ground-truth boxes with --occupancy."""
    from autolabel_ros.cli.bag import main
    from autolabel_ros.sim.drive import Simulator
    from autolabel_ros.sim.sensors import Camera, Lidar
    from autolabel_ros.sim.writers import write_kitti

    root = tmp_path_factory.mktemp('occ')
    sim = Simulator(700000, n_frames=2, camera=Camera.kitti(0.2), lidar=Lidar(beams=32), n_cars=5)
    for i in range(2):
        write_kitti(root / 'kitti', sim.frame(i), oxts=True)
    (root / 'cfg.yaml').write_text(FAST_FIT)
    argv = [str(root / 'kitti'), '--out', str(root / 'out'), '--prompts', 'gt', '--quiet', '--config',
            str(root / 'cfg.yaml'), '--occupancy', '--no-copy-sensors']
    assert main(argv) == 0
    return root, sim, argv


def test_bag_tool_writes_one_grid_per_frame(occupancy_run):
    root, _, _ = occupancy_run
    out = root / 'out'
    meta = json.loads((out / 'occupancy' / 'occupancy.json').read_text())
    assert meta['classes'] == {'0': 'unknown', '1': 'free', '2': 'car', '3': 'ground', '4': 'other'}
    assert meta['shape'] == [200, 120, 30] and meta['voxel'] == 0.2 and meta['instance'] == 'label id'
    assert (out / 'report' / 'occupancy_bev.png').stat().st_size > 10_000
    summary = json.loads((out / 'report' / 'summary.json').read_text())
    assert summary['occupancy']['frames'] == 2 and summary['occupancy']['ego_source'] == 'oxts'
    names = sorted(p.name for p in (out / 'occupancy').iterdir())
    assert names == ['000000.npz', '000001.npz', 'occupancy.json']
    g = read_grid(out / 'occupancy' / '000001.npz')
    assert g['labels'].shape == (200, 120, 30) and np.allclose(g['origin'], [-6, -12, -3])
    ol = json.loads((out / 'openlabel.json').read_text())['openlabel']
    ids = {int(k.split('_')[1]) for k in ol['frames']['1']['objects']}
    assert set(np.unique(g['instance'][g['labels'] == CAR])) <= ids and (g['labels'] == CAR).sum() > 500


def test_grid_files_are_the_same_bytes_for_the_same_grid(tmp_path):
    from autolabel_ros.io.occupancy import grid_arrays, npz_bytes

    rng = np.random.default_rng(0)
    lab, inst = rng.integers(0, 5, (30, 20, 10)).astype(np.uint8), rng.integers(0, 9, (30, 20, 10))
    a = npz_bytes(grid_arrays(lab, inst, [-1.0, -2.0, -3.0], 0.2))
    (tmp_path / 'g.npz').write_bytes(a)
    back = read_grid(tmp_path / 'g.npz')
    assert np.array_equal(back['labels'], lab) and np.array_equal(back['instance'], inst)
    assert back['instance'].dtype == np.uint16 and float(back['voxel']) == 0.2
    assert npz_bytes(grid_arrays(lab, inst, [-1.0, -2.0, -3.0], 0.2)) == a     # no clock in the zip


def test_simulated_frame_against_its_ground_truth(occupancy_run):
    from autolabel_ros.eval.occupancy import occupancy_scores
    from autolabel_ros.sim.occupancy import gt_occupancy

    root, sim, _ = occupancy_run
    g = read_grid(root / 'out' / 'occupancy' / '000001.npz')
    gt_cls, gt_ids = gt_occupancy(sim, 1, g['origin'], g['labels'].shape, float(g['voxel']))
    ol = json.loads((root / 'out' / 'openlabel.json').read_text())['openlabel']
    objs = ol['frames']['1']['objects'].values()
    centres = np.array([o['object_data']['cuboid'][0]['val'][:3] for o in objs])
    # the cars scored: those with an accepted label (centre within 2 m)
    cars = [g_.id for g_ in sim.frame(1).gt if np.min(np.linalg.norm(centres - g_.center, axis=1)) < 2.0]
    assert len(cars) >= 3
    sc = occupancy_scores(g['labels'], g['instance'], gt_cls, gt_ids, cars)
    print({k: v for k, v in sc.items() if k != 'per_car_recall'})
    assert sc['gt_car_voxels'] > 1000
    assert sc['car_recall'] >= 0.7 and sc['car_precision'] >= 0.85
    assert sc['free_precision'] >= 0.9 and sc['ground_precision'] >= 0.95 and sc['other_precision'] >= 0.9


def test_bad_occupancy_flags_end_in_one_line(tmp_path, capsys):
    from autolabel_ros.cli.bag import main

    (tmp_path / 'in').mkdir()
    base = [str(tmp_path / 'in'), '--out', str(tmp_path / 'out'), '--quiet']
    for argv, msg in ((['--occupancy', '0'], '--occupancy 0.0: the voxel edge must be in [0.02, 5.0] m'),
                      (['--config', str(tmp_path / 'c.yaml'), '--occupancy'], 'occupancy.extent')):
        (tmp_path / 'c.yaml').write_text('occupancy: {x_min: 5.0, x_max: 1.0}\n')
        rc = main(base + argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and msg in err[0], (argv, err)
    with pytest.raises(SystemExit) as e:         # argparse: not a number
        main(base + ['--occupancy', 'abc'])
    assert e.value.code == 2 and "invalid float value: 'abc'" in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_grid_shape_from_the_config():
    from autolabel_ros.config import from_dict

    s = OccupancySettings.from_config(from_dict({'occupancy': {'voxel': 0.5, 'x_min': 0.0, 'x_max': 20.0}}))
    origin, shape = grid_shape(s)
    assert shape == (40, 160, 12) and np.allclose(origin, [0, -40, -3])


def test_unrelated_kitti_object_frames_are_not_accumulated(tmp_path):
    from autolabel_ros.io.kitti_raw import KittiObjectSource
    from autolabel_ros.offline.occupancy import ego_poses
    from autolabel_ros.sim.drive import Simulator
    from autolabel_ros.sim.sensors import Camera, Lidar
    from autolabel_ros.sim.writers import write_kitti

    sim = Simulator(700001, n_frames=2, camera=Camera.kitti(0.1), lidar=Lidar(beams=16), n_cars=1)
    for i in range(2):
        write_kitti(tmp_path / 'kitti', sim.frame(i))                   # no oxts/: a KITTI object folder
    with KittiObjectSource(tmp_path / 'kitti') as src:
        refs = src.select(None, None, None)
        assert ego_poses('auto', src, refs, [{'index': r.index} for r in refs]) == (None, 'none')
