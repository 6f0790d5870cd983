"""io/frames.py: the one messages -> SensorFrame builder of the fitter node and the bag tool, and
distorted (image_raw) cameras: undistorted so LiDAR points land on the pixels they hit, or refused.

The distorted camera is the simulator's pinhole camera seen through a known plumb_bob lens (OpenCV
warps the simulator's image and car masks); its LiDAR returns are labelled per car by the simulator.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from autolabel_ros.core.geometry import project, transform_points
from autolabel_ros.io import frames as FR
from autolabel_ros.io import messages as M
from autolabel_ros.io.bags import BagError, BagSource
from autolabel_ros.io.label_bag import BagWriter
from autolabel_ros.io.ros_types import get_typestore
from autolabel_ros.nodes import inputs, params
from autolabel_ros.sim import simulate_frame

TS = get_typestore()
F = M.rosbags_factory(TS)
D = np.array([-0.3, 0.1, 0.001, -0.002, 0.0])     # plumb_bob k1 k2 p1 p2 k3 (KITTI-like barrel)


def cdr(msg):
    name = msg.__msgtype__
    return TS.deserialize_cdr(bytes(TS.serialize_cdr(msg, name)), name)


def distort(img: np.ndarray, K: np.ndarray, d: np.ndarray, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    """What a camera with lens distortion ``d`` records of the pinhole image ``img``: each raw pixel
    takes the pinhole pixel its ray goes through (cv2.undistortPoints with P = K)."""
    h, w = img.shape[:2]
    uv = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).reshape(-1, 1, 2).astype(np.float64)
    ideal = cv2.undistortPoints(uv, K, d, P=K).reshape(h, w, 2).astype(np.float32)
    return cv2.remap(img, ideal[..., 0], ideal[..., 1], interpolation, borderMode=cv2.BORDER_CONSTANT)


def info_with(K, w, h, d, stamp, model='plumb_bob'):
    info = M.make_camera_info(K, w, h, stamp, 'camera', F)
    info.d = np.asarray(d, np.float64)
    info.distortion_model = model
    return cdr(info)


@pytest.fixture(scope='module')
def sim():
    sf = simulate_frame(100000)
    ids, counts = np.unique(sf.point_instance[sf.point_instance > 0], return_counts=True)
    fr = sf.frame
    # the car (with enough returns) farthest from the principal point: where distortion moves most
    best, best_r = None, -1.0
    for cid, n in zip(ids, counts):
        if n < 40:
            continue
        uv, _ = project(fr.K, transform_points(fr.T_cam_lidar, fr.points[sf.point_instance == cid, :3]))
        r = np.linalg.norm(uv.mean(0) - fr.K[:2, 2])
        if r > best_r:
            best, best_r = int(cid), r
    assert best is not None
    return sf, best


def car_points_in_mask(frame, mask_rgb: np.ndarray, sf, car: int) -> float:
    """Fraction of the car's LiDAR returns that project (with frame.K) into the car's mask image."""
    cam = transform_points(frame.T_cam_lidar, sf.frame.points[sf.point_instance == car, :3])
    uv, z = project(frame.K, cam)
    u, v = np.round(uv).astype(int).T
    h, w = mask_rgb.shape[:2]
    ok = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return float((mask_rgb[v[ok], u[ok], 0] > 127).mean())


def test_undistorted_raw_image_puts_lidar_points_back_on_their_car(sim):
    sf, car = sim
    fr = sf.frame
    h, w = fr.image.shape[:2]
    mask = np.repeat(((sf.masks == car) * 255).astype(np.uint8)[..., None], 3, axis=2)
    raw_mask = distort(mask, fr.K, D, cv2.INTER_NEAREST)
    stamp = fr.stamp_ns
    cloud = cdr(M.make_pointcloud2(fr.points, stamp, 'lidar', F))

    def frame_of(img, d):
        cam = FR.camera_from_info(info_with(fr.K, w, h, d, stamp))
        return FR.sensor_frame(cdr(M.make_image(img, stamp, 'camera', F)), cloud, cam, fr.T_cam_lidar,
                               stamp_ns=stamp, frame_id='f', lidar_frame='lidar', camera_frame='camera')

    pinhole = car_points_in_mask(frame_of(mask, np.zeros(5)), mask, sf, car)
    undistorted_frame = frame_of(raw_mask, D)
    undistorted = car_points_in_mask(undistorted_frame, undistorted_frame.image, sf, car)
    raw_as_pinhole = car_points_in_mask(frame_of(raw_mask, np.zeros(5)), raw_mask, sf, car)   # d ignored
    assert pinhole > 0.85
    assert undistorted > pinhole - 0.05, (pinhole, undistorted)
    assert raw_as_pinhole < pinhole - 0.1, (pinhole, raw_as_pinhole)   # 0.98 -> 0.78 on this car
    # the camera image itself comes back to the pinhole one (inside the raw image's field of view)
    raw = distort(fr.image, fr.K, D)
    back = frame_of(raw, D).image.astype(int)
    valid = distort(np.full_like(fr.image, 255), fr.K, D)
    valid = frame_of(valid, D).image[..., 0] == 255
    err = np.abs(back - fr.image.astype(int))[valid].mean()
    err_raw = np.abs(raw.astype(int) - fr.image.astype(int))[valid].mean()
    assert valid.mean() > 0.8 and err < 0.3 * err_raw, (err, err_raw)


def test_distortion_refused_or_unknown_names_the_topic(sim):
    fr = sim[0].frame
    h, w = fr.image.shape[:2]
    info = info_with(fr.K, w, h, D, fr.stamp_ns)
    with pytest.raises(FR.FrameError, match=r"camera_info on /cam/info: distortion model 'plumb_bob' with "
                                            r"non-zero d .* undistortion is off"):
        FR.camera_from_info(info, undistort=False, where='camera_info on /cam/info')
    info.distortion_model = 'kannala_brandt_custom'
    with pytest.raises(FR.FrameError, match="cannot undistort distortion model 'kannala_brandt_custom'"):
        FR.camera_from_info(info)
    # a rectified image (image_rect) keeps d in its camera_info: P is used and d ignored
    cam = FR.camera_from_info(info, rectified=True)
    assert not cam.distorted
    # zero d, any model: the image is used as it is
    info.d = np.zeros(5)
    assert not FR.camera_from_info(info, undistort=False).distorted
    # rational_polynomial (8 coefficients) and equidistant (fisheye, 4) are undone with OpenCV
    info.distortion_model, info.d = 'rational_polynomial', np.r_[D, 0.01, 0.0, 0.0]
    assert FR.camera_from_info(info).distorted
    info.distortion_model, info.d = 'equidistant', np.array([0.05, 0.01, 0.0, 0.0])
    img = FR.camera_from_info(info).prepare(fr.image)
    assert img.shape == fr.image.shape and not np.array_equal(img, fr.image)


def tf2_style_inverse(transform) -> np.ndarray:
    """What the node gets from tf2 for the inverse of a stored transform: the inverse taken on the
    quaternion (tf2 chains Transforms, then hands back a quaternion), turned into a matrix."""
    from scipy.spatial.transform import Rotation

    t = transform.transform
    inv = Rotation.from_quat([t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w]).inv()
    out = np.eye(4)
    out[:3, :3] = inv.as_matrix()
    out[:3, 3] = -inv.apply([t.translation.x, t.translation.y, t.translation.z])
    return out


def test_node_and_bag_tool_build_the_same_frame(sim, tmp_path):
    """The fitter node's frame preparation and the bag tool read the same distorted messages into the
    same SensorFrame, bit for bit (image, K, points, extrinsic): both go through io/frames.py. The TF
    edge is stored LiDAR -> camera (as the simulator's bag has it), so the bag tool inverts a matrix
    while tf2 inverts the quaternion: the two extrinsics differ by float noise, which the builder
    snaps away (a MobileSAM run once took a near-tie heading differently in the two faces)."""
    sf, _ = sim
    fr = sf.frame
    h, w = fr.image.shape[:2]
    stamp = fr.stamp_ns or 1_600_000_000_000_000_000
    img = M.make_image(distort(fr.image, fr.K, D), stamp, 'camera', F)
    info = info_with(fr.K, w, h, D, stamp)
    cloud = M.make_pointcloud2(fr.points, stamp, 'lidar', F)
    tf_static = cdr(M.make_tf_static(np.linalg.inv(fr.T_cam_lidar), 'lidar', 'camera', stamp, F))
    bag = tmp_path / 'distorted.bag'
    with BagWriter(bag) as wr:
        wr.write('/tf_static', tf_static, stamp)
        wr.write('/camera/camera_info', info, stamp)
        wr.write('/camera/image_raw', img, stamp + 1)
        wr.write('/lidar/points', cloud, stamp + 2)
    with BagSource(bag) as src:
        [(_, bag_frame, _)] = list(src.iter_frames(src.index()))
        T_bag = src.extrinsic('camera', 'lidar')
    T_node = tf2_style_inverse(tf_static.transforms[0])
    assert not np.array_equal(T_node, T_bag)                      # the faces' TF math differs...
    assert np.abs(T_node - T_bag).max() < 1e-14                   # ...by float noise only
    specs = params.fitter_specs()
    _, st = params.validate_parameters({s.name: s.default for s in specs}, specs)
    node_frame, _, _ = inputs.prepare_frame(cdr(img), info, cdr(cloud), None, T_node, st)
    assert not np.array_equal(node_frame.image, M.image_to_numpy(img))          # undistorted
    for name in ('image', 'K', 'points', 'T_cam_lidar'):                        # the same bits
        a, b = getattr(node_frame, name), getattr(bag_frame, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    np.testing.assert_allclose(node_frame.T_cam_lidar, fr.T_cam_lidar, atol=1e-10)
    # refusing distortion: the bag tool stops with one error naming the topic, the node skips the frame
    with pytest.raises(BagError, match='camera_info on /camera/camera_info: distortion model'):
        with BagSource(bag, undistort=False) as src:
            src.index()
    st.undistort = False
    with pytest.raises(inputs.SkipFrame, match='camera_info on /cam/info: distortion model'):
        inputs.prepare_frame(cdr(img), info, cdr(cloud), None, fr.T_cam_lidar, st, info_topic='/cam/info')
