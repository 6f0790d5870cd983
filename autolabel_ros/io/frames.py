"""Sensor messages -> :class:`SensorFrame`: the one builder of the fitter node and the bag tool.

Both faces hand over an image message (Image or CompressedImage), a PointCloud2, the camera model
derived from a CameraInfo (or a calib file) and the LiDAR -> camera extrinsic; the stamp and name of
the frame are the caller's choice (the node stamps by the cloud, the bag tool by the image). Messages
may come from rclpy or rosbags: only field access is used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from autolabel_ros.core.types import SensorFrame
from autolabel_ros.io import messages as M


class FrameError(ValueError):
    """A set of messages cannot become a frame (size mismatch, undecodable data); the text says why."""


@dataclass(frozen=True)
class CameraModel:
    """The pinhole camera of the images handed to the pipeline.

    ``K`` projects camera-frame points into those images; ``width``/``height`` (None when unknown,
    e.g. from a calib file) must match every image.
    """

    K: np.ndarray
    width: Optional[int] = None
    height: Optional[int] = None

    def check_size(self, image: np.ndarray, where: str = 'camera_info'):
        if self.width and self.height and (self.width, self.height) != (image.shape[1], image.shape[0]):
            raise FrameError(f'{where} is {self.width}x{self.height} but the image is '
                             f'{image.shape[1]}x{image.shape[0]}')


def camera_from_info(info_msg, rectified: bool = False) -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel. ``rectified``: the images are rectified (image_rect),
    so P's left 3x3 is their projection; otherwise K."""
    K, w, h = M.camera_info_to_intrinsics(info_msg, use_projection=rectified)
    return CameraModel(K=K, width=w if w > 0 else None, height=h if h > 0 else None)


def camera_from_matrix(K) -> CameraModel:
    """A camera known only by its 3x3 intrinsics (a KITTI calib file): no size check."""
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


def sensor_frame(image_msg, cloud_msg, camera: CameraModel, T_cam_lidar: np.ndarray, *, stamp_ns: int,
                 frame_id: str, lidar_frame: str, camera_frame: str,
                 info_where: str = 'camera_info') -> SensorFrame:
    """One synchronized image + cloud -> SensorFrame (points N x 4 with intensity, LiDAR frame).

    Raises FrameError when the camera model's size does not match the image (``info_where`` names
    the camera_info source in that message).
    """
    image = decode_image(image_msg)
    camera.check_size(image, info_where)
    points = M.pointcloud2_to_numpy(cloud_msg, with_intensity=True)
    return SensorFrame(image=image, K=camera.K, points=points, T_cam_lidar=np.asarray(T_cam_lidar),
                       stamp_ns=int(stamp_ns), frame_id=str(frame_id), lidar_frame=lidar_frame,
                       camera_frame=camera_frame)
