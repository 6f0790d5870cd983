"""Sensor messages -> :class:`SensorFrame`: the one builder of the fitter node and the bag tool.

Both faces hand over an image message (Image or CompressedImage), a PointCloud2, the camera model
derived from a CameraInfo (or a calib file) and the LiDAR -> camera extrinsic; the stamp and name of
the frame are the caller's choice (the node stamps by the cloud, the bag tool by the image). Messages
may come from rclpy or rosbags: only field access is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import numpy as np

from autolabel_ros.core.types import SensorFrame
from autolabel_ros.io import messages as M


class FrameError(ValueError):
    """A set of messages cannot become a frame (size mismatch, undecodable data); the text says why."""


# CameraInfo.distortion_model values OpenCV can undo (sensor_msgs/distortion_models.hpp).
PINHOLE_MODELS = ('plumb_bob', 'rational_polynomial')
FISHEYE_MODELS = ('equidistant',)


@dataclass(frozen=True, eq=False)
class CameraModel:
    """The pinhole camera of the images handed to the pipeline.

    ``K`` projects camera-frame points into those images; ``width``/``height`` (None when unknown,
    e.g. from a calib file) must match every incoming image. A non-empty ``D`` is the distortion of
    the incoming images (``model``: a CameraInfo distortion_model): :meth:`prepare` removes it, so
    the pipeline gets an ideal pinhole image with intrinsics ``K`` and LiDAR points project onto the
    pixels they hit.
    """

    K: np.ndarray
    width: Optional[int] = None
    height: Optional[int] = None
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model: str = ''

    @property
    def distorted(self) -> bool:
        return bool(np.any(np.asarray(self.D) != 0))

    def check_size(self, image: np.ndarray, where: str = 'camera_info'):
        if self.width and self.height and (self.width, self.height) != (image.shape[1], image.shape[0]):
            raise FrameError(f'{where} is {self.width}x{self.height} but the image is '
                             f'{image.shape[1]}x{image.shape[0]}')

    def prepare(self, image: np.ndarray, where: str = 'camera_info') -> np.ndarray:
        """The incoming image as the pipeline needs it: size checked, distortion removed."""
        self.check_size(image, where)
        if not self.distorted:
            return image
        import cv2

        h, w = image.shape[:2]
        mx, my = _undistort_maps(self.K.tobytes(), np.asarray(self.D, np.float64).tobytes(), self.model, w, h)
        return cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@lru_cache(maxsize=4)
def _undistort_maps(K_bytes: bytes, D_bytes: bytes, model: str, w: int, h: int):
    """OpenCV remap tables from the distorted image to the pinhole image with the same K (computed once
    per camera: a camera_info arrives with every frame but rarely changes)."""
    import cv2

    K = np.frombuffer(K_bytes, np.float64).reshape(3, 3)
    D = np.frombuffer(D_bytes, np.float64)
    if model in FISHEYE_MODELS:
        return cv2.fisheye.initUndistortRectifyMap(K, D[:4], np.eye(3), K, (w, h), cv2.CV_16SC2)
    return cv2.initUndistortRectifyMap(K, D, None, K, (w, h), cv2.CV_16SC2)


def camera_from_info(info_msg, rectified: bool = False, undistort: bool = True,
                     where: str = 'camera_info') -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel.

    ``rectified``: the images are rectified (image_rect), so P's left 3x3 is their projection and
    ``d`` is ignored. Otherwise K, and a non-zero ``d`` (an image_raw topic) is removed from each
    image when ``undistort`` is true, or refused with a FrameError naming ``where`` when it is false
    (or the distortion model is one OpenCV cannot undo).
    """
    K, w, h = M.camera_info_to_intrinsics(info_msg, use_projection=rectified)
    size = dict(width=w if w > 0 else None, height=h if h > 0 else None)
    raw = getattr(info_msg, 'd', None)
    D = np.asarray(getattr(info_msg, 'D', ()) if raw is None else raw, dtype=np.float64).reshape(-1)
    if rectified or not np.any(D != 0):
        return CameraModel(K=K, **size)
    model = str(getattr(info_msg, 'distortion_model', '') or '')
    if not np.all(np.isfinite(D)):
        raise FrameError(f'{where}: non-finite distortion coefficients d = {D.tolist()}')
    if not undistort:
        raise FrameError(f'{where}: distortion model {model!r} with non-zero d = {np.round(D, 5).tolist()}, '
                         f'but undistortion is off: label rectified images (image_rect, with '
                         f'use_rectified_projection / --rectified) or turn undistortion on')
    known = PINHOLE_MODELS + FISHEYE_MODELS
    if model not in known or (model in FISHEYE_MODELS and len(D) < 4) \
            or (model in PINHOLE_MODELS and len(D) not in (4, 5, 8, 12, 14)):
        raise FrameError(f'{where}: cannot undistort distortion model {model!r} with {len(D)} '
                         f'coefficients (known: {", ".join(known)}); label rectified images instead')
    return CameraModel(K=K, D=D, model=model, **size)


def camera_from_matrix(K) -> CameraModel:
    """A camera known only by its 3x3 intrinsics (a KITTI calib file): no size check, no distortion."""
    return CameraModel(K=np.asarray(K, dtype=np.float64).reshape(3, 3).copy())


def decode_image(image_msg) -> np.ndarray:
    """Image or CompressedImage (told apart by their fields) -> H x W x 3 uint8 RGB."""
    if hasattr(image_msg, 'encoding'):
        return M.image_to_numpy(image_msg)
    return M.compressed_image_to_numpy(image_msg)


def tf_frame_id(name) -> str:
    """A frame id as tf2 accepts it: ROS 2 tf2 rejects lookups of ids with a leading '/' (ROS 1 style,
    e.g. bags converted from ROS 1) and stores such transforms without the slash."""
    return str(name or '').strip().lstrip('/')


# Decimals the extrinsic keeps (1e-10 m / rad): far below any calibration, far above float noise.
EXTRINSIC_DECIMALS = 10


def canonical_extrinsic(T) -> np.ndarray:
    """The LiDAR -> camera extrinsic on a fixed grid, so that the faces hand the pipeline the same bits.

    The node gets it from tf2, which inverts and chains transforms as quaternions; the bag tool chains
    4x4 matrices (io/bags.TfTree). On the same /tf_static the two differ by float noise (up to 4e-16 on
    the simulator bag), and a fit is a long chain of float operations whose heading choice can be a near
    tie: rounded to 1e-10 the two agree bit for bit (unless a value lies within 1e-16 of a rounding
    boundary: about one camera in 10^5)."""
    T = np.round(np.asarray(T, dtype=np.float64), EXTRINSIC_DECIMALS)
    return T + 0.0      # -0.0 -> 0.0: the same bytes too


def sensor_frame(image_msg, cloud_msg, camera: CameraModel, T_cam_lidar: np.ndarray, *, stamp_ns: int,
                 frame_id: str, lidar_frame: str, camera_frame: str,
                 info_where: str = 'camera_info') -> SensorFrame:
    """One synchronized image + cloud -> SensorFrame (points N x 4 with intensity, LiDAR frame; the
    image undistorted when the camera model has distortion).

    Raises FrameError when the camera model's size does not match the image (``info_where`` names
    the camera_info source in that message). The extrinsic is snapped to :func:`canonical_extrinsic`'s
    grid: the node's tf2 lookup and the bag tool's TF tree give the same frame.
    """
    image = camera.prepare(decode_image(image_msg), info_where)
    points = M.pointcloud2_to_numpy(cloud_msg, with_intensity=True)
    return SensorFrame(image=image, K=camera.K, points=points, T_cam_lidar=canonical_extrinsic(T_cam_lidar),
                       stamp_ns=int(stamp_ns), frame_id=str(frame_id), lidar_frame=lidar_frame,
                       camera_frame=camera_frame)
