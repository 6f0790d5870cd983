"""One synchronized set of messages -> (SensorFrame, prompts): the fitter node's input step, ROS-free.

The frame itself comes from the shared builder :mod:`autolabel_ros.io.frames` (the bag tool uses the
same one); this adds what only the node has: frame-name overrides, the synchronized detections and
the pending RViz clicks.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from autolabel_ros.core.prompts import PromptList
from autolabel_ros.core.types import Prompt, SensorFrame
from autolabel_ros.io import frames as F
from autolabel_ros.io import messages as M
from autolabel_ros.nodes.clicks import CLICK_ID_BASE, clicks_to_prompts
from autolabel_ros.nodes.params import NodeSettings

# This synchronized set cannot be processed; the text says why (logged, throttled).
SkipFrame = F.FrameError


def frame_ids(settings: NodeSettings, image_msg, cloud_msg) -> tuple[str, str]:
    """(LiDAR frame, camera frame) of a synchronized set: the overrides, else the headers' frame ids."""
    return (F.tf_frame_id(settings.lidar_frame or cloud_msg.header.frame_id),
            F.tf_frame_id(settings.camera_frame or image_msg.header.frame_id))


# what a MessageError's text starts with -> the input it came from (io/messages.py names the type)
_MESSAGE_INPUT = (('sensor_msgs/PointCloud2', 'points'), ('sensor_msgs/CameraInfo', 'camera_info'),
                  ('sensor_msgs/Image', 'image'), ('sensor_msgs/CompressedImage', 'image'),
                  ('vision_msgs/', 'detections'))


def _input_of(error: M.MessageError) -> str:
    text = str(error)
    return next((name for prefix, name in _MESSAGE_INPUT if text.startswith(prefix)), 'image')


def prepare_frame(image_msg, info_msg, cloud_msg, det_msg, T_cam_lidar: np.ndarray, settings: NodeSettings,
                  clicks_cam: Optional[np.ndarray] = None, info_topic: str = 'camera_info',
                  topics: Optional[dict] = None) -> tuple[SensorFrame, list[Prompt], int]:
    """Messages (rclpy or rosbags) + extrinsic -> (SensorFrame, prompts, clicks outside the image).

    The frame is stamped and named by the cloud (labels live in the LiDAR frame); the image is
    undistorted when the camera_info says so (``undistort``); prompts are the synchronized detections
    followed by the clicked points (already in the camera frame); the detections no model can use
    are in the prompt list's ``dropped`` (core/prompts.py). A message that cannot be read (an
    unsupported image encoding, a cloud without x/y/z, a camera_info without focal length) is a
    SkipFrame naming its input: ``topics`` maps 'image', 'camera_info', 'points' and 'detections' to
    the topic names to show (default: those names; ``info_topic`` for the camera_info).
    """
    names = {'image': 'image', 'camera_info': info_topic, 'points': 'points', 'detections': 'detections'}
    names.update(topics or {})
    try:
        return _prepare(image_msg, info_msg, cloud_msg, det_msg, T_cam_lidar, settings, clicks_cam, names)
    except M.MessageError as e:
        raise SkipFrame(f'{_input_of(e)} on {names[_input_of(e)]}: {e}') from None


def _prepare(image_msg, info_msg, cloud_msg, det_msg, T_cam_lidar, settings, clicks_cam, names):
    info_where = f'camera_info on {names["camera_info"]}'
    camera = F.camera_from_info(info_msg, rectified=settings.use_rectified_projection,
                                undistort=settings.undistort, where=info_where)
    stamp_ns = M.header_stamp_ns(cloud_msg)
    lidar_frame, camera_frame = frame_ids(settings, image_msg, cloud_msg)
    frame = F.sensor_frame(image_msg, cloud_msg, camera, T_cam_lidar, stamp_ns=stamp_ns,
                           frame_id=str(stamp_ns), lidar_frame=lidar_frame, camera_frame=camera_frame,
                           info_where=info_where)
    prompts = M.detection2d_array_to_prompts(det_msg) if det_msg is not None else PromptList()
    outside = 0
    if clicks_cam is not None and len(clicks_cam):
        used = {p.id for p in prompts}
        first = max([CLICK_ID_BASE] + [i + 1 for i in used if i >= CLICK_ID_BASE])
        extra, outside = clicks_to_prompts(clicks_cam, frame.K, frame.width, frame.height, first_id=first)
        prompts += extra
    return frame, prompts, outside


def missing_transform_text(lidar_frame: str, camera_frame: str, timeout: float) -> str:
    """The start of the fitter's "no TF" warnings; an empty frame id (a driver that leaves
    header.frame_id empty) says which parameter names it."""
    def name(frame_id: str, param: str, what: str) -> str:
        return frame_id if frame_id else f"'' (the {what} header has no frame_id: set {param})"

    return (f'no TF {name(lidar_frame, "lidar_frame", "cloud")} -> '
            f'{name(camera_frame, "camera_frame", "image")} at the cloud stamp (waited {timeout} s)')
