"""Simulator: LiDAR returns on true surfaces, masks inside projected GT boxes, KITTI-style GT
attributes, motion, KITTI round trip, rosbag2 contents, determinism and the CLI.

A reduced camera (0.3 x KITTI's resolution, same field of view) keeps the tests fast; the LiDAR is
the full 64-beam pattern.
"""
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import trimesh

from autolabel_ros.core.geometry import points_in_box, projected_box2d, rot_z
from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d
from autolabel_ros.sim import Simulator, simulate_drive
from autolabel_ros.sim.sensors import Camera, Lidar, beam_elevations
from autolabel_ros.sim.writers import TOPICS, BagWriter, write_kitti

SCALE = 0.3


@pytest.fixture(scope='module')
def sim():
    return Simulator(4, n_frames=3, camera=Camera.kitti(SCALE), n_cars=12)  # has truncated + occluded cars


@pytest.fixture(scope='module')
def frames(sim):
    return [sim.frame(i) for i in range(3)]


def _posed_car(sim, car, t, ego):
    v = car.mesh.vertices @ rot_z(car.pose(t)[2]).T + sim.scene.car_center(car, t) - ego
    return v, car.mesh.faces


def _distance(vertices, faces, pts):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(np.asarray(pts, np.float32))).numpy()


def test_every_lidar_return_lies_on_the_surface_it_hit(sim, frames):
    sf = frames[1]
    ego = sim.scene.ego_position(sf.time_s)
    clean, inst = sf.points_clean, sf.point_instance
    assert len(clean) > 50000
    # car returns: on the mesh of the car they are attributed to
    n_car = 0
    for car in sim.scene.cars:
        sel = inst == car.id
        if np.any(sel):
            v, f = _posed_car(sim, car, sf.time_s, ego)
            d = _distance(v, f, clean[sel])
            assert d.max() < 0.03, f'car {car.id}: a return {d.max():.3f} m off its surface'
            n_car += int(sel.sum())
    assert n_car > 500
    # all other returns: on the ground plane or on clutter
    rest = clean[inst == 0].astype(np.float64)
    g = sim.scene.ground
    w = rest + ego
    on_ground = np.abs(w[:, 2] - g.height(w[:, 0], w[:, 1])) / np.sqrt(1 + g.gx ** 2 + g.gy ** 2) < 0.03
    assert on_ground.mean() > 0.5
    verts, faces, off = [], [], 0
    for cl in sim.scene.clutter:
        verts.append(cl.mesh.vertices - ego)
        faces.append(cl.mesh.faces + off)
        off += len(cl.mesh.vertices)
    d = _distance(np.vstack(verts), np.vstack(faces), rest[~on_ground])
    assert d.max() < 0.03
    # the recorded points are the clean ones plus ~2 cm range noise along the beam
    dr = np.linalg.norm(sf.frame.points[:, :3], axis=1) - np.linalg.norm(clean, axis=1)
    assert 0.015 < dr.std() < 0.025 and abs(dr.mean()) < 0.002
    r = np.linalg.norm(clean, axis=1)
    assert r.min() >= sim.lidar.min_range - 1e-3 and r.max() <= sim.lidar.max_range
    refl = sf.frame.points[:, 3]
    assert refl.min() >= 0 and refl.max() <= 1 and refl.std() > 0.05
    assert sf.ring.max() == 63 and len(np.unique(sf.ring)) > 40


def test_masks_lie_inside_projected_gt_boxes_and_gt_attributes(sim, frames):
    n_checked, truncated = 0, 0
    for sf in frames:
        f = sf.frame
        W, H = f.width, f.height
        ids = set(np.unique(sf.masks)) - {0}
        assert ids <= {lab.id for lab in sf.gt}, 'a visible car without a label'
        for lab in sf.gt:
            rows, cols = np.nonzero(sf.masks == lab.id)
            assert lab.metrics['visible_px'] == len(rows)
            assert 0 < lab.metrics['visible_px'] <= lab.metrics['amodal_px'] or lab.occlusion == 3
            # the true surface fills its box exactly
            assert np.all(points_in_box(lab.mesh.vertices, lab.center, lab.size, lab.yaw, margin=1e-6))
            np.testing.assert_allclose(np.ptp(lab.mesh.vertices[:, 2]), lab.size[2], atol=1e-6)
            if len(rows) == 0:
                continue
            box = projected_box2d(f.K, f.T_cam_lidar, lab.center, lab.size, lab.yaw, W, H)
            # pixel centres of the modal mask inside the projected 3D box and the amodal 2D box
            assert cols.min() + 0.5 >= box[0] - 0.5 and cols.max() + 0.5 <= box[2] + 0.5
            assert rows.min() + 0.5 >= box[1] - 0.5 and rows.max() + 0.5 <= box[3] + 0.5
            x1, y1, x2, y2 = lab.box2d
            assert cols.min() >= x1 and cols.max() <= x2 and rows.min() >= y1 and rows.max() <= y2
            # the amodal 2D box is never larger than the projected 3D box
            assert x1 >= box[0] - 1 and y1 >= box[1] - 1 and x2 <= box[2] + 1 and y2 <= box[3] + 1
            frac = lab.metrics['visible_frac']
            assert lab.occlusion == (0 if frac >= 0.9 else 1 if frac >= 0.5 else 2 if frac >= 0.05 else 3)
            inside = box[0] > 0 and box[1] > 0 and box[2] < W - 1 and box[3] < H - 1
            if inside:
                assert lab.truncation == 0.0
            truncated += lab.truncation > 0
            n_checked += 1
    assert n_checked >= 6
    assert truncated >= 1, 'the test scene should have a car cut by the image border'
    assert any(lab.occlusion >= 1 for sf in frames for lab in sf.gt), 'and an occluded one'


def test_drive_motion_and_timestamps(sim, frames):
    assert [sf.frame.stamp_ns - frames[0].frame.stamp_ns for sf in frames] == [0, 100_000_000, 200_000_000]
    by_id = [{lab.id: lab for lab in sf.gt} for sf in frames]
    ego_step = sim.scene.ego_speed * 0.1
    assert frames[1].T_world_lidar[0, 3] - frames[0].T_world_lidar[0, 3] == pytest.approx(ego_step)
    moved = 0
    for car in sim.scene.cars:
        if car.id in by_id[0] and car.id in by_id[1]:
            d = by_id[1][car.id].center - by_id[0][car.id].center
            step = car.speed * 0.1
            expect = np.array([step * np.cos(car.yaw) - ego_step, step * np.sin(car.yaw)])
            np.testing.assert_allclose(d[:2], expect, atol=1e-6)
            moved += car.speed > 0
    assert moved >= 1
    assert all(car.seed >= 100000 for car in sim.scene.cars)     # disjoint from the prior's seeds


def test_kitti_folder_round_trips_through_the_reader(tmp_path, frames):
    for sf in frames[:2]:
        write_kitti(tmp_path, sf)
    ds = KittiObjectDataset(tmp_path)
    assert ds.frame_ids == ['000000', '000001']
    for sf in frames[:2]:
        fid = sf.frame.frame_id
        loaded = ds.load_frame(fid)
        assert np.array_equal(loaded.image, sf.frame.image)
        assert np.array_equal(loaded.points, sf.frame.points)
        np.testing.assert_allclose(loaded.K, sf.frame.K, atol=1e-9)
        np.testing.assert_allclose(loaded.T_cam_lidar, sf.frame.T_cam_lidar, atol=1e-9)
        objs = ds.labels(fid)
        assert len(objs) == len(sf.gt) and all(o.score is None for o in objs)
        for o, lab in zip(objs, sf.gt):
            back = kitti_to_label3d(o, ds.calib(fid))
            np.testing.assert_allclose(back.center, lab.center, atol=2e-6)
            np.testing.assert_allclose(back.size, lab.size, atol=2e-6)
            assert abs(np.sin(back.yaw - lab.yaw)) < 1e-5
            np.testing.assert_allclose(o.bbox, lab.box2d, atol=0.006)
            assert o.truncated == pytest.approx(lab.truncation) and o.occluded == lab.occlusion


def _bag_contents(path):
    from rosbags.highlevel import AnyReader

    from autolabel_ros.io.ros_types import get_typestore

    with AnyReader([Path(path)], default_typestore=get_typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        msgs = [(c.topic, t, raw, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]
    return counts, msgs


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_has_all_topics_and_decodes_to_the_frames(tmp_path, frames, storage):
    from autolabel_ros.io import messages as M

    with BagWriter(tmp_path / 'bag', storage) as bag:
        for sf in frames:
            bag.write(sf)
    counts, msgs = _bag_contents(tmp_path / 'bag')
    n = len(frames)
    assert counts == {TOPICS['image'][0]: n, TOPICS['info'][0]: n, TOPICS['points'][0]: n, TOPICS['tf'][0]: 1,
                      TOPICS['tf_dyn'][0]: n, TOPICS['gt'][0]: n, TOPICS['gt2d'][0]: n}
    # the ego pose on /tf: odom -> base_link, base_link 1.73 m under the LiDAR (on /tf_static)
    static = next(m for topic, _, _, m in msgs if topic == '/tf_static').transforms
    assert [(t.header.frame_id, t.child_frame_id) for t in static] == [('lidar', 'camera'),
                                                                      ('base_link', 'lidar')]
    T_base_lidar = M.transform_to_matrix(static[1].transform)
    poses = [m.transforms[0] for topic, _, _, m in msgs if topic == '/tf']
    for sf, tr in zip(frames, poses):
        assert (tr.header.frame_id, tr.child_frame_id) == ('odom', 'base_link')
        T_odom_lidar = M.transform_to_matrix(tr.transform) @ T_base_lidar
        np.testing.assert_allclose(T_odom_lidar, T_base_lidar @ sf.T_world_lidar, atol=1e-9)
    clouds = [m for topic, _, _, m in msgs if topic == '/lidar/points']
    images = [m for topic, _, _, m in msgs if topic == '/camera/image_raw']
    for sf, cloud, img in zip(frames, clouds, images):
        assert cloud.header.frame_id == 'lidar' and img.header.frame_id == 'camera'
        assert np.array_equal(M.pointcloud2_to_numpy(cloud), sf.frame.points)
        assert [fld.name for fld in cloud.fields] == ['x', 'y', 'z', 'intensity', 'ring']
        assert np.array_equal(M.image_to_numpy(img), sf.frame.image)
    tf = next(m for topic, _, _, m in msgs if topic == '/tf_static').transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ('lidar', 'camera')
    T_lidar_cam = M.transform_to_matrix(tf.transform)
    np.testing.assert_allclose(T_lidar_cam @ frames[0].frame.T_cam_lidar, np.eye(4), atol=1e-9)
    dets = [m for topic, _, _, m in msgs if topic == '/ground_truth/detections']
    assert [len(d.detections) for d in dets] == [len(sf.gt) for sf in frames]
    d0 = dets[0].detections[0]
    assert d0.id == str(frames[0].gt[0].id)
    assert d0.bbox.center.position.x == pytest.approx(frames[0].gt[0].center[0])
    boxes = [M.detection2d_array_to_prompts(m) for topic, _, _, m in msgs if topic == TOPICS['gt2d'][0]]
    assert [p.id for p in boxes[0]] == [lab.id for lab in frames[0].gt]
    np.testing.assert_allclose(boxes[0][0].box, frames[0].gt[0].box2d)
    info = next(m for topic, _, _, m in msgs if topic == '/camera/camera_info')
    K, w, h = M.camera_info_to_intrinsics(info)
    np.testing.assert_allclose(K, frames[0].frame.K)
    assert (w, h) == frames[0].frame.image_size



def test_bag_appears_only_when_complete_and_never_replaces_a_folder(tmp_path, frames):
    """The simulator writes through the package's one BagWriter: aside, renamed into place at the end."""
    path = tmp_path / 'bag'
    with pytest.raises(RuntimeError, match='stop'):
        with BagWriter(path, 'mcap') as bag:
            bag.write(frames[0])
            assert not path.exists()                     # still aside while writing
            raise RuntimeError('stop')
    assert not path.exists() and not list(tmp_path.iterdir())   # nothing half-written is left
    path.mkdir()
    (path / 'mine.txt').write_text('not the tool\'s')
    with pytest.raises(FileExistsError, match='exists'):
        with BagWriter(path, 'mcap'):
            pass
    assert (path / 'mine.txt').read_text() == "not the tool's"

def test_same_seed_gives_byte_identical_outputs(tmp_path):
    def run(out):
        with BagWriter(out / 'bag', 'mcap') as bag:
            for sf in simulate_drive(2, seed=11, camera=Camera.kitti(0.2), lidar=Lidar(beams=16)):
                write_kitti(out / 'kitti', sf)
                bag.write(sf)
        files = {p.relative_to(out / 'kitti'): p.read_bytes() for p in sorted((out / 'kitti').rglob('*'))
                 if p.is_file()}
        return files, [(topic, t, bytes(raw)) for topic, t, raw, _ in _bag_contents(out / 'bag')[1]]

    a, b = run(tmp_path / 'a'), run(tmp_path / 'b')
    assert len(a[0]) == 8 and a[0] == b[0]
    assert len(a[1]) == 2 * (len(TOPICS) - 1) + 1 and a[1] == b[1]     # one /tf_static
    other = Simulator(12, camera=Camera.kitti(0.2), lidar=Lidar(beams=16)).frame(0)
    assert not np.array_equal(other.frame.image, simulate_drive(1, seed=11, camera=Camera.kitti(0.2),
                                                                lidar=Lidar(beams=16)).__next__().frame.image)


def test_provided_car_meshes_replace_the_procedural_cars_and_set_the_gt_box():
    # an off-centre, non-procedural mesh: a long box with a cabin box on top (4.9 x 1.95 x 1.6 m)
    body = trimesh.creation.box(extents=[4.9, 1.95, 0.9])
    cabin = trimesh.creation.box(extents=[2.2, 1.6, 0.7])
    cabin.apply_translation([-0.4, 0.0, 0.8])
    mesh = trimesh.util.concatenate([body, cabin])
    mesh.apply_translation([3.0, -1.0, 7.0])            # the source need not centre it
    mesh.metadata['body_type'] = 'test-box'
    asked = []

    def source(k):
        asked.append(k)
        return mesh

    sim = Simulator(5, camera=Camera.kitti(SCALE), n_cars=5, clutter=False, car_source=source)
    assert [c.id for c in sim.scene.cars] == [k + 1 for k in sorted(set(asked))]
    assert np.allclose(mesh.bounds[0], [0.55, -1.975, 6.55])    # the caller's mesh is left as it was
    sf = sim.frame(0)
    assert len(sf.gt) >= 2
    for lab in sf.gt:
        np.testing.assert_allclose(lab.size, [4.9, 1.95, 1.6], atol=1e-9)     # the tight box of the mesh
        assert lab.metrics['body_type'] == 'test-box'
        # the posed mesh fills its box exactly: every vertex inside, each face of the box touched
        local = (lab.mesh.vertices - lab.center) @ rot_z(lab.yaw)
        np.testing.assert_allclose(local.min(axis=0), -lab.size / 2, atol=1e-6)
        np.testing.assert_allclose(local.max(axis=0), lab.size / 2, atol=1e-6)
        # on the ground: the box bottom at the road height under its centre
        g = sim.scene.ground
        ego = sim.scene.ego_position(0.0)
        w = lab.center + ego
        assert w[2] - lab.size[2] / 2 == pytest.approx(float(g.height(w[0], w[1])), abs=1e-9)
    # the scan sees the provided cars
    sel = sf.point_instance > 0
    assert sel.sum() > 100


def test_lidar_models_and_bad_input():
    e64 = beam_elevations(64)
    assert len(e64) == 64 and e64[0] == pytest.approx(2.0) and e64[-1] == pytest.approx(-24.33)
    assert np.all(np.diff(e64) < 0)
    assert beam_elevations(32)[0] == pytest.approx(10.67) and beam_elevations(32)[-1] == pytest.approx(-30.67)
    assert len(beam_elevations(16)) == 16
    with pytest.raises(ValueError, match='beams'):
        beam_elevations(40)
    with pytest.raises(ValueError, match='azimuth'):
        Lidar(azimuth_step_deg=0.01)
    d, ring = Lidar(beams=32, azimuth_step_deg=0.2).rays()
    assert len(d) == 32 * 1800 and ring.max() == 31
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match='n_frames'):
        next(simulate_drive(0, seed=0))


def test_cli_writes_kitti_and_bag_and_eval_reads_it(tmp_path, capsys):
    from autolabel_ros.cli.sim import main
    from autolabel_ros.eval import evaluate

    out = tmp_path / 'run'
    assert main(['--out', str(out), '--frames', '2', '--seed', '3', '--beams', '16', '--scale', '0.25',
                 '--format', 'sqlite3', '--cars', '6', '--azimuth-step', '0.2', '--quiet']) == 0
    root = out / 'kitti' / 'training'
    assert sorted(p.name for p in root.iterdir()) == ['calib', 'image_2', 'label_02', 'label_2', 'oxts',
                                                      'velodyne']
    assert sorted(p.name for p in (root / 'oxts' / 'data').iterdir()) == ['000000.txt', '000001.txt']
    from autolabel_ros.io.kitti_tracking import read_tracking_file
    rows = read_tracking_file(root / 'label_02' / '0000.txt')
    assert sorted({f for f, _, _ in rows}) == [0, 1] and len(rows) == sum(
        len((root / 'label_2' / f'00000{i}.txt').read_text().splitlines()) for i in (0, 1))
    assert (out / 'bag' / 'metadata.yaml').is_file()
    res = evaluate(root / 'label_2', root / 'label_2')   # GT against itself: perfect where defined
    assert res['n_gt'] > 0 and res['n_det'] == res['n_gt']
    if res['n_gt_per_difficulty']['hard'] > 0:
        assert res['3D@0.7']['hard'] == pytest.approx(100.0)
    # an existing bag folder is refused with a one-line error and exit code 2
    assert main(['--out', str(out), '--frames', '1', '--quiet']) == 2
    assert 'exists' in capsys.readouterr().err
