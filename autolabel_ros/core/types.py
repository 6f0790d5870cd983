"""Plain dataclasses for what flows through the pipeline.

Frame and yaw convention (used everywhere in this package):
- Labels live in the **LiDAR frame**: x forward, y left, z up (right-handed, metres).
- A box is (center x, y, z; size l, w, h; yaw). ``l`` is along the car's heading, ``w`` across,
  ``h`` vertical. ``center`` is the geometric centre of the box (not the bottom).
- ``yaw`` is the rotation about +z, 0 = heading along +x, pi/2 = heading along +y, wrapped to
  [-pi, pi).
- The camera frame is the optical frame of the image: x right, y down, z forward.
  ``SensorFrame.T_cam_lidar`` maps homogeneous LiDAR points into it; ``K`` projects from it.
KITTI's camera-rect convention is converted in :mod:`autolabel_ros.core.geometry`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class SensorFrame:
    """One synchronized camera + LiDAR sample."""

    image: np.ndarray                 # H x W x 3 uint8, RGB
    K: np.ndarray                     # 3 x 3 camera intrinsics
    points: np.ndarray                # N x 3 or N x 4 float32 (x, y, z[, intensity]), LiDAR frame
    T_cam_lidar: np.ndarray           # 4 x 4, LiDAR -> camera optical frame
    stamp_ns: int = 0                 # sensor time stamp, nanoseconds
    frame_id: str = ''                # a name for the sample (KITTI index, bag stamp, ...)
    lidar_frame: str = 'lidar'        # TF frame names, used by the ROS faces
    camera_frame: str = 'camera'

    def __post_init__(self):
        self.image = np.asarray(self.image)
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f'frame {self.frame_id!r}: image must be HxWx3 uint8, '
                             f'got shape {self.image.shape} dtype {self.image.dtype}')
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        pts = np.asarray(self.points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] not in (3, 4):
            raise ValueError(f'frame {self.frame_id!r}: points must be Nx3 or Nx4, got {pts.shape}')
        self.points = pts
        self.T_cam_lidar = np.asarray(self.T_cam_lidar, dtype=np.float64).reshape(4, 4)
        self._check_calibration()

    def _check_calibration(self):
        """Intrinsics that cannot belong to this image give 0 labels without a word: refuse them."""
        K, who = self.K, f'frame {self.frame_id!r}'
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f'{who}: intrinsics K without a positive focal length: {K.tolist()}')
        if not np.all(np.isfinite(self.T_cam_lidar)):
            raise ValueError(f'{who}: LiDAR -> camera transform has non-finite values')
        cx, cy = K[0, 2], K[1, 2]
        if not (0 <= cx <= self.width and 0 <= cy <= self.height):
            raise ValueError(f'{who}: image {self.width}x{self.height} does not match the calibration '
                             f'(principal point ({cx:.1f}, {cy:.1f}) lies outside it): wrong calibration '
                             f'or a resized image')

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @property
    def xyz(self) -> np.ndarray:
        """N x 3 LiDAR points without intensity."""
        return self.points[:, :3]


@dataclass
class Prompt:
    """A 2D prompt for one object: a box, clicked points, or both (image pixels)."""

    id: int = 0
    box: Optional[np.ndarray] = None            # (x1, y1, x2, y2), pixels
    points: Optional[np.ndarray] = None         # K x 2 clicked pixels (x, y)
    point_labels: Optional[np.ndarray] = None   # K, 1 = on the object, 0 = background
    cls: str = 'Car'
    score: float = 1.0
    sources: tuple = ()       # who proposed it: 'detector', 'lidar', 'topic', 'click', 'gt'; () = not said

    def __post_init__(self):
        self.sources = tuple(str(s) for s in (self.sources or ()))
        if self.box is None and self.points is None:
            raise ValueError(f'prompt {self.id}: needs a box or points')
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
            if not np.all(np.isfinite(self.box)) or self.box[2] <= self.box[0] or self.box[3] <= self.box[1]:
                raise ValueError(f'prompt {self.id}: invalid box {self.box.tolist()} (need x1<x2, y1<y2)')
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
            if len(self.points) == 0 or not np.all(np.isfinite(self.points)):
                raise ValueError(f'prompt {self.id}: points must be a non-empty finite Kx2 array')
            if self.point_labels is None:
                self.point_labels = np.ones(len(self.points), dtype=np.int64)
            self.point_labels = np.asarray(self.point_labels, dtype=np.int64).reshape(-1)
            if len(self.point_labels) != len(self.points):
                raise ValueError(f'prompt {self.id}: {len(self.points)} points but '
                                 f'{len(self.point_labels)} point labels')

    def bounding_box(self) -> np.ndarray:
        """The box, or the bounding box of the clicked points when only points were given."""
        if self.box is not None:
            return self.box
        p = self.points[self.point_labels > 0] if np.any(self.point_labels > 0) else self.points
        return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max() + 1, p[:, 1].max() + 1])


@dataclass
class Mesh:
    """A triangle mesh in the LiDAR frame (or the object frame, where stated)."""

    vertices: np.ndarray   # V x 3 float
    faces: np.ndarray      # F x 3 int


@dataclass
class Label3D:
    """A 3D label in the LiDAR frame (see the module docstring for the convention)."""

    center: np.ndarray                 # (x, y, z) geometric centre
    size: np.ndarray                   # (l, w, h)
    yaw: float
    cls: str = 'Car'
    score: float = 1.0                 # confidence in [0, 1]
    id: int = 0                        # the prompt / track id it came from
    latent: Optional[np.ndarray] = None          # shape code of the prior
    mesh: Optional[Mesh] = None                  # fitted shape, LiDAR frame
    box2d: Optional[np.ndarray] = None           # (x1, y1, x2, y2) the prompt box it came from
    accepted: bool = True
    reasons: list[str] = field(default_factory=list)   # why rejected (empty when accepted)
    metrics: dict = field(default_factory=dict)        # e.g. mask_iou, lidar_inlier_ratio, energy
    # KITTI ground-truth extras (only set by readers of labelled data)
    truncation: float = 0.0
    occlusion: int = 0
    sources: tuple = ()                          # the prompt's sources (see Prompt.sources)

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.size = np.asarray(self.size, dtype=np.float64).reshape(3)
        self.yaw = float(wrap_angle(self.yaw))
        self.sources = tuple(str(s) for s in (self.sources or ()))
        if self.box2d is not None:
            self.box2d = np.asarray(self.box2d, dtype=np.float64).reshape(4)

    @property
    def box7(self) -> np.ndarray:
        """(x, y, z, l, w, h, yaw)."""
        return np.concatenate([self.center, self.size, [self.yaw]])



@dataclass
class LabelResult:
    """What :meth:`autolabel_ros.pipeline.Autolabeler.label` returns for one frame."""

    labels: list[Label3D] = field(default_factory=list)   # one per prompt, in prompt order
    masks: list = field(default_factory=list)     # per prompt: H x W bool instance mask used, or None
    timings: dict = field(default_factory=dict)   # seconds: segment_s (embed_s + decode_s of SAM in it),
    #                       prep_s (css_s included), css_s, fit_s, post_s, total_s, cpu_s (process CPU
    #                       seconds of the call), per_instance_s; n = prompts
    diagnostics: dict = field(default_factory=dict)   # per-frame notes (e.g. prompts dropped and why)

def check_rgb_image(image, who: str) -> np.ndarray:
    """The image as an HxWx3 uint8 array, or a ValueError naming ``who`` asked for it."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'{who}: image must be HxWx3 uint8 RGB, got shape {image.shape} '
                         f'dtype {image.dtype}')
    return image


def wrap_angle(a):
    """Wrap angle(s) to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi
