"""KITTI object I/O: calibration, labels, scans, images, the dataset reader and its prompts."""
import numpy as np
import pytest

from autolabel_ros.core.geometry import points_in_box, project, projected_box2d, transform_points
from autolabel_ros.core.types import Label3D
from autolabel_ros.io.kitti import (KittiCalib, KittiFormatError, KittiObject, KittiObjectDataset,
                                    calib_from_K, kitti_to_label3d, label3d_to_kitti, read_calib,
                                    read_image, read_label_file, read_velodyne, write_calib,
                                    write_kitti_frame, write_label_file)

K = np.array([[720.0, 0, 610], [0, 720.0, 175], [0, 0, 1]])
# LiDAR (x fwd, y left, z up) -> camera (x right, y down, z fwd), slightly tilted, with an offset.
T_AXES = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


def _calib_with_baseline() -> KittiCalib:
    """A KITTI-like calibration: image_2 offset from the reference camera, R0_rect not identity."""
    a = 0.01
    R0 = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Tr = T_AXES.copy()
    Tr[:3, 3] = [0.01, -0.08, -0.27]
    P2 = np.hstack([K, (K @ np.array([0.06, 0.0003, 0.0027]))[:, None]])
    return KittiCalib(P2=P2, R0_rect=R0, Tr_velo_to_cam=Tr[:3])


def test_calib_properties_and_round_trip(tmp_path):
    c = _calib_with_baseline()
    np.testing.assert_allclose(c.K, K)
    np.testing.assert_allclose(c.T_rect_lidar[:3, :3], c.R0_rect @ c.Tr_velo_to_cam[:, :3])
    # K @ T_cam_lidar must reproduce the KITTI projection P2 @ T_rect_lidar (baseline included).
    np.testing.assert_allclose(K @ c.T_cam_lidar[:3], c.P2 @ c.T_rect_lidar, atol=1e-9)
    baseline = c.T_cam_lidar[:3, 3] - c.T_rect_lidar[:3, 3]
    np.testing.assert_allclose(baseline, [0.06, 0.0003, 0.0027], atol=1e-12)
    write_calib(tmp_path / 'c.txt', c)
    text = (tmp_path / 'c.txt').read_text()
    for key in ('P0:', 'P1:', 'P2:', 'P3:', 'R0_rect:', 'Tr_velo_to_cam:', 'Tr_imu_to_velo:'):
        assert key in text
    c2 = read_calib(tmp_path / 'c.txt')
    for key in ('P2', 'R0_rect', 'Tr_velo_to_cam'):
        np.testing.assert_allclose(getattr(c2, key), getattr(c, key), rtol=1e-11, atol=1e-12)


def test_calib_from_K():
    T = T_AXES.copy()
    T[:3, 3] = [0.1, -0.2, 0.3]
    c = calib_from_K(K, T)
    np.testing.assert_allclose(c.K, K)
    np.testing.assert_allclose(c.T_cam_lidar, T)
    np.testing.assert_allclose(c.T_rect_lidar, T)
    np.testing.assert_allclose(c.R0_rect, np.eye(3))


def test_calib_errors_name_file_and_key(tmp_path):
    p = tmp_path / '000007.txt'
    p.write_text('P2: ' + ' '.join(['1'] * 12) + '\nR0_rect: ' + ' '.join(['0'] * 9) + '\n')
    with pytest.raises(KittiFormatError, match=r"000007\.txt.*'Tr_velo_to_cam' missing"):
        read_calib(p)
    p.write_text('P2: 1 2 3\n')
    with pytest.raises(KittiFormatError, match=r'000007\.txt:1: P2 needs 12 numbers, got 3'):
        read_calib(p)
    with pytest.raises(KittiFormatError, match='nope.txt: calibration file not found'):
        read_calib(tmp_path / 'nope.txt')


def _obj(score=None):
    return KittiObject(type='Car', truncated=0.12, occluded=1, alpha=-1.5, bbox=[100.5, 150.25, 300, 260],
                       hwl=[1.5, 1.6, 3.9], location=[2.5, 1.7, 15.25], ry=-1.4, score=score)


def test_label_round_trip_with_and_without_score(tmp_path):
    objs = [_obj(), _obj(0.875)]
    write_label_file(tmp_path / 'l.txt', objs)
    lines = (tmp_path / 'l.txt').read_text().splitlines()
    assert [len(line.split()) for line in lines] == [15, 16]
    back = read_label_file(tmp_path / 'l.txt')
    assert len(back) == 2 and back[0].score is None and back[1].score == pytest.approx(0.875)
    for a, b in zip(objs, back):
        assert (a.type, a.occluded) == (b.type, b.occluded)
        np.testing.assert_allclose([a.truncated, a.alpha, a.ry], [b.truncated, b.alpha, b.ry], atol=1e-6)
        for f in ('bbox', 'hwl', 'location'):
            np.testing.assert_allclose(getattr(a, f), getattr(b, f), atol=1e-6)


def test_label_errors_name_file_and_line(tmp_path):
    p = tmp_path / '000042.txt'
    p.write_text('Car 0 0 0 1 2 3 4 1.5 1.6 3.9 0 1 10 0\nCar 0 0 0 1 2 3\n')
    with pytest.raises(KittiFormatError, match=r'000042\.txt:2: expected 15 or 16 columns, got 7'):
        read_label_file(p)
    p.write_text('Car 0 0 0 1 2 3 4 1.5 1.6 x 0 1 10 0\n')
    with pytest.raises(KittiFormatError, match=r'000042\.txt:1: non-numeric'):
        read_label_file(p)
    with pytest.raises(KittiFormatError, match='label file not found'):
        read_label_file(tmp_path / 'missing.txt')
    p.write_text('\n')
    assert read_label_file(p) == []


def test_label3d_kitti_round_trip_fills_alpha_and_box(tmp_path):
    c = _calib_with_baseline()
    lab = Label3D(center=[15.0, 2.0, -0.8], size=[4.2, 1.8, 1.5], yaw=0.7, score=0.66, truncation=0.1,
                  occlusion=1)
    o = label3d_to_kitti(lab, c, 1242, 375)
    assert o.score == pytest.approx(0.66) and o.truncated == pytest.approx(0.1) and o.occluded == 1
    np.testing.assert_allclose(o.hwl, [1.5, 1.8, 4.2])
    np.testing.assert_allclose(o.alpha, np.arctan2(np.sin(o.ry - np.arctan2(o.location[0], o.location[2])),
                                                   np.cos(o.ry - np.arctan2(o.location[0], o.location[2]))))
    np.testing.assert_allclose(o.bbox, projected_box2d(c.K, c.T_cam_lidar, lab.center, lab.size, lab.yaw,
                                                       1242, 375))
    back = kitti_to_label3d(o, c)
    np.testing.assert_allclose(back.center, lab.center, atol=1e-6)
    np.testing.assert_allclose(back.size, lab.size, atol=1e-6)
    assert abs(back.yaw - lab.yaw) < 1e-6
    # through a file (6 decimals): still within 1e-5
    write_label_file(tmp_path / 'x.txt', [o])
    back = kitti_to_label3d(read_label_file(tmp_path / 'x.txt')[0], c)
    np.testing.assert_allclose(back.box7, lab.box7, atol=1e-5)


def test_velodyne_round_trip_and_bad_size(tmp_path):
    pts = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    pts.tofile(tmp_path / 'a.bin')
    np.testing.assert_array_equal(read_velodyne(tmp_path / 'a.bin'), pts)
    (tmp_path / 'b.bin').write_bytes(pts.tobytes()[:-6])
    with pytest.raises(KittiFormatError, match=r'b\.bin: size 1594 bytes is not a multiple of 16'):
        read_velodyne(tmp_path / 'b.bin')
    with pytest.raises(KittiFormatError, match='velodyne file not found'):
        read_velodyne(tmp_path / 'c.bin')


def test_read_image_errors(tmp_path):
    with pytest.raises(KittiFormatError, match='none.png: image not found'):
        read_image(tmp_path / 'none.png')
    (tmp_path / 'bad.png').write_bytes(b'not a png at all')
    with pytest.raises(KittiFormatError, match='bad.png: cannot decode image'):
        read_image(tmp_path / 'bad.png')


def _synthetic_frame(tmp_path):
    T = T_AXES.copy()
    T[:3, 3] = [0.0, 1.0, 0.5]
    calib = calib_from_K(K, T)
    img = np.random.default_rng(1).integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    pts = np.random.default_rng(2).uniform(-20, 20, (500, 3)).astype(np.float32)
    labels = [Label3D(center=[12.0, 1.0, -0.7], size=[4.0, 1.8, 1.5], yaw=0.3, score=0.9),
              Label3D(center=[25.0, -4.0, -0.7], size=[4.4, 1.9, 1.6], yaw=-1.0, score=0.5)]
    extra = KittiObject('Pedestrian', 0, 0, 0, [600, 150, 620, 200], [1.7, 0.6, 0.8], [0, 1.6, 10], 0)
    write_kitti_frame(tmp_path, '000003', img, pts, calib, labels + [extra])
    return calib, img, pts, labels


def test_write_kitti_frame_and_dataset(tmp_path):
    calib, img, pts, labels = _synthetic_frame(tmp_path)
    ds = KittiObjectDataset(tmp_path)
    assert ds.frame_ids == ['000003']
    f = ds.load_frame('000003')
    np.testing.assert_array_equal(f.image, img)
    assert f.points.shape == (500, 4)
    np.testing.assert_array_equal(f.points[:, :3], pts)
    np.testing.assert_array_equal(f.points[:, 3], 0)
    np.testing.assert_allclose(f.K, K)
    np.testing.assert_allclose(f.T_cam_lidar, calib.T_cam_lidar)
    objs = ds.labels('000003')
    assert [o.type for o in objs] == ['Car', 'Car', 'Pedestrian']
    for o, lab in zip(objs, labels):
        np.testing.assert_allclose(kitti_to_label3d(o, ds.calib('000003')).box7, lab.box7, atol=1e-5)
        assert o.score == pytest.approx(lab.score)
    boxes = ds.prompts('000003', mode='gt-boxes')
    assert [p.id for p in boxes] == [0, 1] and all(p.cls == 'Car' for p in boxes)
    np.testing.assert_allclose(boxes[0].box, objs[0].bbox)
    assert len(ds.prompts('000003', classes=('Car', 'Pedestrian'))) == 3


def test_gt_point_prompts_lie_in_box_centre_and_are_seeded(tmp_path):
    _synthetic_frame(tmp_path)
    ds = KittiObjectDataset(tmp_path)
    p1 = ds.prompts('000003', mode='gt-points', seed=0)
    p2 = ds.prompts('000003', mode='gt-points', seed=0)
    p3 = ds.prompts('000003', mode='gt-points', seed=1)
    assert len(p1) == 2
    for a, b, c, o in zip(p1, p2, p3, ds.labels('000003')):
        assert a.box is None and a.points.shape == (3, 2) and np.all(a.point_labels == 1)
        np.testing.assert_array_equal(a.points, b.points)
        assert not np.allclose(a.points, c.points)
        x1, y1, x2, y2 = o.bbox
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        assert np.all(np.abs(a.points[:, 0] - cx) <= w / 4) and np.all(np.abs(a.points[:, 1] - cy) <= h / 4)
    with pytest.raises(ValueError, match='prompt mode'):
        ds.prompts('000003', mode='clicks')


def test_dataset_missing_files(tmp_path):
    with pytest.raises(KittiFormatError, match='not a KITTI object split'):
        KittiObjectDataset(tmp_path)
    _synthetic_frame(tmp_path)
    (tmp_path / 'image_2' / '000003.png').unlink()
    with pytest.raises(KittiFormatError, match=r'image_2/000003\.png: image not found'):
        KittiObjectDataset(tmp_path).load_frame('000003')


def test_real_kitti_projection_lands_in_gt_boxes(kitti_training):
    """T_cam_lidar must map into the image_2 camera: the LiDAR points inside each Car's 3D box project
    into its 2D box, and the projected 3D box reproduces the annotated 2D box within a few pixels."""
    ds = KittiObjectDataset(kitti_training.parent)   # the root holding training/ is accepted too
    n_cars = n_seen = 0
    for fid in ds.frame_ids:
        frame, calib = ds.load_frame(fid), ds.calib(fid)
        assert frame.points.shape[1] == 4 and frame.image.shape == (frame.height, frame.width, 3)
        for o in ds.labels(fid):
            if o.type != 'Car':
                continue
            n_cars += 1
            lab = kitti_to_label3d(o, calib)
            inside = points_in_box(frame.xyz, lab.center, lab.size, lab.yaw)
            uv, z = project(frame.K, transform_points(frame.T_cam_lidar, frame.xyz[inside]))
            # a truncated car's 2D box is clipped to the image: judge the points that land in the image
            in_img = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < frame.width) & (uv[:, 1] >= 0) \
                & (uv[:, 1] < frame.height)
            uv = uv[in_img]
            x1, y1, x2, y2 = o.bbox
            ok = (uv[:, 0] >= x1 - 2) & (uv[:, 0] <= x2 + 2) & (uv[:, 1] >= y1 - 2) & (uv[:, 1] <= y2 + 2)
            # a far or hidden car may keep only a point or two; those say nothing about the mapping
            if len(uv) >= 3:
                n_seen += 1
                assert ok.mean() >= 0.9, (fid, inside.sum(), ok.mean())
            proj = label3d_to_kitti(lab, calib, frame.width, frame.height)
            assert np.abs(proj.bbox - o.bbox).max() < 4.0, (fid, proj.bbox, o.bbox)
            assert abs(proj.alpha - o.alpha) < 0.05
    # the 12 development frames hold 37 Car labels (shared/data/README.md); nearly all carry points
    assert n_cars == 37 and n_seen >= 34, (n_cars, n_seen)


def test_a_truncated_scan_is_named_alone(tmp_path):
    """The error of a bad velodyne file names that file, not the frame's image before it."""
    _synthetic_frame(tmp_path)
    (tmp_path / 'velodyne' / '000003.bin').write_bytes(b'\0' * 30)
    with pytest.raises(KittiFormatError) as e:
        KittiObjectDataset(tmp_path).load_frame('000003')
    assert str(e.value).startswith(str(tmp_path / 'velodyne' / '000003.bin') + ': size 30 bytes')
    assert 'image_2' not in str(e.value)
