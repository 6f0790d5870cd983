"""Message conversion against the real ROS 2 definitions (rosbags typestore, vision_msgs 4.x).

Every built message goes through CDR serialization and back, which proves it is well-formed for
the ROS 2 definitions (rosbags checks every field's type and array length while serializing).
"""
import array
import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image as PILImage

from autolabel_ros.core.geometry import box_corners
from autolabel_ros.core.types import Label3D, Mesh, Prompt
from autolabel_ros.io import messages as m
from autolabel_ros.io.ros_types import VISION_MSGS_DEFINITIONS, get_typestore

TS = get_typestore()
F = m.rosbags_factory(TS)
STAMP = 1_700_000_123_456_789_012


def cdr(msg):
    """Serialize to CDR and back: fails when a field has the wrong type or array length."""
    name = msg.__msgtype__
    return TS.deserialize_cdr(bytes(TS.serialize_cdr(msg, name)), name)


def assert_header(msg, frame_id, stamp_ns=STAMP):
    assert msg.header.frame_id == frame_id
    assert m.stamp_to_ns(msg.header.stamp) == stamp_ns


# ---------------------------------------------------------------------------------- typestore

def test_typestore_has_vision_msgs_4x_layout():
    assert get_typestore() is TS
    for name in VISION_MSGS_DEFINITIONS:
        assert name in TS.types
    fields = [f[0] for f in TS.fielddefs['vision_msgs/msg/Detection2D'][1]]
    assert fields == ['header', 'results', 'bbox', 'id']
    assert [f[0] for f in TS.fielddefs['vision_msgs/msg/Pose2D'][1]] == ['position', 'theta']
    assert [f[0] for f in TS.fielddefs['vision_msgs/msg/ObjectHypothesis'][1]] == ['class_id', 'score']
    assert [f[0] for f in TS.fielddefs['vision_msgs/msg/BoundingBox3D'][1]] == ['center', 'size']


def test_rosbags_factory_fills_ros_defaults():
    pose = F.new('geometry_msgs/msg/Pose')
    assert pose.orientation.w == 1.0 and pose.position.x == 0.0
    marker = cdr(F.new('visualization_msgs/msg/Marker', ns='x'))
    assert marker.ns == 'x' and marker.points == [] and marker.pose.orientation.w == 1.0
    with pytest.raises(m.MessageError, match='no_such_msgs/msg/Foo'):
        F('no_such_msgs/msg/Foo')


def test_rclpy_flavour_array_types():
    rf = m.MessageFactory(lambda t: object, 'rclpy')
    data = rf.uint8_seq(np.arange(6, dtype=np.uint8))
    assert isinstance(data, array.array) and data.typecode == 'B' and list(data) == list(range(6))
    d = rf.float64_seq([1, 2.5])
    assert isinstance(d, array.array) and d.typecode == 'd' and list(d) == [1.0, 2.5]
    assert isinstance(F.uint8_seq(b'\x01\x02'), np.ndarray)
    with pytest.raises(ValueError, match='flavour'):
        m.MessageFactory(lambda t: object, 'ros1')


# ---------------------------------------------------------------------------------- images

def _rgb(h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_image_round_trip_rgb8_and_mono8():
    rgb = _rgb()
    msg = cdr(m.make_image(rgb, STAMP, 'camera', F))
    assert msg.encoding == 'rgb8' and msg.step == 7 * 3
    assert_header(msg, 'camera')
    np.testing.assert_array_equal(m.image_to_numpy(msg), rgb)
    mono = rgb[:, :, 0]
    out = m.image_to_numpy(cdr(m.make_image(mono, STAMP, 'camera', F)))
    np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, axis=2))


def _raw_image(pixels: np.ndarray, encoding: str, pad: int, bigendian: bool):
    """An Image message with ``pad`` garbage bytes at the end of every row."""
    h, w = pixels.shape[:2]
    px = pixels.astype(pixels.dtype.newbyteorder('>' if bigendian else '<'))
    row = px.reshape(h, -1).view(np.uint8).reshape(h, -1)
    rows = np.hstack([row, np.full((h, pad), 0xAB, np.uint8)])
    return F.new('sensor_msgs/msg/Image', header=m.make_header(STAMP, 'cam', F), height=h, width=w,
                 encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1],
                 data=F.uint8_seq(rows.tobytes()))


@pytest.mark.parametrize('encoding,pad,bigendian', [
    ('rgb8', 0, False), ('rgb8', 3, False), ('bgr8', 5, False), ('rgba8', 4, False),
    ('bgra8', 2, True), ('mono8', 1, False), ('8UC1', 0, False), ('8UC3', 4, False)])
def test_image_8bit_encodings_with_step_padding(encoding, pad, bigendian):
    rgb = _rgb(4, 6, seed=len(encoding) + pad)
    alpha = np.full((4, 6, 1), 200, np.uint8)
    pixels = {'rgb8': rgb, 'bgr8': rgb[:, :, ::-1], '8UC3': rgb[:, :, ::-1],
              'rgba8': np.concatenate([rgb, alpha], 2), 'bgra8': np.concatenate([rgb[:, :, ::-1], alpha], 2),
              'mono8': rgb[:, :, :1], '8UC1': rgb[:, :, :1]}[encoding]
    out = m.image_to_numpy(cdr(_raw_image(np.ascontiguousarray(pixels), encoding, pad, bigendian)))
    want = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding in ('mono8', '8UC1') else rgb
    assert out.dtype == np.uint8 and out.shape == (4, 6, 3)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize('encoding,bigendian,pad', [('mono16', False, 0), ('mono16', True, 2),
                                                    ('mono16', True, 6)])
def test_image_16bit_mono_scaled_and_endianness(encoding, bigendian, pad):
    vals = np.array([[0, 1000, 4095], [2048, 4095, 10]], dtype=np.uint16)    # 12-bit sensor
    out = m.image_to_numpy(cdr(_raw_image(vals[:, :, None], encoding, pad, bigendian)))
    want = np.round(vals.astype(np.float32) * 255 / 4095).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], want)
    np.testing.assert_array_equal(out[:, :, 2], want)
    small = np.array([[3, 200]], dtype=np.uint16)    # 8-bit data in a 16-bit container: unchanged
    out = m.image_to_numpy(_raw_image(small[:, :, None], encoding, 0, bigendian))
    np.testing.assert_array_equal(out[..., 1], small.astype(np.uint8))


def test_depth_encodings_are_refused_as_camera_images():
    vals = np.array([[0, 1000], [2048, 4095]], dtype=np.uint16)
    for enc in ('16UC1', '32FC1'):
        with pytest.raises(m.MessageError, match='depth image, not a camera image'):
            m.image_to_numpy(_raw_image(vals[:, :, None], enc, 0, False))


def test_image_reads_rclpy_style_array_and_bytes():
    rgb = _rgb(3, 4)
    buf = array.array('B')
    buf.frombytes(rgb.tobytes())
    msg = SimpleNamespace(height=3, width=4, encoding='rgb8', is_bigendian=0, step=12, data=buf)
    np.testing.assert_array_equal(m.image_to_numpy(msg), rgb)
    msg.data = rgb.tobytes()
    np.testing.assert_array_equal(m.image_to_numpy(msg), rgb)


def test_image_errors_name_the_problem():
    msg = m.make_image(_rgb(), STAMP, 'cam', F)
    msg.encoding = 'yuv422'
    with pytest.raises(m.MessageError, match="unsupported encoding 'yuv422'.*rgb8"):
        m.image_to_numpy(msg)
    msg = m.make_image(_rgb(), STAMP, 'cam', F)
    msg.data = msg.data[:-10]
    with pytest.raises(m.MessageError, match='expected at least 105'):
        m.image_to_numpy(msg)
    with pytest.raises(m.MessageError, match='H x W x 3'):
        m.make_image(np.zeros((4, 4, 3), np.float32), STAMP, 'cam', F)


def test_compressed_image_png_exact_and_jpeg_close():
    yy, xx = np.mgrid[0:16, 0:24]
    rgb = np.stack([xx * 10, yy * 15, 255 - xx * 10], axis=2).astype(np.uint8)    # smooth: JPEG-friendly
    for fmt in ('png', 'jpeg'):
        b = io.BytesIO()
        PILImage.fromarray(rgb).save(b, format=fmt.upper(), quality=95)
        msg = cdr(F.new('sensor_msgs/msg/CompressedImage', header=m.make_header(STAMP, 'cam', F),
                        format=fmt, data=F.uint8_seq(b.getvalue())))
        out = m.compressed_image_to_numpy(msg)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        if fmt == 'png':
            np.testing.assert_array_equal(out, rgb)
        else:
            assert np.abs(out.astype(int) - rgb).mean() < 6
    bad = F.new('sensor_msgs/msg/CompressedImage', format='jpeg', data=F.uint8_seq(b'not an image'))
    with pytest.raises(m.MessageError, match=r"format 'jpeg' \(12 bytes\): not an image format"):
        m.compressed_image_to_numpy(bad)


# ---------------------------------------------------------------------------------- camera info

def test_camera_info_round_trip():
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    msg = cdr(m.make_camera_info(K, 1242, 375, STAMP, 'camera', F))
    assert_header(msg, 'camera')
    K2, w, h = m.camera_info_to_intrinsics(msg)
    np.testing.assert_allclose(K2, K)
    assert (w, h) == (1242, 375) and msg.distortion_model == 'plumb_bob'
    Kp, _, _ = m.camera_info_to_intrinsics(msg, use_projection=True)
    np.testing.assert_allclose(Kp, K)
    ros1 = SimpleNamespace(K=list(K.ravel()), width=10, height=20)    # ROS 1 field name
    np.testing.assert_allclose(m.camera_info_to_intrinsics(ros1)[0], K)
    msg.k = np.zeros(9)
    with pytest.raises(m.MessageError, match='calibrated'):
        m.camera_info_to_intrinsics(msg)


# ---------------------------------------------------------------------------------- point clouds

def test_pointcloud_round_trip_with_ring_and_nan_filter():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(50, 4)).astype(np.float32)
    pts[3, 0] = np.nan
    pts[7, 2] = np.inf
    ring = rng.integers(0, 64, 50)
    msg = cdr(m.make_pointcloud2(pts, STAMP, 'lidar', F, ring=ring))
    assert_header(msg, 'lidar')
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'intensity', 'ring']
    assert msg.point_step == 20 and msg.row_step == 20 * 50 and not msg.is_dense
    out = m.pointcloud2_to_numpy(msg)
    keep = np.ones(50, bool)
    keep[[3, 7]] = False
    np.testing.assert_array_equal(out, pts[keep])
    np.testing.assert_array_equal(m.pointcloud2_to_numpy(msg, with_intensity=False), pts[keep, :3])
    rec = np.frombuffer(msg.data.tobytes(), dtype=np.dtype({'names': ['ring'], 'formats': ['<u2'],
                                                             'offsets': [16], 'itemsize': 20}))
    np.testing.assert_array_equal(rec['ring'], ring)
    # N x 3 input: intensity zeros; 16-byte points
    msg3 = cdr(m.make_pointcloud2(pts[keep, :3], STAMP, 'lidar', F))
    assert msg3.point_step == 16 and msg3.is_dense
    np.testing.assert_array_equal(m.pointcloud2_to_numpy(msg3)[:, 3], 0)
    empty = cdr(m.make_pointcloud2(np.zeros((0, 4)), STAMP, 'lidar', F))
    assert m.pointcloud2_to_numpy(empty).shape == (0, 4)


@pytest.mark.parametrize('bigendian', [False, True])
def test_pointcloud_any_layout(bigendian):
    """Shuffled fields, float64 xyz, uint16 intensity, padded points, 2 rows with padded row_step."""
    e = '>' if bigendian else '<'
    dt = np.dtype({'names': ['intensity', 'z', 'x', 'y'], 'formats': [e + 'u2', e + 'f8', e + 'f8', e + 'f4'],
                   'offsets': [0, 4, 16, 28], 'itemsize': 40})
    rng = np.random.default_rng(2)
    width, height, row_pad = 6, 2, 8
    rec = np.zeros(width * height, dt)
    xyz = rng.normal(size=(width * height, 3)) * 10
    xyz[4, 1] = np.nan
    rec['x'], rec['y'], rec['z'] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rec['intensity'] = rng.integers(0, 60000, width * height)
    rows = np.hstack([rec.view(np.uint8).reshape(height, -1), np.full((height, row_pad), 0xEE, np.uint8)])
    types = {'intensity': 4, 'z': 8, 'x': 8, 'y': 7}
    fields = [F.new('sensor_msgs/msg/PointField', name=n, offset=dt.fields[n][1], datatype=types[n], count=1)
              for n in dt.names]
    msg = cdr(F.new('sensor_msgs/msg/PointCloud2', header=m.make_header(STAMP, 'lidar', F), height=height,
                    width=width, fields=fields, is_bigendian=bigendian, point_step=40,
                    row_step=width * 40 + row_pad, data=F.uint8_seq(rows.tobytes()), is_dense=False))
    out = m.pointcloud2_to_numpy(msg)
    keep = np.isfinite(xyz).all(axis=1)
    assert out.shape == (keep.sum(), 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :3], xyz[keep].astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 3], rec['intensity'][keep].astype(np.float32))


def test_pointcloud_missing_fields():
    msg = m.make_pointcloud2(np.ones((3, 3)), STAMP, 'lidar', F)
    msg.fields = [f for f in msg.fields if f.name != 'intensity']
    np.testing.assert_array_equal(m.pointcloud2_to_numpy(msg), np.c_[np.ones((3, 3)), np.zeros(3)])
    msg.fields = [f for f in msg.fields if f.name != 'z']
    with pytest.raises(m.MessageError, match=r"missing field\(s\) \['z'\]"):
        m.pointcloud2_to_numpy(msg)
    msg = m.make_pointcloud2(np.ones((3, 3)), STAMP, 'lidar', F)
    msg.data = msg.data[:20]
    with pytest.raises(m.MessageError, match='PointCloud2: data has 20 bytes'):
        m.pointcloud2_to_numpy(msg)


# ---------------------------------------------------------------------------------- TF

def test_tf_static_round_trip():
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler('xyz', [-90, 3, -88], degrees=True).as_matrix()
    T[:3, 3] = [0.27, -0.08, -0.06]
    msg = cdr(m.make_tf_static(T, 'camera', 'lidar', STAMP, F))
    assert len(msg.transforms) == 1
    ts = msg.transforms[0]
    assert ts.header.frame_id == 'camera' and ts.child_frame_id == 'lidar'
    np.testing.assert_allclose(m.transform_to_matrix(ts), T, atol=1e-12)
    np.testing.assert_allclose(m.transform_to_matrix(ts.transform), T, atol=1e-12)
    q = ts.transform.rotation
    q.w = q.x = q.y = q.z = 0.0
    with pytest.raises(m.MessageError, match='quaternion'):
        m.transform_to_matrix(ts)


# ---------------------------------------------------------------------------------- vision_msgs

def test_detection2d_round_trip_to_prompts():
    prompts = [Prompt(id=3, box=[10, 20, 110, 80], cls='Car', score=0.9),
               Prompt(id=7, points=[[50, 60], [70, 90]], cls='Truck', score=0.5)]
    msg = cdr(m.prompts_to_detection2d_array(prompts, STAMP, 'camera', F))
    assert_header(msg, 'camera')
    assert msg.detections[0].bbox.center.position.x == 60 and msg.detections[0].bbox.size_y == 60
    back = m.detection2d_array_to_prompts(msg)
    assert [p.id for p in back] == [3, 7] and [p.cls for p in back] == ['Car', 'Truck']
    np.testing.assert_allclose([p.score for p in back], [0.9, 0.5])
    np.testing.assert_allclose(back[0].box, [10, 20, 110, 80])
    np.testing.assert_allclose(back[1].box, prompts[1].bounding_box())
    # non-numeric id -> index; no results -> default class; zero-size box skipped
    msg.detections[0].id = 'car-a'
    msg.detections[1].results = []
    msg.detections.append(cdr(m.prompts_to_detection2d_array(prompts[:1], STAMP, 'camera', F)).detections[0])
    msg.detections[2].bbox.size_x = 0.0
    back = m.detection2d_array_to_prompts(msg)
    assert [p.id for p in back] == [0, 7] and back[1].cls == 'Car' and back[1].score == 1.0



def test_detection2d_reused_ids_become_unique():
    """A detector that reuses ids (or leaves them empty) must not give two prompts one id."""
    boxes = [Prompt(id=5, box=[10, 20, 110, 80]), Prompt(id=5, box=[200, 20, 300, 80]),
             Prompt(id=1, box=[400, 20, 500, 80]), Prompt(id=0, box=[10, 200, 110, 280])]
    msg = cdr(m.prompts_to_detection2d_array(boxes, STAMP, 'camera', F))
    msg.detections[3].id = ''                  # no id: its index 3 is free
    back = m.detection2d_array_to_prompts(msg)
    assert [p.id for p in back] == [5, 6, 1, 3]
    np.testing.assert_allclose(back[1].box, [200, 20, 300, 80])
    msg.detections[3].id = '1'                 # reused, and its index... 3 is free again
    msg.detections[2].id = 'x'                 # index 2 free
    assert [p.id for p in m.detection2d_array_to_prompts(msg)] == [5, 6, 2, 1]
    for d in msg.detections:                   # every detection "0": 0, then the indices 1, 2, 3
        d.id = '0'
    assert [p.id for p in m.detection2d_array_to_prompts(msg)] == [0, 1, 2, 3]
    msg.detections[0].id = '2'                 # 2 and 0 taken; index 2 is not free: 3, then 4
    assert [p.id for p in m.detection2d_array_to_prompts(msg)] == [2, 0, 3, 4]

def _labels():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float) + [10, 2, -1]
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    return [Label3D(center=[10, 2, -0.8], size=[4.2, 1.8, 1.5], yaw=0.7, cls='Car', score=0.83, id=4,
                    mesh=Mesh(verts, faces)),
            Label3D(center=[-5, 8, -0.9], size=[4.5, 1.9, 1.6], yaw=-2.5, cls='Car', score=0.2, id=9,
                    accepted=False, reasons=['mask_iou']),
            Label3D(center=[np.nan] * 3, size=[4, 2, 1.5], yaw=0.0, score=0.0, id=11, accepted=False,
                    reasons=['empty_box']),    # never placed: no 3D message at all
            ]


def _yaw_of(q):
    assert abs(q.x) < 1e-12 and abs(q.y) < 1e-12
    return 2 * np.arctan2(q.z, q.w)


def test_labels_to_detection3d_array():
    labels = _labels()
    msg = cdr(m.labels_to_detection3d_array(labels, STAMP, 'lidar', F))
    assert_header(msg, 'lidar')
    assert len(msg.detections) == 1
    d = msg.detections[0]
    assert d.id == '4' and d.results[0].hypothesis.class_id == 'Car'
    assert d.results[0].hypothesis.score == pytest.approx(0.83)
    p = d.bbox.center.position
    np.testing.assert_allclose([p.x, p.y, p.z], labels[0].center)
    np.testing.assert_allclose([d.bbox.size.x, d.bbox.size.y, d.bbox.size.z], labels[0].size)
    assert _yaw_of(d.bbox.center.orientation) == pytest.approx(0.7)
    both = cdr(m.labels_to_detection3d_array(labels, STAMP, 'lidar', F, include_rejected=True))
    assert [x.id for x in both.detections] == ['4', '9']
    assert _yaw_of(both.detections[1].bbox.center.orientation) == pytest.approx(-2.5)


def test_labels_to_marker_array_content():
    labels = _labels()
    msg = cdr(m.labels_to_marker_array(labels, STAMP, 'lidar', F))
    M = TS.types['visualization_msgs/msg/Marker']
    mk = msg.markers
    # RViz (ros2/rviz#685) clears only the DELETEALL's own namespace unless it is empty
    assert mk[0].action == M.DELETEALL and mk[0].ns == ''
    # label 4: cube, edges, text, mesh; label 9 (no mesh): cube, edges, text
    B, E, T, TL = M.CUBE, M.LINE_LIST, M.TEXT_VIEW_FACING, M.TRIANGLE_LIST
    assert [(x.ns, x.id, x.type) for x in mk[1:]] == [
        ('autolabel/box', 4, B), ('autolabel/edges', 4, E), ('autolabel/text', 4, T),
        ('autolabel/mesh', 4, TL),
        ('autolabel/box', 9, B), ('autolabel/edges', 9, E), ('autolabel/text', 9, T)]
    for x in mk:
        assert_header(x, 'lidar')
        assert x.lifetime.sec == 0 and x.lifetime.nanosec == 0
    cube, edges, text, mesh = mk[1:5]
    assert cube.action == M.ADD and 0 < cube.color.a < 1 and cube.color.g > cube.color.r
    np.testing.assert_allclose([cube.scale.x, cube.scale.y, cube.scale.z], labels[0].size)
    assert _yaw_of(cube.pose.orientation) == pytest.approx(0.7)
    assert len(edges.points) == 24 + 2
    pts = np.array([[p.x, p.y, p.z] for p in edges.points])
    corners = box_corners(labels[0].center, labels[0].size, labels[0].yaw)
    for a in range(0, 24, 2):    # every segment joins two distinct corners
        da = np.linalg.norm(corners - pts[a], axis=1).min()
        db = np.linalg.norm(corners - pts[a + 1], axis=1).min()
        assert da < 1e-9 and db < 1e-9
    heading = pts[25] - pts[24]
    np.testing.assert_allclose(pts[24], labels[0].center)
    np.testing.assert_allclose(heading, [2.1 * np.cos(0.7), 2.1 * np.sin(0.7), 0], atol=1e-9)
    assert text.text == 'Car 0.83 #4' and text.pose.position.z > labels[0].center[2] + 0.75
    assert len(mesh.points) == 3 * 4
    np.testing.assert_allclose([mesh.points[5].x, mesh.points[5].y, mesh.points[5].z], [10, 2, 0])
    rejected_cube, _, rejected_text = mk[5:8]
    assert rejected_cube.color.r > rejected_cube.color.g
    assert rejected_text.text == 'Car 0.20 #9 rejected: mask_iou'
    # no labels: just the DELETEALL that clears the last frame
    assert len(cdr(m.labels_to_marker_array([], STAMP, 'lidar', F)).markers) == 1



def test_marker_meshes_are_decimated_or_left_out():
    """A full-resolution mesh (an icosphere of 20480 triangles) is sent with at most
    mesh_max_triangles triangles; meshes=False sends none; 0 = full resolution."""
    import open3d as o3d

    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=100)
    verts, faces = np.asarray(sphere.vertices) + [10, 2, 0], np.asarray(sphere.triangles)
    assert len(faces) > 10000
    lab = Label3D(center=[10, 2, 0], size=[2, 2, 2], yaw=0.0, id=1, mesh=Mesh(verts, faces))
    M = TS.types['visualization_msgs/msg/Marker']
    mk = cdr(m.labels_to_marker_array([lab], STAMP, 'lidar', F, mesh_max_triangles=500)).markers
    mesh = [x for x in mk if x.type == M.TRIANGLE_LIST]
    assert len(mesh) == 1 and 0 < len(mesh[0].points) <= 3 * 500 and len(mesh[0].points) % 3 == 0
    pts = np.array([[p.x, p.y, p.z] for p in mesh[0].points])
    r = np.linalg.norm(pts - [10, 2, 0], axis=1)
    assert r.min() > 0.9 and r.max() < 1.05          # still the same sphere
    full = cdr(m.labels_to_marker_array([lab], STAMP, 'lidar', F, mesh_max_triangles=0)).markers
    assert len([x for x in full if x.type == M.TRIANGLE_LIST][0].points) == 3 * len(faces)
    none = cdr(m.labels_to_marker_array([lab], STAMP, 'lidar', F, meshes=False)).markers
    assert [x.type for x in none] == [M.CUBE, M.CUBE, M.LINE_LIST, M.TEXT_VIEW_FACING]

# ---------------------------------------------------------------------------------- rclpy flavour

class _RclpyLike:
    """Message classes that enforce rosidl_generator_py's setter rules (rclpy is not installable
    here): exact Python types for primitives, numpy of the right dtype/size for fixed arrays,
    array.array (or a real sequence, never numpy) for unbounded primitive sequences, instances of
    the right class for nested messages. Builders in the 'rclpy' flavour must satisfy them."""

    CODES = {'uint8': 'B', 'int8': 'b', 'uint16': 'H', 'int16': 'h', 'uint32': 'I', 'int32': 'i',
             'float32': 'f', 'float64': 'd'}

    def __init__(self):
        self.classes = {}

    def resolve(self, typename):
        if typename not in self.classes:
            consts = {name: value for name, _, value in TS.fielddefs[typename][0]}
            self.classes[typename] = type(typename.replace('/', '_'), (),
                                          {'__init__': self._init(typename), **consts})
        return self.classes[typename]

    def _check_base(self, tname, v, where):
        if tname == 'string':
            assert isinstance(v, str), where
        elif tname == 'bool':
            assert isinstance(v, bool), where
        elif tname.startswith('float'):
            assert isinstance(v, float), f'{where}: {type(v).__name__} is not float'
        else:
            assert isinstance(v, int) and not isinstance(v, np.integer), f'{where}: {type(v).__name__}'

    def _check(self, desc, v, where):
        from rosbags.interfaces import Nodetype
        kind, rest = desc
        if kind == Nodetype.BASE:
            self._check_base(rest[0], v, where)
        elif kind == Nodetype.NAME:
            assert isinstance(v, self.resolve(rest)), f'{where}: not a {rest}'
        else:
            (sub_kind, sub), n = rest
            if sub_kind == Nodetype.BASE and sub[0] in self.CODES and kind == Nodetype.ARRAY:
                assert isinstance(v, np.ndarray) and v.dtype == np.dtype(sub[0]) and v.size == n, where
            elif sub_kind == Nodetype.BASE and sub[0] in self.CODES:
                if isinstance(v, array.array):
                    assert v.typecode == self.CODES[sub[0]], where
                else:
                    assert isinstance(v, (list, tuple, bytes)), f'{where}: {type(v).__name__} not a sequence'
            else:
                assert isinstance(v, (list, tuple)), where
                for x in v:
                    self._check((sub_kind, sub), x, where + '[]')

    def _init(self, typename):
        fielddefs = dict(TS.fielddefs[typename][1])
        outer = self

        def __init__(obj, **kwargs):
            unknown = set(kwargs) - set(fielddefs)
            assert not unknown, f'{typename}: unknown fields {unknown}'
            for name, desc in fielddefs.items():
                if name in kwargs:
                    outer._check(desc, kwargs[name], f'{typename}.{name}')
                    setattr(obj, name, kwargs[name])
                else:    # ROS default: reuse the rosbags default value (converted lazily; never checked)
                    setattr(obj, name, None)
        return __init__


def test_rclpy_flavour_builders_satisfy_rclpy_setter_rules():
    like = _RclpyLike()
    rf = m.class_factory(like.resolve)
    for bad in (dict(x=1), dict(x=np.float32(1.0)), dict(q=1.0)):     # the rules bite
        with pytest.raises(AssertionError):
            rf.new('geometry_msgs/msg/Point', **bad)
    with pytest.raises(AssertionError, match='not a sequence'):
        rf.new('sensor_msgs/msg/Image', data=np.zeros(3, np.uint8))
    rgb = _rgb()
    img = m.make_image(rgb, STAMP, 'camera', rf)
    assert isinstance(img.data, array.array)
    np.testing.assert_array_equal(m.image_to_numpy(img), rgb)       # readers take rclpy-style data
    info = m.make_camera_info(np.eye(3) * 500, 640, 480, STAMP, 'camera', rf)
    assert isinstance(info.d, array.array) and info.k.dtype == np.float64
    pts = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    cloud = m.make_pointcloud2(pts, STAMP, 'lidar', rf, ring=np.arange(20))
    np.testing.assert_array_equal(m.pointcloud2_to_numpy(cloud), pts)
    tf = m.make_tf_static(np.eye(4), 'camera', 'lidar', STAMP, rf)
    np.testing.assert_allclose(m.transform_to_matrix(tf.transforms[0]), np.eye(4))
    d2 = m.prompts_to_detection2d_array([Prompt(id=np.int64(3), box=[1, 2, 30, 40])], STAMP, 'camera', rf)
    assert [p.id for p in m.detection2d_array_to_prompts(d2)] == [3]
    m.labels_to_detection3d_array(_labels(), STAMP, 'lidar', rf)
    mk = m.labels_to_marker_array(_labels(), STAMP, 'lidar', rf)
    assert len(mk.markers) == 8
