"""KITTI 3D object benchmark I/O: ``image_2``, ``velodyne``, ``calib``, ``label_2``.

Frames: ``calib.T_rect_lidar = R0_rect @ Tr_velo_to_cam`` maps LiDAR points into the *rectified
reference* camera (camera 0) in which KITTI labels live. Image 2 sits beside it, shifted by a
baseline that ``P2 = K [I | t]`` encodes as ``t = K^-1 P2[:, 3]``; so ``calib.T_cam_lidar`` (what a
:class:`SensorFrame` carries and what ``K`` projects from) is ``[I | t] @ T_rect_lidar``.
Label boxes are converted with ``T_rect_lidar`` (exact, :mod:`autolabel_ros.core.geometry`),
projections into the image use ``K`` and ``T_cam_lidar``.

Every format problem raises :class:`KittiFormatError` (a ``ValueError``) naming the file, also for
missing files, so callers need to catch one type.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from autolabel_ros.core.geometry import (kitti_alpha, kitti_box_to_lidar, lidar_box_to_kitti, points_in_box,
                                         project, projected_box2d, transform_points)
from autolabel_ros.core.prompts import DroppedPrompt, PromptList, box_problem, warn_dropped
from autolabel_ros.core.types import Label3D, Prompt, SensorFrame
from autolabel_ros.io.outdir import write_text_atomic


log = logging.getLogger(__name__)


class KittiFormatError(ValueError):
    """A KITTI file is missing or malformed; the message names the file."""


# ----------------------------------------------------------------------------------------------
# calibration

_REQUIRED_CALIB = ('P2', 'R0_rect', 'Tr_velo_to_cam')
# Other KITTI releases (tracking, raw) spell some keys differently.
_CALIB_ALIASES = {'R_rect': 'R0_rect', 'Tr_velo_cam': 'Tr_velo_to_cam', 'Tr_imu_velo': 'Tr_imu_to_velo'}
_CALIB_SHAPES = {'P0': (3, 4), 'P1': (3, 4), 'P2': (3, 4), 'P3': (3, 4), 'R0_rect': (3, 3),
                 'Tr_velo_to_cam': (3, 4), 'Tr_imu_to_velo': (3, 4)}


def _pad4(M: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:M.shape[0], :M.shape[1]] = M
    return out


@dataclass
class KittiCalib:
    """The calibration of one KITTI frame (matrices as in the file)."""

    P2: np.ndarray                         # 3 x 4 projection of the left colour camera (rectified)
    R0_rect: np.ndarray                    # 3 x 3 rectifying rotation
    Tr_velo_to_cam: np.ndarray             # 3 x 4 LiDAR -> reference camera
    P0: Optional[np.ndarray] = None
    P1: Optional[np.ndarray] = None
    P3: Optional[np.ndarray] = None
    Tr_imu_to_velo: Optional[np.ndarray] = None

    def __post_init__(self):
        for key, shape in _CALIB_SHAPES.items():
            val = getattr(self, key)
            if val is not None:
                setattr(self, key, np.asarray(val, dtype=np.float64).reshape(shape))

    @property
    def K(self) -> np.ndarray:
        """3 x 3 intrinsics of image_2."""
        return self.P2[:, :3].copy()

    @property
    def T_rect_lidar(self) -> np.ndarray:
        """4 x 4 LiDAR -> rectified reference camera (the frame of label_2 boxes)."""
        return _pad4(self.R0_rect) @ _pad4(self.Tr_velo_to_cam)

    @property
    def T_cam_lidar(self) -> np.ndarray:
        """4 x 4 LiDAR -> image_2 camera: K @ T_cam_lidar reproduces P2 @ T_rect_lidar."""
        shift = np.eye(4)
        shift[:3, 3] = np.linalg.solve(self.K, self.P2[:, 3])
        return shift @ self.T_rect_lidar


def calib_from_K(K, T_cam_lidar) -> KittiCalib:
    """Calibration for synthetic data: P2 = [K | 0], R0_rect = I, Tr_velo_to_cam = T_cam_lidar."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    T = np.asarray(T_cam_lidar, dtype=np.float64).reshape(4, 4)
    return KittiCalib(P2=np.hstack([K, np.zeros((3, 1))]), R0_rect=np.eye(3), Tr_velo_to_cam=T[:3])


def read_text(path: Path) -> str:
    """The file's text; a binary or otherwise non-UTF-8 file is a KittiFormatError naming it."""
    try:
        return path.read_text()
    except UnicodeDecodeError as e:
        raise KittiFormatError(f'{path}: not a text file (byte {e.start} is not UTF-8)') from None


def read_calib(path) -> KittiCalib:
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f'{path}: calibration file not found')
    values: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(':')
        if not sep:
            raise KittiFormatError(f'{path}:{lineno}: expected "KEY: numbers", got {line[:60]!r}')
        key = _CALIB_ALIASES.get(key.strip(), key.strip())
        try:
            nums = np.array(rest.split(), dtype=np.float64)
        except ValueError:
            raise KittiFormatError(f'{path}:{lineno}: non-numeric value in {key}') from None
        shape = _CALIB_SHAPES.get(key)
        if shape is not None:
            if nums.size != shape[0] * shape[1]:
                raise KittiFormatError(f'{path}:{lineno}: {key} needs {shape[0] * shape[1]} numbers, '
                                       f'got {nums.size}')
            if not np.all(np.isfinite(nums)):
                raise KittiFormatError(f'{path}:{lineno}: {key} has non-finite values (NaN or inf)')
            values[key] = nums.reshape(shape)
    for key in _REQUIRED_CALIB:
        if key not in values:
            raise KittiFormatError(f'{path}: calibration key {key!r} missing')
    check_calib(values, str(path))
    return KittiCalib(**values)


def check_calib(values: dict, where: str) -> None:
    """The matrices the pipeline inverts or projects with must be usable: P2 with a focal length
    and an invertible left 3x3, R0_rect and the rotation of Tr_velo_to_cam invertible."""
    P2 = np.asarray(values['P2'], dtype=np.float64).reshape(3, 4)
    if P2[0, 0] <= 0 or P2[1, 1] <= 0 or abs(np.linalg.det(P2[:, :3])) < 1e-9:
        raise KittiFormatError(f'{where}: P2 is not a camera projection (fx={P2[0, 0]:g}, fy={P2[1, 1]:g}, '
                               f'left 3x3 singular or focal length not positive)')
    for key, M in (('R0_rect', values['R0_rect']), ('Tr_velo_to_cam', values['Tr_velo_to_cam'])):
        R = np.asarray(M, dtype=np.float64)[:3, :3]
        if abs(np.linalg.det(R)) < 1e-6:
            raise KittiFormatError(f'{where}: {key} rotation is singular (det {np.linalg.det(R):.3g})')


def write_calib(path, calib: KittiCalib) -> None:
    """Write all seven KITTI keys; absent optional ones are filled (P0/P1/P3 = P2, Tr_imu_to_velo =
    [I | 0]) so that standard KITTI tools read the file."""
    default = {'P0': calib.P2, 'P1': calib.P2, 'P3': calib.P2, 'Tr_imu_to_velo': np.eye(4)[:3]}
    lines = []
    for key in ('P0', 'P1', 'P2', 'P3', 'R0_rect', 'Tr_velo_to_cam', 'Tr_imu_to_velo'):
        val = getattr(calib, key)
        val = default[key] if val is None else val
        lines.append(f'{key}: ' + ' '.join(f'{v:.12e}' for v in np.asarray(val).ravel()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, '\n'.join(lines) + '\n')


# ----------------------------------------------------------------------------------------------
# labels

@dataclass
class KittiObject:
    """One line of a label_2 file (camera-rect frame; ``location`` is the bottom centre)."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: np.ndarray                       # x1 y1 x2 y2, pixels
    hwl: np.ndarray                        # height, width, length (m)
    location: np.ndarray                   # bottom centre x y z in the rectified camera frame
    ry: float                              # rotation about the camera y axis
    score: Optional[float] = None          # detections only (16th column)

    def __post_init__(self):
        self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(4)
        self.hwl = np.asarray(self.hwl, dtype=np.float64).reshape(3)
        self.location = np.asarray(self.location, dtype=np.float64).reshape(3)
        self.truncated = float(self.truncated)
        self.occluded = int(self.occluded)
        self.alpha = float(self.alpha)
        self.ry = float(self.ry)
        if self.score is not None:
            self.score = float(self.score)

    @property
    def height2d(self) -> float:
        return float(self.bbox[3] - self.bbox[1])


def read_label_file(path) -> list[KittiObject]:
    """Read a label_2 file: 15 columns (ground truth) or 16 (with a trailing score)."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f'{path}: label file not found')
    objs = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) not in (15, 16):
            raise KittiFormatError(f'{path}:{lineno}: expected 15 or 16 columns, got {len(cols)}')
        try:
            v = [float(c) for c in cols[1:]]
        except ValueError:
            raise KittiFormatError(f'{path}:{lineno}: non-numeric column in {line.strip()[:80]!r}') from None
        if not np.all(np.isfinite(v)):
            raise KittiFormatError(f'{path}:{lineno}: NaN or inf in {line.strip()[:80]!r}')
        objs.append(KittiObject(type=cols[0], truncated=v[0], occluded=int(round(v[1])), alpha=v[2],
                                bbox=v[3:7], hwl=v[7:10], location=v[10:13], ry=v[13],
                                score=v[14] if len(v) == 15 else None))
    return objs


def _label_line(o: KittiObject) -> str:
    nums = [f'{o.truncated:.2f}', f'{o.occluded:d}', f'{o.alpha:.6f}']
    nums += [f'{x:.2f}' for x in o.bbox]
    nums += [f'{x:.6f}' for x in np.concatenate([o.hwl, o.location, [o.ry]])]
    if o.score is not None:
        nums.append(f'{o.score:.6f}')
    return ' '.join([o.type] + nums)


def write_label_file(path, objs: Sequence[KittiObject]) -> None:
    """Write label_2 lines; a 16th score column for objects whose score is not None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, ''.join(_label_line(o) + '\n' for o in objs))


def label3d_to_kitti(label: Label3D, calib: KittiCalib, width=None, height=None) -> KittiObject:
    """LiDAR-frame label -> KITTI object with alpha and the projected 2D box (clipped to the image
    when its size is given; (0, 0, 0, 0) when the box lies behind the camera)."""
    hwl, bottom, ry = lidar_box_to_kitti(label.center, label.size, label.yaw, calib.T_rect_lidar)
    box = projected_box2d(calib.K, calib.T_cam_lidar, label.center, label.size, label.yaw, width, height)
    if box is None:
        box = np.zeros(4)
    return KittiObject(type=label.cls, truncated=label.truncation, occluded=label.occlusion,
                       alpha=kitti_alpha(ry, bottom), bbox=box, hwl=hwl, location=bottom, ry=ry,
                       score=None if label.score is None else float(label.score))


def kitti_to_label3d(obj: KittiObject, calib: KittiCalib, id: int = 0) -> Label3D:
    center, size, yaw = kitti_box_to_lidar(obj.hwl, obj.location, obj.ry, calib.T_rect_lidar)
    return Label3D(center=center, size=size, yaw=yaw, cls=obj.type,
                   score=1.0 if obj.score is None else obj.score, id=id, box2d=obj.bbox.copy(),
                   truncation=obj.truncated, occlusion=obj.occluded)


# ----------------------------------------------------------------------------------------------
# sensor data

def read_velodyne(path) -> np.ndarray:
    """N x 4 float32 (x, y, z, reflectance) in the LiDAR frame; points with a non-finite coordinate
    are dropped (as the bag reader does: a driver's marker for "no return", not a point)."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f'{path}: velodyne file not found')
    size = path.stat().st_size
    if size % 16:
        raise KittiFormatError(f'{path}: size {size} bytes is not a multiple of 16 '
                               '(4 float32 per point); truncated or not a KITTI scan')
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    finite = np.isfinite(pts).all(axis=1)
    return pts if finite.all() else pts[finite]


def read_image(path) -> np.ndarray:
    """H x W x 3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f'{path}: image not found')
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert('RGB'), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as e:
        raise KittiFormatError(f'{path}: cannot decode image ({e})') from None


def write_kitti_frame(root, frame_id: str, image, points, calib: KittiCalib, objects=()) -> None:
    """Write one frame in the KITTI object layout under ``root``. ``objects`` may hold
    :class:`KittiObject` or :class:`Label3D` (converted with the image size)."""
    from PIL import Image

    root = Path(root)
    image = np.asarray(image, dtype=np.uint8)
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f'frame {frame_id}: points must be Nx3 or Nx4, got {pts.shape}')
    if pts.shape[1] == 3:   # KITTI scans always carry reflectance
        pts = np.hstack([pts, np.zeros((len(pts), 1), np.float32)])
    for sub in ('image_2', 'velodyne', 'calib', 'label_2'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # compress_level=1: a quarter of the simulator's frame time went into default PNG compression
    Image.fromarray(image).save(root / 'image_2' / f'{frame_id}.png', compress_level=1)
    np.ascontiguousarray(pts).tofile(root / 'velodyne' / f'{frame_id}.bin')
    write_calib(root / 'calib' / f'{frame_id}.txt', calib)
    h, w = image.shape[:2]
    objs = [label3d_to_kitti(o, calib, w, h) if isinstance(o, Label3D) else o for o in objects]
    write_label_file(root / 'label_2' / f'{frame_id}.txt', objs)


# ----------------------------------------------------------------------------------------------
# dataset

class KittiObjectDataset:
    """A KITTI object split (the folder holding image_2/, velodyne/, calib/[, label_2/]).

    A root that only holds ``training/`` is accepted too. ``frame_ids`` are the stems found in
    image_2, velodyne or calib; a frame missing one of its files fails on load with the file named.
    """

    def __init__(self, root):
        root = Path(root)
        if not (root / 'calib').is_dir() and (root / 'training' / 'calib').is_dir():
            root = root / 'training'
        subdirs = [root / s for s in ('image_2', 'velodyne', 'calib')]
        if not any(d.is_dir() for d in subdirs):
            raise KittiFormatError(f'{root}: not a KITTI object split (no image_2/, velodyne/ or calib/)')
        self.root = root
        ids = set()
        for d in subdirs:
            if d.is_dir():
                ids.update(p.stem for p in d.iterdir() if p.suffix in ('.png', '.bin', '.txt'))
        self.frame_ids = sorted(ids)

    def calib(self, fid: str) -> KittiCalib:
        return read_calib(self.root / 'calib' / f'{fid}.txt')

    def labels(self, fid: str) -> list[KittiObject]:
        return read_label_file(self.root / 'label_2' / f'{fid}.txt')

    def load_frame(self, fid: str) -> SensorFrame:
        calib = self.calib(fid)
        image_path = self.root / 'image_2' / f'{fid}.png'
        image = read_image(image_path)
        points = read_velodyne(self.root / 'velodyne' / f'{fid}.bin')     # its errors name the scan
        try:
            return SensorFrame(image=image, K=calib.K, points=points, T_cam_lidar=calib.T_cam_lidar,
                               frame_id=fid)
        except ValueError as e:   # e.g. an image that does not match its calibration
            raise KittiFormatError(f'{image_path}: {e}') from None

    def prompts(self, fid: str, mode: str = 'gt-boxes', classes=('Car',), seed: int = 0) -> PromptList:
        """Prompts from the ground truth; ``Prompt.id`` is the object's line index in label_2. Boxes
        that are inverted or of zero area are in the list's ``dropped`` (core/prompts.py).

        ``gt-boxes``: the 2D box. ``gt-points``: 3 positive clicks on the visible part of the object,
        as a person clicks the car they mean (on a partly hidden car, not on the one in front of it):
        drawn from the object's instance mask when the split has one (``instance_2/``, written by the
        benchmarks' simulator export), else from the image positions of the scan points inside its
        3D box (the LiDAR sits next to the camera, so what it hits on the car the camera sees), else
        from the central half of the 2D box. Seeded by (seed, frame id), independent of the call
        order.
        """
        if mode not in ('gt-boxes', 'gt-points'):
            raise ValueError(f"prompt mode must be 'gt-boxes' or 'gt-points', got {mode!r}")
        rng = np.random.default_rng([seed, zlib.crc32(str(fid).encode())])
        out = PromptList()
        visible = _VisiblePixels(self, fid) if mode == 'gt-points' else None
        for i, o in enumerate(self.labels(fid)):
            if o.type not in classes:
                continue
            x1, y1, x2, y2 = o.bbox
            reason = box_problem(o.bbox)
            if reason is not None:
                out.dropped.append(DroppedPrompt(len(out) + len(out.dropped), i, reason,
                                                 tuple(float(v) for v in o.bbox)))
                continue
            if mode == 'gt-boxes':
                out.append(Prompt(id=i, box=o.bbox.copy(), cls=o.type, sources=('gt',)))
                continue
            cand = _central_half(visible.of(i, o))
            if len(cand) >= 3:
                pts = cand[rng.choice(len(cand), 3, replace=False)].astype(np.float64)
            else:
                cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 4, (y2 - y1) / 4
                pts = np.column_stack([rng.uniform(cx - hw, cx + hw, 3), rng.uniform(cy - hh, cy + hh, 3)])
            out.append(Prompt(id=i, points=pts, point_labels=np.ones(3, np.int64), cls=o.type,
                              sources=('gt',)))
        warn_dropped(log, str(self.root / 'label_2' / f'{fid}.txt'), out.dropped, len(out) + len(out.dropped))
        return out


def _central_half(pix: np.ndarray) -> np.ndarray:
    """The half of the candidate pixels nearest their median: a person clicks well inside the part of
    the car they see, not on its outline (scan points crowd along a car's roof edge)."""
    if len(pix) < 6:
        return pix
    d = np.linalg.norm(pix - np.median(pix, axis=0), axis=1)
    return pix[d <= np.median(d)]


class _VisiblePixels:
    """Where a person would click a ground-truth object of one frame: the (u, v) pixels of its visible
    part (see :meth:`KittiObjectDataset.prompts`), read lazily once per frame."""

    ERODE_PX = 2          # clicks stay off the outline of an instance mask
    GROUND_M = 0.25       # scan points this close to the box bottom are the road under the car
    SHRINK_M = 0.1        # ... and points this close to its sides may belong to a neighbour

    def __init__(self, ds: KittiObjectDataset, fid: str):
        self.ds, self.fid = ds, fid
        self._inst = self._scan = None
        self._loaded = False

    def _load(self):
        self._loaded = True
        path = self.ds.root / 'instance_2' / f'{self.fid}.png'
        if path.is_file():
            from PIL import Image
            with Image.open(path) as im:
                self._inst = np.asarray(im).astype(np.int64)
            return
        try:
            frame = self.ds.load_frame(self.fid)
        except KittiFormatError:
            return
        xyz = frame.xyz.astype(np.float64)
        uv, z = project(frame.K, transform_points(frame.T_cam_lidar, xyz))
        ok = (z > 0.5) & np.all(np.isfinite(uv), axis=1)
        ok &= (uv[:, 0] >= 0) & (uv[:, 0] < frame.width) & (uv[:, 1] >= 0) & (uv[:, 1] < frame.height)
        self._scan = (xyz[ok], uv[ok])

    def of(self, line: int, obj: KittiObject) -> np.ndarray:
        """(K, 2) candidate click pixels of the object on label line ``line`` (0-based); may be empty."""
        if not self._loaded:
            self._load()
        if self._inst is not None:
            import cv2
            m = (self._inst == line + 1).astype(np.uint8)
            k = 2 * self.ERODE_PX + 1
            eroded = cv2.erode(m, np.ones((k, k), np.uint8))
            ys, xs = np.nonzero(eroded if eroded.sum() >= 3 else m)
            return np.column_stack([xs, ys]).astype(np.float64)
        if self._scan is None:
            return np.zeros((0, 2))
        xyz, uv = self._scan
        calib = self.ds.calib(self.fid)
        lab = kitti_to_label3d(obj, calib)
        inside = points_in_box(xyz, lab.center, lab.size, lab.yaw, margin=-self.SHRINK_M)
        inside &= xyz[:, 2] > lab.center[2] - lab.size[2] / 2 + self.GROUND_M
        for j, other in enumerate(self.ds.labels(self.fid)):   # boxes of touching cars overlap
            if j != line and other.type != 'DontCare':
                b = kitti_to_label3d(other, calib)
                inside &= ~points_in_box(xyz, b.center, b.size, b.yaw)
        x1, y1, x2, y2 = obj.bbox
        u, v = uv[inside, 0], uv[inside, 1]
        in_box = (u >= x1) & (u <= x2) & (v >= y1) & (v <= y2)
        return np.column_stack([u[in_box], v[in_box]])
