"""One synchronized set of messages -> (SensorFrame, prompts): the fitter node's input step, ROS-free.

The frame itself comes from the shared builder :mod:`autolabel_ros.io.frames` (the bag tool uses the
same one); this adds what only the node has: frame-name overrides, the synchronized detections and
the pending RViz clicks.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

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


def prepare_frame(image_msg, info_msg, cloud_msg, det_msg, T_cam_lidar: np.ndarray, settings: NodeSettings,
                  clicks_cam: Optional[np.ndarray] = None, info_topic: str = 'camera_info'
                  ) -> tuple[SensorFrame, list[Prompt], int]:
    """Messages (rclpy or rosbags) + extrinsic -> (SensorFrame, prompts, clicks outside the image).

    The frame is stamped and named by the cloud (labels live in the LiDAR frame); the image is
    undistorted when the camera_info says so (``undistort``); prompts are the synchronized detections
    followed by the clicked points (already in the camera frame). ``info_topic`` names the
    camera_info in the SkipFrame texts.
    """
    camera = F.camera_from_info(info_msg, rectified=settings.use_rectified_projection,
                                undistort=settings.undistort, where=f'camera_info on {info_topic}')
    stamp_ns = M.header_stamp_ns(cloud_msg)
    lidar_frame, camera_frame = frame_ids(settings, image_msg, cloud_msg)
    frame = F.sensor_frame(image_msg, cloud_msg, camera, T_cam_lidar, stamp_ns=stamp_ns,
                           frame_id=str(stamp_ns), lidar_frame=lidar_frame, camera_frame=camera_frame,
                           info_where=f'camera_info on {info_topic}')
    prompts = M.detection2d_array_to_prompts(det_msg) if det_msg is not None else []
    outside = 0
    if clicks_cam is not None and len(clicks_cam):
        used = {p.id for p in prompts}
        first = max([CLICK_ID_BASE] + [i + 1 for i in used if i >= CLICK_ID_BASE])
        extra, outside = clicks_to_prompts(clicks_cam, frame.K, frame.width, frame.height, first_id=first)
        prompts += extra
    return frame, prompts, outside
