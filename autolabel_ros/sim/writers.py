"""Write simulated frames as a KITTI object folder and as a rosbag2 (MCAP or sqlite3, version 8).

KITTI folder: the object layout (image_2, velodyne, calib, label_2), plus with ``oxts=True`` the
ego pose as KITTI-raw-style OXTS packets ``oxts/data/<frame>.txt`` (:mod:`autolabel_ros.io.oxts`; the
IMU is the LiDAR: calib's ``Tr_imu_to_velo`` is the identity; the world origin lies at
``SIM_LATLON``) and with ``tracking=True`` the ground truth as KITTI tracking labels
``label_02/0000.txt`` (track id = the simulator's car id, the same in every frame of the drive).

Bag topics (frame ids 'camera' / 'lidar' as in :class:`SensorFrame`):
``/camera/image_raw`` (sensor_msgs/Image rgb8), ``/camera/camera_info``, ``/lidar/points``
(sensor_msgs/PointCloud2: x, y, z, intensity float32 + ring uint16), ``/tf_static`` (lidar -> camera
and base_link -> lidar, transient-local QoS like a static broadcaster), ``/tf`` (the ego pose
odom -> base_link at every frame stamp; odom = base_link at the first frame; base_link lies
``BASE_TO_LIDAR`` m under the LiDAR), and
``/ground_truth/detections`` (vision_msgs/Detection3DArray of the ground-truth boxes in the LiDAR
frame, ``id`` = instance id), ``/ground_truth/detections_2d`` (vision_msgs/Detection2DArray of their
2D boxes in the camera frame, same ids: prompts for the bag tool). Messages are built by
:mod:`autolabel_ros.io.messages` and logged at their header stamps.
"""
from __future__ import annotations


import numpy as np

from autolabel_ros.core.geometry import invert_transform
from autolabel_ros.core.types import Prompt
from autolabel_ros.io.kitti import _label_line, label3d_to_kitti, write_kitti_frame
from autolabel_ros.sim.drive import SimFrame

SIM_LATLON = (49.011, 8.4165)       # where the simulated drives start (Karlsruhe, as KITTI's drives)
BASE_TO_LIDAR = 1.73                # base_link on the road under the LiDAR
ODOM_FRAME, BASE_FRAME = 'odom', 'base_link'


def T_base_lidar() -> np.ndarray:
    T = np.eye(4)
    T[2, 3] = BASE_TO_LIDAR
    return T


def T_odom_base(sf: SimFrame) -> np.ndarray:
    """The ego's base_link pose in odom (odom = base_link at frame 0; world = LiDAR at frame 0)."""
    Tbl = T_base_lidar()
    return Tbl @ sf.T_world_lidar @ invert_transform(Tbl)

TOPICS = {
    'image': ('/camera/image_raw', 'sensor_msgs/msg/Image'),
    'info': ('/camera/camera_info', 'sensor_msgs/msg/CameraInfo'),
    'points': ('/lidar/points', 'sensor_msgs/msg/PointCloud2'),
    'tf': ('/tf_static', 'tf2_msgs/msg/TFMessage'),
    'tf_dyn': ('/tf', 'tf2_msgs/msg/TFMessage'),
    'gt': ('/ground_truth/detections', 'vision_msgs/msg/Detection3DArray'),
    'gt2d': ('/ground_truth/detections_2d', 'vision_msgs/msg/Detection2DArray'),
}


def kitti_objects(sf: SimFrame):
    """KittiObjects of a frame's ground truth; the 2D box is the amodal silhouette box of the
    simulator (KITTI's convention), not the projected 3D box."""
    W, H = sf.frame.width, sf.frame.height
    out = []
    for lab in sf.gt:
        obj = label3d_to_kitti(lab, sf.calib, W, H)
        obj.bbox = np.asarray(lab.box2d, dtype=np.float64).copy()
        obj.score = None            # ground truth: 15 columns
        out.append(obj)
    return out


def write_kitti(root, sf: SimFrame, oxts: bool = False) -> None:
    """One frame into ``root`` (the split folder holding image_2/, velodyne/, calib/, label_2/), with
    ``oxts`` also its OXTS packet."""
    write_kitti_frame(root, sf.frame.frame_id, sf.frame.image, sf.frame.points, sf.calib, kitti_objects(sf))
    if oxts:
        from pathlib import Path

        from autolabel_ros.io.oxts import pose_to_oxts, write_oxts

        write_oxts(Path(root) / 'oxts' / 'data' / f'{sf.frame.frame_id}.txt',
                   pose_to_oxts(sf.T_world_lidar, *SIM_LATLON, velocity=sf.ego_velocity))


def tracking_gt_lines(sf: SimFrame) -> list[str]:
    """KITTI tracking lines of a frame's ground truth (frame = ``sf.index``, track id = car id)."""
    out = []
    for lab, obj in zip(sf.gt, kitti_objects(sf)):
        out.append(f'{sf.index} {lab.id} ' + _label_line(obj))
    return out


class BagWriter:
    """rosbag2 writer for simulated frames (the package's :class:`autolabel_ros.io.label_bag.BagWriter`:
    written aside and renamed into place when complete); use as a context manager. ``storage``:
    'mcap' or 'sqlite3'. ``path`` must not exist yet."""

    def __init__(self, path, storage: str = 'mcap'):
        from autolabel_ros.io.label_bag import BagWriter as _Writer
        from autolabel_ros.io.messages import rosbags_factory

        self._bag = _Writer(path, storage, replace=False)
        self.path = self._bag.path
        self.typestore = self._bag.ts
        self.factory = rosbags_factory(self.typestore)
        self._tf_done = False

    def __enter__(self):
        self._bag.__enter__()
        for topic, msgtype in TOPICS.values():
            self._bag.connect(topic, msgtype)
        return self

    def __exit__(self, *exc):
        return self._bag.__exit__(*exc)

    def _put(self, key: str, msg, stamp: int):
        topic, msgtype = TOPICS[key]
        self._bag.write(topic, msg, int(stamp), msgtype)
    def write(self, sf: SimFrame) -> None:
        from autolabel_ros.io import messages as M

        f, fac = sf.frame, self.factory
        st = int(f.stamp_ns)
        if not self._tf_done:   # the static tree: base_link -> lidar -> camera
            static = [(invert_transform(f.T_cam_lidar), f.lidar_frame, f.camera_frame),
                      (T_base_lidar(), BASE_FRAME, f.lidar_frame)]
            self._put('tf', M.make_tf_message(static, st, fac), st)
            self._tf_done = True
        self._put('tf_dyn', M.make_tf_message([(T_odom_base(sf), ODOM_FRAME, BASE_FRAME)], st, fac), st)
        self._put('info', M.make_camera_info(f.K, f.width, f.height, st, f.camera_frame, fac), st)
        self._put('image', M.make_image(f.image, st, f.camera_frame, fac), st)
        self._put('points', M.make_pointcloud2(f.points, st, f.lidar_frame, fac, ring=sf.ring), st)
        self._put('gt', M.labels_to_detection3d_array(sf.gt, st, f.lidar_frame, fac), st)
        # the ground-truth 2D boxes stand in for a person's box prompts (autolabel-bag --prompts topic:)
        boxes = [Prompt(id=lab.id, box=lab.box2d, cls=lab.cls) for lab in sf.gt
                 if lab.box2d is not None and lab.box2d[2] > lab.box2d[0] and lab.box2d[3] > lab.box2d[1]]
        self._put('gt2d', M.prompts_to_detection2d_array(boxes, st, f.camera_frame, fac), st)
