"""Bag reading (topic detection, pairing, TF chains, corrupt data), KITTI raw import, writers.

No pipeline here: these are the fast tests of the offline tool's input and output plumbing.
"""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from test_bag_fixtures import (K, PERIOD, T0, T_BASE_CAM, T_BASE_LIDAR, T_CAM_LIDAR, car_box, scene,
                               write_tiny_bag)

from autolabel_ros.core.types import Label3D, Mesh
from autolabel_ros.io.bags import BagError, BagSource, TfTree, pair_stamps
from autolabel_ros.io.label_bag import BagWriter


@pytest.fixture(scope='module')
def tiny_bag(tmp_path_factory):
    return write_tiny_bag(tmp_path_factory.mktemp('bags') / 'tiny.bag', n=4)


def test_topics_detected_by_type_and_frames_decoded(tiny_bag):
    with BagSource(tiny_bag) as src:
        d = src.describe()
        assert (d['image_topic'], d['info_topic'], d['cloud_topic']) == \
            ('/camera/image_raw', '/camera/camera_info', '/lidar/points')
        refs = src.index()
        assert [r.stamp_ns for r in refs] == [T0 + i * PERIOD for i in range(4)]
        frames = list(src.iter_frames(refs))
    assert len(frames) == 4
    ref, frame, prompts = frames[2]
    img, pts, _ = scene(2)
    assert np.array_equal(frame.image, img) and np.allclose(frame.points, pts)
    assert np.allclose(frame.K, K) and prompts is None
    # the extrinsic is the chain lidar -> base_link -> camera of /tf_static
    assert np.allclose(frame.T_cam_lidar, T_CAM_LIDAR, atol=1e-9)
    assert (frame.lidar_frame, frame.camera_frame) == ('lidar', 'camera')


def test_ambiguous_and_missing_topics_are_clear_errors(tmp_path):
    bag = write_tiny_bag(tmp_path / 'two_clouds.bag', n=2, extra_cloud_topic=True)
    with pytest.raises(BagError,
                       match=r"several LiDAR PointCloud2 topics: \['/lidar/other', '/lidar/points'\]"):
        BagSource(bag)
    with BagSource(bag, cloud_topic='/lidar/other') as src:
        assert len(src.index()) == 2
    with pytest.raises(BagError,
                       match=r"'/nope' not in the bag; topics: .*/image_raw \[sensor_msgs/msg/Image\]"):
        BagSource(bag, image_topic='/nope')
    with pytest.raises(BagError, match='has type sensor_msgs/msg/CameraInfo'):
        BagSource(bag, image_topic='/camera/camera_info')
    with BagWriter(tmp_path / 'empty.bag'):
        pass
    with pytest.raises(BagError, match='empty'):
        BagSource(tmp_path / 'empty.bag')
    with pytest.raises(BagError, match='not found'):
        BagSource(tmp_path / 'missing.bag')


def test_pair_stamps_tolerance_one_to_one():
    images = [0, 100, 200, 300, 400]
    clouds = [3, 104, 195, 260, 900]
    pairs, ui, uc = pair_stamps(images, clouds, tolerance_ns=10)
    assert pairs == [(0, 0), (1, 1), (2, 2)] and (ui, uc) == (2, 2)
    # one cloud between two images goes to the nearer one only
    pairs, ui, uc = pair_stamps([0, 10], [7], tolerance_ns=10)
    assert pairs == [(1, 0)] and (ui, uc) == (1, 0)


def test_unmatched_cloud_counted_and_prompts_matched_by_stamp(tmp_path):
    bag = write_tiny_bag(tmp_path / 'extra.bag', n=3, extra_cloud_without_image=True)
    with BagSource(bag, prompts_topic='/prompts', tolerance_s=0.01) as src:
        refs = src.index()
        assert len(refs) == 3
        assert (src.stats.unmatched_images, src.stats.unmatched_clouds) == (0, 1)
        frames = list(src.iter_frames(refs, prompts_from_topic=True))
    for i, (_, _, prompts) in enumerate(frames):
        assert len(prompts) == 1 and prompts[0].id == 7
        assert np.allclose(prompts[0].box, scene(i)[2].box)
    # a tolerance below the 3 ms image/cloud offset pairs nothing: the error gives both stamp ranges
    with pytest.raises(BagError, match='within 0.001 s'):
        BagSource(bag, tolerance_s=0.001).index()


def test_window_selection(tiny_bag):
    with BagSource(tiny_bag) as src:
        assert [r.index for r in src.select(0.15, 0.3)] == [2, 3]
        assert [r.index for r in src.select(None, 0.1)] == [0, 1]
        assert [r.name for r in src.select(0.1, None, max_frames=1)] == ['000001']


def test_corrupt_message_and_undecodable_frame_are_skipped(tmp_path):
    bag = write_tiny_bag(tmp_path / 'bad.bag', n=5, corrupt_message_at=1, bad_encoding_at=3)
    with BagSource(bag) as src:
        refs = src.index()
        # frame 1's image does not deserialize: counted, and its cloud has no partner
        assert [m[0] for m in src.stats.corrupt_messages] == ['/camera/image_raw']
        assert len(refs) == 4 and src.stats.unmatched_clouds == 1
        got = [ref.stamp_ns for ref, _, _ in src.iter_frames(refs)]
    assert got == [T0, T0 + 2 * PERIOD, T0 + 4 * PERIOD]
    assert len(src.stats.corrupt_frames) == 1 and 'yuv422_weird' in src.stats.corrupt_frames[0][1]


def test_a_bad_frame_read_again_is_counted_once(tmp_path, caplog):
    """The job reads frames again after labelling (sensor copy, --tracks, --occupancy): a frame that
    cannot be built was counted and logged once per read (summary pairing.corrupt_frames 6 for 3)."""
    from PIL import Image

    from autolabel_ros.io.kitti_raw import KittiRawSource

    bag = write_tiny_bag(tmp_path / 'bad.bag', n=5, bad_encoding_at=3)
    with BagSource(bag) as src:
        refs = src.index()
        for _ in range(3):
            assert len(list(src.iter_frames(refs))) == 4
        assert [i for i, _ in src.stats.corrupt_frames] == [3] and src.stats.as_dict()['corrupt_frames'] == 1
        bad = next(r for r in refs if r.index == 3)
        for _ in range(2):          # read on its own (the curriculum): the error names why, every time
            with pytest.raises(BagError, match='yuv422_weird'):
                src.load(bad)
    drive = _kitti_raw_folder(tmp_path / '2011_09_26_drive_0001_sync', n=3)
    Image.new('RGB', (100, 30)).save(drive / 'image_02' / 'data' / f'{1:010d}.png')   # not the calib's camera
    src = KittiRawSource(drive)
    refs = src.index()
    caplog.clear()
    with caplog.at_level('WARNING'):
        assert len(list(src.iter_frames(refs))) == 2
        assert len(list(src.sensor_messages(refs))) == 6            # 3 messages for each good frame
        assert len(list(src.iter_frames(refs))) == 2
    assert [i for i, _ in src.stats.corrupt_frames] == [1]
    assert sum('skipped' in r.getMessage() for r in caplog.records) == 1


def test_tf_tree_chains_and_names_frames_when_disconnected():
    tree = TfTree()
    A = np.eye(4)
    A[:3, 3] = [1, 2, 3]
    B = np.eye(4)
    B[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    tree.add('map', 'base', A)
    tree.add('base', 'lidar', B)
    tree.add('base', 'camera', np.eye(4))
    assert np.allclose(tree.lookup('map', 'lidar'), A @ B)
    assert np.allclose(tree.lookup('lidar', 'map'), np.linalg.inv(A @ B))
    assert np.allclose(tree.lookup('camera', 'lidar'), B)
    tree.add('x', 'y', np.eye(4))
    with pytest.raises(BagError,
                       match=r"no TF chain from 'lidar' to 'y'.*'base', 'camera', 'lidar', 'map', 'x', 'y'"):
        tree.lookup('y', 'lidar')


def test_bag_without_tf_needs_calib(tmp_path):
    from autolabel_ros.io.kitti import calib_from_K

    bag = write_tiny_bag(tmp_path / 'notf.bag', n=1, with_tf=False)
    with BagSource(bag) as src:
        with pytest.raises(BagError, match='--calib'):
            list(src.iter_frames(src.index()))
    with BagSource(bag, calib=calib_from_K(K, T_CAM_LIDAR)) as src:
        (_, frame, _), = list(src.iter_frames(src.index()))
        assert np.allclose(frame.T_cam_lidar, T_CAM_LIDAR)


def _kitti_raw_folder(root, n=2):
    from PIL import Image

    from autolabel_ros.io.kitti import calib_from_K, write_calib

    (root / 'image_02' / 'data').mkdir(parents=True)
    (root / 'velodyne_points' / 'data').mkdir(parents=True)
    for i in range(n):
        img, pts, _ = scene(i)
        Image.fromarray(img).save(root / 'image_02' / 'data' / f'{i:010d}.png')
        pts.astype(np.float32).tofile(root / 'velodyne_points' / 'data' / f'{i:010d}.bin')
    write_calib(root / 'calib.txt', calib_from_K(K, T_CAM_LIDAR))
    return root


def test_kitti_raw_import_round_trip(tmp_path):
    from autolabel_ros.cli.bag import main
    from autolabel_ros.io.kitti_raw import KittiRawSource

    drive = _kitti_raw_folder(tmp_path / '2011_09_26_drive_0001_sync')
    assert main(['import-kitti-raw', str(drive), '--out', str(tmp_path / 'raw.bag')]) == 0
    assert main(['import-kitti-raw', str(drive), '--out', str(tmp_path / 'raw.bag')]) == 2   # exists
    direct = list(KittiRawSource(drive).iter_frames(KittiRawSource(drive).index()))
    with BagSource(tmp_path / 'raw.bag') as src:
        refs = src.index()
        # 10 Hz from midnight UTC of the date in the folder name
        assert [r.stamp_ns for r in refs] == [1316995200_000_000_000 + i * 100_000_000 for i in range(2)]
        from_bag = list(src.iter_frames(refs))
    for (_, a, _), (_, b, _) in zip(direct, from_bag):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.points, b.points)
        assert np.allclose(a.T_cam_lidar, b.T_cam_lidar) and np.allclose(a.K, b.K)


def test_kitti_raw_excerpt_imports(shared_data, tmp_path):
    from autolabel_ros.io.kitti import read_calib
    from autolabel_ros.io.kitti_raw import import_kitti_raw

    drive = shared_data / 'kitti_raw' / '2011_09_26_excerpt'
    res = import_kitti_raw(drive, tmp_path / 'excerpt.bag')
    assert res['frames'] == 20
    with BagSource(tmp_path / 'excerpt.bag') as src:
        refs = src.index()
        assert len(refs) == 20 and src.stats.unmatched_images == 0
        (_, frame, _), = list(src.iter_frames(refs[:1]))
    calib = read_calib(drive / 'calib.txt')
    assert np.allclose(frame.T_cam_lidar, calib.T_cam_lidar, atol=1e-9)
    assert frame.image.shape == (375, 1242, 3) and frame.points.shape[1] == 4


def test_openlabel_document_and_ply():
    from autolabel_ros.io.writers import build_openlabel, mesh_to_ply_bytes

    c, s, yaw = car_box(0)
    lab = Label3D(center=c, size=s, yaw=yaw, score=0.8, id=3, box2d=[10, 20, 50, 60])
    doc = build_openlabel([{'index': 5, 'name': '000005', 'stamp_ns': T0, 'labels': [lab]},
                           {'index': 6, 'name': '000006', 'stamp_ns': T0 + PERIOD, 'labels': []}],
                          K=K, T_cam_lidar=T_CAM_LIDAR, width=320, height=120)['openlabel']
    assert doc['metadata']['schema_version'] == '1.0.0'
    assert set(doc) >= {'metadata', 'coordinate_systems', 'streams', 'objects', 'frames', 'frame_intervals'}
    assert doc['objects']['000005_3']['frame_intervals'] == [{'frame_start': 5, 'frame_end': 5}]
    cub = doc['frames']['5']['objects']['000005_3']['object_data']['cuboid'][0]
    assert cub['coordinate_system'] == 'lidar' and len(cub['val']) == 10
    x, y, z, qx, qy, qz, qw, sx, sy, sz = cub['val']
    assert np.allclose([x, y, z, sx, sy, sz], [*c, *s]) and np.isclose(2 * np.arctan2(qz, qw), yaw)
    assert doc['frame_intervals'] == [{'frame_start': 5, 'frame_end': 6}]
    box = trimesh.creation.box(extents=s)
    data = mesh_to_ply_bytes(Mesh(box.vertices, box.faces))
    assert data == mesh_to_ply_bytes(Mesh(box.vertices, box.faces))   # deterministic
    back = trimesh.load(trimesh.util.wrap_as_stream(data), file_type='ply', process=False)
    assert np.allclose(back.vertices, box.vertices) and np.array_equal(back.faces, box.faces)


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    from autolabel_ros.cli.bag import main

    bag = write_tiny_bag(tmp_path / 'two.bag', n=1, extra_cloud_topic=True)
    assert main([str(bag), '--out', str(tmp_path / 'o'), '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'several LiDAR PointCloud2 topics' in err and 'Traceback' not in err
    assert main([str(tmp_path / 'nothing'), '--out', str(tmp_path / 'o'), '--quiet']) == 2
    assert main([str(bag), '--out', str(tmp_path / 'o'), '--prompts', 'bogus', '--quiet']) == 2


def test_ros1_bag_is_read(tmp_path):
    from rosbags.rosbag1 import Writer as Ros1Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from autolabel_ros.io import messages as M

    ts = get_typestore(Stores.ROS1_NOETIC)
    ts.register(get_types_from_msg('geometry_msgs/TransformStamped[] transforms', 'tf2_msgs/msg/TFMessage'))
    fac = M.rosbags_factory(ts)
    path = tmp_path / 'drive.bag'
    img, pts, _ = scene(0)
    info_cls = ts.types['sensor_msgs/msg/CameraInfo']
    roi = fac.new('sensor_msgs/msg/RegionOfInterest')
    with Ros1Writer(path) as w:
        def put(topic, msg, t):
            conn = next((c for c in w.connections if c.topic == topic), None) or \
                w.add_connection(topic, msg.__msgtype__, typestore=ts)
            w.write(conn, t, ts.serialize_ros1(msg, msg.__msgtype__))

        for parent, child, T in (('base_link', 'lidar', T_BASE_LIDAR), ('base_link', 'camera', T_BASE_CAM)):
            put('/tf_static', M.make_tf_static(T, parent, child, T0, fac), T0)
        # ROS 1 CameraInfo spells its matrices D, K, R, P
        put('/camera/camera_info', info_cls(header=M.make_header(T0, 'camera', fac), height=120, width=320,
                                            distortion_model='plumb_bob', D=np.zeros(5), K=K.ravel(),
                                            R=np.eye(3).ravel(), P=np.hstack([K, np.zeros((3, 1))]).ravel(),
                                            binning_x=0, binning_y=0, roi=roi), T0)
        put('/camera/image_raw', M.make_image(img, T0, 'camera', fac), T0)
        put('/velodyne_points', M.make_pointcloud2(pts, T0, 'lidar', fac), T0)
    with BagSource(path) as src:
        assert src.is_ros1 and src.cloud_topic == '/velodyne_points'
        (_, frame, _), = list(src.iter_frames(src.index()))
        assert list(src.sensor_messages(src.index())) == []     # not CDR: not copied
    assert np.array_equal(frame.image, img) and np.allclose(frame.points, pts)
    assert np.allclose(frame.K, K) and np.allclose(frame.T_cam_lidar, T_CAM_LIDAR)


def test_kitti_object_folder_source_with_gt_prompts(kitti_training):
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.io.kitti_raw import KittiObjectSource, is_kitti_object

    assert is_kitti_object(kitti_training)
    src = KittiObjectSource(kitti_training)
    refs = src.index()
    ds = KittiObjectDataset(kitti_training)
    assert [r.name for r in refs] == ds.frame_ids          # KITTI ids kept as frame names
    ref = next(r for r in refs if r.name == '000004')
    (_, frame, prompts), = list(src.iter_frames([ref], gt_prompts=True))
    assert np.allclose(frame.T_cam_lidar, ds.calib('000004').T_cam_lidar)
    assert [p.cls for p in prompts] == ['Car', 'Car']         # the two cars of frame 000004
    with pytest.raises(BagError, match='no prompt topic'):
        list(src.iter_frames([ref], prompts_from_topic=True))
