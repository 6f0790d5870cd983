"""ROS message <-> numpy / core types, shared by the ROS nodes and the offline bag tool.

No ROS import here. Readers are duck-typed on the message fields, so one function serves rclpy
messages (``array.array`` / ``bytes`` for ``uint8[]``) and rosbags messages (numpy arrays).
Builders take a :class:`MessageFactory`, which knows the message classes of one flavour and how that
flavour stores arrays: :func:`rosbags_factory` here, ``autolabel_ros.nodes.common.rclpy_factory``
in the nodes. Every builder casts numbers to plain Python ``int`` / ``float`` because rclpy's
generated setters reject numpy scalars.
"""
from __future__ import annotations

import array
import io
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from autolabel_ros.core.geometry import BOX_EDGES, box_corners
from autolabel_ros.core.prompts import DroppedPrompt, PromptList, box_problem
from autolabel_ros.core.types import Label3D, Prompt


class MessageError(ValueError):
    """A message cannot be converted; the text names the message type, field and value."""


# --------------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------------

# ROS 2 field defaults that differ from zero (rosbags classes have no defaults at all).
_NONZERO_DEFAULTS = {'geometry_msgs/msg/Quaternion': {'w': 1.0}}

_ARRAY_CODES = {'uint8': 'B', 'int8': 'b', 'uint16': 'H', 'int16': 'h', 'uint32': 'I', 'int32': 'i',
                'uint64': 'Q', 'int64': 'q', 'float32': 'f', 'float64': 'd'}


class MessageFactory:
    """Makes messages of one flavour.

    ``factory(typename)`` returns the class for e.g. ``'sensor_msgs/msg/Image'``;
    ``factory.new(typename, **fields)`` builds one, filling unset fields with ROS defaults.
    ``flavour`` is ``'rosbags'`` or ``'rclpy'``: rosbags stores primitive sequences as numpy arrays,
    rclpy as ``array.array`` (its setters reject numpy for unbounded sequences).
    """

    def __init__(self, resolve: Callable[[str], type], flavour: str,
                 defaults: Optional[Callable[[str], dict]] = None):
        if flavour not in ('rosbags', 'rclpy'):
            raise ValueError(f'unknown message flavour {flavour!r} (expected rosbags or rclpy)')
        self._resolve = resolve
        self._defaults = defaults
        self._cache: dict[str, type] = {}
        self.flavour = flavour

    def __call__(self, typename: str) -> type:
        cls = self._cache.get(typename)
        if cls is None:
            try:
                cls = self._resolve(typename)
            except (KeyError, ImportError, AttributeError) as e:
                raise MessageError(f'message type {typename!r} is not available ({flavour_hint(self)}): '
                                   f'{e}') from None
            self._cache[typename] = cls
        return cls

    def new(self, typename: str, **fields):
        cls = self(typename)
        if self._defaults is not None:
            fields = {**self._defaults(typename), **fields}
        return cls(**fields)

    def uint8_seq(self, data) -> object:
        """A ``uint8[]`` field value from bytes / numpy."""
        buf = np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1)) \
            if not isinstance(data, (bytes, bytearray, memoryview)) else np.frombuffer(data, np.uint8)
        if self.flavour == 'rosbags':
            return buf.copy()
        out = array.array('B')
        out.frombytes(buf.tobytes())
        return out

    def float64_seq(self, values: Iterable[float]) -> object:
        """A ``float64[]`` (unbounded) field value."""
        vals = np.asarray(list(values), dtype=np.float64).reshape(-1)
        if self.flavour == 'rosbags':
            return vals
        return array.array('d', vals.tolist())

    @staticmethod
    def float64_fixed(values: Iterable[float], n: int) -> np.ndarray:
        """A ``float64[n]`` field value (both flavours take numpy for fixed-size arrays)."""
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if vals.size != n:
            raise MessageError(f'expected {n} values for a float64[{n}] field, got {vals.size}')
        return vals.copy()


def flavour_hint(factory: MessageFactory) -> str:
    if factory.flavour == 'rclpy':
        return 'is the ROS package installed and the workspace sourced?'
    return 'is it registered in the rosbags typestore?'


def _rosbags_default_fields(typestore, typename: str) -> dict:
    """Every field of ``typename`` at its ROS 2 default, as rosbags values."""
    from rosbags.interfaces import Nodetype

    def base_default(tname: str):
        if tname == 'string':
            return ''
        if tname == 'bool':
            return False
        if tname.startswith('float'):
            return 0.0
        return 0

    def base_dtype(tname: str):
        return {'bool': np.bool_, 'byte': np.uint8, 'char': np.uint8}.get(tname, tname)

    def value(desc):
        kind, rest = desc
        if kind == Nodetype.BASE:
            return base_default(rest[0])
        if kind == Nodetype.NAME:
            return typestore.types[rest](**fields_of(rest))
        sub, length = rest
        if sub[0] == Nodetype.BASE and sub[1][0] != 'string':
            return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=base_dtype(sub[1][0]))
        if kind == Nodetype.ARRAY:
            return [value(sub) for _ in range(length)]
        return []

    def fields_of(name: str) -> dict:
        out = {fname: value(desc) for fname, desc in typestore.fielddefs[name][1]}
        out.update(_NONZERO_DEFAULTS.get(name, {}))
        return out

    return fields_of(typename)


def rosbags_factory(typestore=None) -> MessageFactory:
    """Factory over a rosbags typestore (default: :func:`autolabel_ros.io.ros_types.get_typestore`)."""
    if typestore is None:
        from autolabel_ros.io.ros_types import get_typestore
        typestore = get_typestore()
    return MessageFactory(lambda t: typestore.types[t], 'rosbags',
                          defaults=lambda t: _rosbags_default_fields(typestore, t))


def class_factory(resolve: Callable[[str], type]) -> MessageFactory:
    """Factory over classes that have ROS defaults (rclpy): ``resolve('pkg/msg/Name') -> class``."""
    return MessageFactory(resolve, 'rclpy')


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header_stamp_ns(msg) -> int:
    return stamp_to_ns(msg.header.stamp)


def make_time(stamp_ns: int, factory: MessageFactory):
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise MessageError(f'negative time stamp {stamp_ns} ns')
    return factory.new('builtin_interfaces/msg/Time', sec=stamp_ns // 1_000_000_000,
                       nanosec=stamp_ns % 1_000_000_000)


def make_header(stamp_ns: int, frame_id: str, factory: MessageFactory):
    return factory.new('std_msgs/msg/Header', stamp=make_time(stamp_ns, factory), frame_id=str(frame_id))


def _raw_bytes(data) -> np.ndarray:
    """uint8[] field (numpy, array.array, bytes, list) -> flat uint8 numpy view."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def _rows(buf: np.ndarray, height: int, row_step: int, row_bytes: int, what: str) -> np.ndarray:
    """(height, row_bytes) uint8 from a buffer of rows of ``row_step`` bytes (padding dropped)."""
    if row_step < row_bytes:
        raise MessageError(f'{what}: step/row_step {row_step} is smaller than one row ({row_bytes} bytes)')
    need = row_step * (height - 1) + row_bytes if height > 0 else 0
    if buf.size < need:
        raise MessageError(f'{what}: data has {buf.size} bytes, expected at least {need} '
                           f'({height} rows of step {row_step})')
    if buf.size < row_step * height:    # last row stored without its padding
        buf = np.concatenate([buf, np.zeros(row_step * height - buf.size, np.uint8)])
    return buf[:row_step * height].reshape(height, row_step)[:, :row_bytes]


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------

# encoding -> (dtype, channels, channel order)
_IMAGE_ENCODINGS = {
    'rgb8': (np.uint8, 3, 'rgb'), 'bgr8': (np.uint8, 3, 'bgr'), '8uc3': (np.uint8, 3, 'bgr'),
    'rgba8': (np.uint8, 4, 'rgba'), 'bgra8': (np.uint8, 4, 'bgra'), '8uc4': (np.uint8, 4, 'bgra'),
    'mono8': (np.uint8, 1, 'mono'), '8uc1': (np.uint8, 1, 'mono'),
    'mono16': (np.uint16, 1, 'mono'),
}
# single-channel 16-bit and float encodings are what depth cameras publish: labelling one as a grey
# image gives confident nonsense, so it is refused (mono16 is the grey camera encoding)
_DEPTH_ENCODINGS = ('16uc1', '32fc1')
SUPPORTED_IMAGE_ENCODINGS = tuple(sorted(_IMAGE_ENCODINGS))


def image_to_numpy(msg) -> np.ndarray:
    """sensor_msgs/Image -> H x W x 3 uint8 RGB (what the pipeline takes).

    Honours ``step`` (row padding) and ``is_bigendian``. Colour orders are reordered to RGB, alpha is
    dropped, mono is replicated to 3 channels; 16-bit mono is scaled by the image maximum when it
    exceeds 255 (10/12/16-bit sensors all map to the full 8-bit range).
    """
    enc = str(msg.encoding).strip().lower()
    if enc in _DEPTH_ENCODINGS:
        raise MessageError(f'sensor_msgs/Image: encoding {msg.encoding!r} is a depth image, not a camera '
                           f"image; choose the camera's image topic (autolabel-bag --image-topic, the "
                           f"nodes' image remap)")
    if enc not in _IMAGE_ENCODINGS:
        raise MessageError(f'sensor_msgs/Image: unsupported encoding {msg.encoding!r}; '
                           f'supported: {", ".join(SUPPORTED_IMAGE_ENCODINGS)}')
    dtype, ch, order = _IMAGE_ENCODINGS[enc]
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise MessageError(f'sensor_msgs/Image: empty image ({w} x {h})')
    itemsize = np.dtype(dtype).itemsize
    step = int(msg.step) or w * ch * itemsize
    rows = _rows(_raw_bytes(msg.data), h, step, w * ch * itemsize, f'sensor_msgs/Image ({enc})')
    dt = np.dtype(dtype).newbyteorder('>' if int(msg.is_bigendian) else '<')
    img = np.ascontiguousarray(rows).view(dt).reshape(h, w, ch)
    if itemsize > 1:
        v = img.astype(np.float32)
        peak = float(v.max()) if v.size else 0.0
        img = np.clip(np.round(v * (255.0 / peak)) if peak > 255 else v, 0, 255).astype(np.uint8)
    if order == 'mono':
        return np.repeat(img, 3, axis=2)
    if order.startswith('bgr'):
        img = img[:, :, [2, 1, 0]]
    return np.ascontiguousarray(img[:, :, :3])


def compressed_image_to_numpy(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> H x W x 3 uint8 RGB, decoded with Pillow."""
    from PIL import Image, UnidentifiedImageError

    buf = _raw_bytes(msg.data).tobytes()
    try:
        with Image.open(io.BytesIO(buf)) as im:
            return np.asarray(im.convert('RGB'), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as e:
        # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" says only that
        why = 'not an image format Pillow reads' if isinstance(e, UnidentifiedImageError) else str(e)
        raise MessageError(f'sensor_msgs/CompressedImage: cannot decode format {msg.format!r} '
                           f'({len(buf)} bytes): {why}') from None


def camera_info_to_intrinsics(msg, use_projection: bool = False) -> tuple[np.ndarray, int, int]:
    """sensor_msgs/CameraInfo -> (K 3x3 float64, width, height).

    ``k`` (ROS 2) or ``K`` (ROS 1 style) is used; ``use_projection`` takes P's left 3x3 instead,
    which is the right matrix for rectified images (``image_rect``).
    """
    if use_projection:
        raw = getattr(msg, 'p', None)
        raw = getattr(msg, 'P', None) if raw is None else raw
        K = np.asarray(raw, dtype=np.float64).reshape(3, 4)[:, :3] if raw is not None else None
    else:
        raw = getattr(msg, 'k', None)
        raw = getattr(msg, 'K', None) if raw is None else raw
        K = np.asarray(raw, dtype=np.float64).reshape(3, 3) if raw is not None else None
    name = 'p' if use_projection else 'k'
    if K is None:
        raise MessageError(f'sensor_msgs/CameraInfo: no {name!r} field')
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise MessageError(f'sensor_msgs/CameraInfo: {name!r} has no valid focal length '
                           f'(fx={K[0, 0]}, fy={K[1, 1]}); is the camera calibrated?')
    return K.copy(), int(msg.width), int(msg.height)


# PointField.datatype -> numpy type code
_POINT_TYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}
INTENSITY_FIELDS = ('intensity', 'i')


def pointcloud2_to_numpy(msg, with_intensity: bool = True) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> N x 4 (x, y, z, intensity) or N x 3 float32, LiDAR frame.

    Any field order and offsets, padding inside points (``point_step``) and rows (``row_step``),
    either endianness, float32/float64 xyz. Points with a non-finite x, y or z are dropped. A missing
    intensity field gives zeros.
    """
    fields = {str(f.name): f for f in msg.fields}
    missing = [n for n in ('x', 'y', 'z') if n not in fields]
    if missing:
        raise MessageError(f'sensor_msgs/PointCloud2: missing field(s) {missing}; '
                           f'the cloud has {sorted(fields)}')
    wanted = ['x', 'y', 'z']
    inten = next((n for n in INTENSITY_FIELDS if n in fields), None) if with_intensity else None
    if inten:
        wanted.append(inten)
    point_step = int(msg.point_step)
    endian = '>' if bool(msg.is_bigendian) else '<'
    formats, offsets = [], []
    for name in wanted:
        f = fields[name]
        code = _POINT_TYPES.get(int(f.datatype))
        if code is None:
            raise MessageError(f'sensor_msgs/PointCloud2: field {name!r} has unknown datatype {f.datatype}')
        off = int(f.offset)
        if off + np.dtype(code).itemsize > point_step:
            raise MessageError(f'sensor_msgs/PointCloud2: field {name!r} at offset {off} does not fit '
                               f'in point_step {point_step}')
        formats.append(endian + code)
        offsets.append(off)
    dtype = np.dtype({'names': wanted, 'formats': formats, 'offsets': offsets, 'itemsize': point_step})
    width, height = int(msg.width), int(msg.height)
    n = width * height
    out_cols = 4 if with_intensity else 3
    if n == 0:
        return np.zeros((0, out_cols), np.float32)
    row_step = int(msg.row_step) or width * point_step
    rows = _rows(_raw_bytes(msg.data), height, row_step, width * point_step, 'sensor_msgs/PointCloud2')
    rec = np.ascontiguousarray(rows).reshape(-1).view(dtype)
    out = np.zeros((n, out_cols), np.float32)
    for i, name in enumerate(wanted[:3]):
        out[:, i] = rec[name]
    if inten:
        out[:, 3] = rec[inten]
    # xyz in float64 may be finite yet overflow float32: check the converted values
    return out[np.all(np.isfinite(out[:, :3]), axis=1)]


def transform_to_matrix(transform) -> np.ndarray:
    """geometry_msgs/Transform (or TransformStamped) -> 4x4 float64. The quaternion is normalized."""
    from scipy.spatial.transform import Rotation

    t = getattr(transform, 'transform', transform)
    q = np.array([t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w], dtype=np.float64)
    if not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
        raise MessageError(f'geometry_msgs/Transform: invalid rotation quaternion {q.tolist()}')
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q).as_matrix()
    T[:3, 3] = [t.translation.x, t.translation.y, t.translation.z]
    return T


def _bbox2d_center(bbox) -> tuple[float, float]:
    c = bbox.center
    pos = getattr(c, 'position', None)    # vision_msgs 4.x: Pose2D.position (Point2D)
    if pos is not None:
        return float(pos.x), float(pos.y)
    return float(c.x), float(c.y)         # 3.x: geometry_msgs/Pose2D


def detection2d_array_to_prompts(msg, default_cls: str = 'Car') -> list[Prompt]:
    """vision_msgs/Detection2DArray -> box prompts with unique ids.

    Class and score come from ``results[0].hypothesis`` (``default_cls`` / 1.0 without results).
    The prompt id is ``Detection2D.id`` when it is an integer not used by an earlier detection of the
    array, else the detection's index when that is free, else the next free integer: detectors that
    leave ids empty or reuse them must not give two labels (and two RViz markers) one id. Boxes with
    zero, negative or non-finite size are not prompts (a detector's degenerate output must not stop
    the fitter): they are in the returned list's ``dropped`` with their reason (core/prompts.py).
    """
    kept, dropped = [], []
    for i, det in enumerate(msg.detections):
        cx, cy = _bbox2d_center(det.bbox)
        sx, sy = float(det.bbox.size_x), float(det.bbox.size_y)
        ident = str(getattr(det, 'id', '')).strip()
        given = int(ident) if ident.lstrip('-').isdigit() else None
        box = np.array([cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2])
        reason = box_problem(box)
        if reason is not None:
            pid = i if given is None else given
            dropped.append(DroppedPrompt(i, pid, reason, tuple(float(v) for v in box)))
            continue
        cls, score = default_cls, 1.0
        if len(det.results):
            hyp = getattr(det.results[0], 'hypothesis', det.results[0])
            cls = str(getattr(hyp, 'class_id', '') or default_cls)
            score = float(hyp.score)
        kept.append((i, given, box, cls, score))
    # integer ids first come, first served; then the rest take their index or the next free number
    used, ids = set(), {}
    for i, given, *_ in kept:
        if given is not None and given not in used:
            used.add(given)
            ids[i] = given
    next_free = max(used, default=-1) + 1
    for i, *_ in kept:
        if i in ids:
            continue
        if i not in used:
            ids[i] = i
        else:
            while next_free in used:
                next_free += 1
            ids[i] = next_free
        used.add(ids[i])
    return PromptList([Prompt(id=ids[i], box=box, cls=cls, score=score, sources=('topic',))
                       for i, _, box, cls, score in kept], dropped)


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------

def make_image(rgb: np.ndarray, stamp_ns: int, frame_id: str, factory: MessageFactory):
    """H x W x 3 uint8 RGB -> sensor_msgs/Image 'rgb8' (H x W uint8 -> 'mono8')."""
    img = np.ascontiguousarray(np.asarray(rgb))
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise MessageError(f'make_image: need H x W x 3 or H x W uint8, got {img.shape} {img.dtype}')
    h, w = img.shape[:2]
    ch = 1 if img.ndim == 2 else 3
    return factory.new('sensor_msgs/msg/Image', header=make_header(stamp_ns, frame_id, factory),
                       height=int(h), width=int(w), encoding='mono8' if ch == 1 else 'rgb8',
                       is_bigendian=0, step=int(w * ch), data=factory.uint8_seq(img.tobytes()))


def make_camera_info(K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str,
                     factory: MessageFactory):
    """Pinhole CameraInfo without distortion: d = 0 (plumb_bob), R = I, P = [K | 0]."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.hstack([K, np.zeros((3, 1))])
    return factory.new('sensor_msgs/msg/CameraInfo', header=make_header(stamp_ns, frame_id, factory),
                       height=int(height), width=int(width), distortion_model='plumb_bob',
                       d=factory.float64_seq([0.0] * 5), k=factory.float64_fixed(K, 9),
                       r=factory.float64_fixed(np.eye(3), 9), p=factory.float64_fixed(P, 12))


def make_pointcloud2(points: np.ndarray, stamp_ns: int, frame_id: str, factory: MessageFactory,
                     ring: Optional[np.ndarray] = None):
    """N x 3/4 points -> PointCloud2 with float32 x, y, z, intensity (+ uint16 ring), little endian.

    The ring variant pads each point to 20 bytes so every field stays 4-byte aligned.
    """
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise MessageError(f'make_pointcloud2: points must be N x 3 or N x 4, got {pts.shape}')
    n = len(pts)
    names = ['x', 'y', 'z', 'intensity']
    formats = ['<f4'] * 4
    offsets = [0, 4, 8, 12]
    if ring is not None:
        ring = np.asarray(ring).reshape(-1)
        if len(ring) != n:
            raise MessageError(f'make_pointcloud2: {n} points but {len(ring)} ring values')
        names.append('ring')
        formats.append('<u2')
        offsets.append(16)
    step = 20 if ring is not None else 16
    rec = np.zeros(n, dtype=np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                                      'itemsize': step}))
    for i, name in enumerate(names[:3]):
        rec[name] = pts[:, i]
    rec['intensity'] = pts[:, 3] if pts.shape[1] == 4 else 0.0
    if ring is not None:
        rec['ring'] = ring.astype(np.uint16)
    fields = [factory.new('sensor_msgs/msg/PointField', name=name, offset=int(off),
                          datatype=7 if name != 'ring' else 4, count=1)
              for name, off in zip(names, offsets)]
    return factory.new('sensor_msgs/msg/PointCloud2', header=make_header(stamp_ns, frame_id, factory),
                       height=1, width=int(n), fields=fields, is_bigendian=False, point_step=step,
                       row_step=int(step * n), data=factory.uint8_seq(rec.tobytes()),
                       is_dense=bool(np.all(np.isfinite(pts[:, :3]))))


def _quaternion(R: np.ndarray, factory: MessageFactory):
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return factory.new('geometry_msgs/msg/Quaternion', x=float(x), y=float(y), z=float(z), w=float(w))


def _yaw_quaternion(yaw: float, factory: MessageFactory):
    return factory.new('geometry_msgs/msg/Quaternion', x=0.0, y=0.0, z=float(np.sin(yaw / 2)),
                       w=float(np.cos(yaw / 2)))


def _point(xyz, factory: MessageFactory):
    return factory.new('geometry_msgs/msg/Point', x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def matrix_to_transform(T: np.ndarray, factory: MessageFactory):
    """4x4 rigid transform -> geometry_msgs/Transform."""
    T = np.asarray(T, dtype=np.float64).reshape(4, 4)
    t = T[:3, 3]
    return factory.new('geometry_msgs/msg/Transform',
                       translation=factory.new('geometry_msgs/msg/Vector3', x=float(t[0]), y=float(t[1]),
                                               z=float(t[2])),
                       rotation=_quaternion(T[:3, :3], factory))


def make_tf_static(T_parent_child: np.ndarray, parent: str, child: str, stamp_ns: int,
                   factory: MessageFactory):
    """tf2_msgs/TFMessage with one transform parent -> child.

    ``T_parent_child`` maps points from the child frame into the parent frame (TF's convention), e.g.
    ``SensorFrame.T_cam_lidar`` with parent = camera frame and child = LiDAR frame.
    """
    return make_tf_message([(T_parent_child, parent, child)], stamp_ns, factory)


def make_tf_message(transforms, stamp_ns: int, factory: MessageFactory):
    """tf2_msgs/TFMessage of several ``(T_parent_child, parent, child)`` at one stamp (for /tf and
    /tf_static alike)."""
    out = [factory.new('geometry_msgs/msg/TransformStamped', header=make_header(stamp_ns, parent, factory),
                       child_frame_id=str(child), transform=matrix_to_transform(T, factory))
           for T, parent, child in transforms]
    return factory.new('tf2_msgs/msg/TFMessage', transforms=out)


def _hypothesis(cls: str, score: float, pose, factory: MessageFactory):
    hyp = factory.new('vision_msgs/msg/ObjectHypothesis', class_id=str(cls), score=float(score))
    pwc = factory.new('geometry_msgs/msg/PoseWithCovariance', pose=pose,
                      covariance=factory.float64_fixed(np.zeros(36), 36))
    return factory.new('vision_msgs/msg/ObjectHypothesisWithPose', hypothesis=hyp, pose=pwc)


def prompts_to_detection2d_array(prompts: Sequence[Prompt], stamp_ns: int, frame_id: str,
                                 factory: MessageFactory):
    """Prompts -> vision_msgs/Detection2DArray (box = the prompt's box, or its points' bounding box)."""
    dets = []
    for p in prompts:
        x1, y1, x2, y2 = (float(v) for v in p.bounding_box())
        mid = factory.new('vision_msgs/msg/Point2D', x=(x1 + x2) / 2, y=(y1 + y2) / 2)
        center = factory.new('vision_msgs/msg/Pose2D', position=mid, theta=0.0)
        bbox = factory.new('vision_msgs/msg/BoundingBox2D', center=center, size_x=x2 - x1, size_y=y2 - y1)
        hyp = _hypothesis(p.cls, p.score, factory.new('geometry_msgs/msg/Pose'), factory)
        header = make_header(stamp_ns, frame_id, factory)
        dets.append(factory.new('vision_msgs/msg/Detection2D', header=header, results=[hyp], bbox=bbox,
                                id=str(int(p.id))))
    return factory.new('vision_msgs/msg/Detection2DArray', header=make_header(stamp_ns, frame_id, factory),
                       detections=dets)


def drawable_labels(labels: Sequence[Label3D]) -> list[Label3D]:
    """Labels with a finite box: a prompt the pipeline could not place (NaN centre) has no 3D message
    (RViz rejects markers with NaN and consumers of Detection3D expect numbers)."""
    return [lab for lab in labels
            if np.all(np.isfinite(lab.center)) and np.all(np.isfinite(lab.size)) and np.isfinite(lab.yaw)]


def _box_pose(label: Label3D, factory: MessageFactory):
    return factory.new('geometry_msgs/msg/Pose', position=_point(label.center, factory),
                       orientation=_yaw_quaternion(label.yaw, factory))


def labels_to_detection3d_array(labels: Sequence[Label3D], stamp_ns: int, frame_id: str,
                                factory: MessageFactory, include_rejected: bool = False):
    """Labels -> vision_msgs/Detection3DArray: bbox centre pose (yaw about +z), size = (l, w, h),
    one hypothesis (class, score), id = str(label.id). Rejected labels only with ``include_rejected``;
    labels without a finite box are left out."""
    dets = []
    for lab in drawable_labels(labels):
        if not lab.accepted and not include_rejected:
            continue
        l, w, h = (float(v) for v in lab.size)
        bbox = factory.new('vision_msgs/msg/BoundingBox3D', center=_box_pose(lab, factory),
                           size=factory.new('geometry_msgs/msg/Vector3', x=l, y=w, z=h))
        hyp = _hypothesis(lab.cls, lab.score, _box_pose(lab, factory), factory)
        header = make_header(stamp_ns, frame_id, factory)
        dets.append(factory.new('vision_msgs/msg/Detection3D', header=header, results=[hyp], bbox=bbox,
                                id=str(int(lab.id))))
    return factory.new('vision_msgs/msg/Detection3DArray', header=make_header(stamp_ns, frame_id, factory),
                       detections=dets)


# Marker colours (r, g, b); alpha is set per marker kind.
ACCEPTED_RGB = (0.15, 0.85, 0.25)
REJECTED_RGB = (0.95, 0.15, 0.15)
MARKER_KINDS = ('box', 'edges', 'text', 'mesh')


def _color(rgb, alpha: float, factory: MessageFactory):
    return factory.new('std_msgs/msg/ColorRGBA', r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]),
                       a=float(alpha))


def label_text(label: Label3D) -> str:
    text = f'{label.cls} {label.score:.2f} #{label.id}'
    if not label.accepted:
        text += ' rejected' + (f': {", ".join(label.reasons)}' if label.reasons else '')
    return text


def label_edge_points(label: Label3D) -> np.ndarray:
    """26 x 3 LINE_LIST points: the 12 box edges, then the heading line (centre -> front face)."""
    corners = box_corners(label.center, label.size, label.yaw)
    edges = corners[BOX_EDGES.reshape(-1)]
    front = label.center + np.array([np.cos(label.yaw), np.sin(label.yaw), 0.0]) * label.size[0] / 2
    return np.vstack([edges, label.center, front])


def _points(xyz: np.ndarray, factory: MessageFactory) -> list:
    """N x 3 -> [geometry_msgs/Point] (a mesh marker carries thousands: the cost of big markers).

    Marker.points is a sequence of messages, for which rclpy has no array fast path. rosidl's Python
    classes keep x, y, z in the slots ``_x, _y, _z`` behind checking property setters; filling the
    slots of a bare instance with Python floats (exactly what the setters would check and store) is
    ~4x faster than the constructor. Classes without those slots (rosbags, other generators) use it.
    """
    P = factory('geometry_msgs/msg/Point')
    rows = np.asarray(xyz, dtype=np.float64).reshape(-1, 3).tolist()
    slots = getattr(P, '__slots__', ())
    if factory.flavour != 'rclpy' or not {'_x', '_y', '_z'} <= set(slots):
        return [P(x=x, y=y, z=z) for x, y, z in rows]
    checked = '_check_fields' in slots        # Jazzy's switch of the setter checks (not in Humble)
    new = object.__new__
    out = []
    for x, y, z in rows:
        p = new(P)
        if checked:
            p._check_fields = False
        p._x, p._y, p._z = x, y, z
        out.append(p)
    return out


DEFAULT_MESH_MAX_TRIANGLES = 2000


def labels_to_marker_array(labels: Sequence[Label3D], stamp_ns: int, frame_id: str,
                           factory: MessageFactory, namespace: str = 'autolabel',
                           line_width: float = 0.05, text_height: float = 0.6, meshes: bool = True,
                           mesh_max_triangles: int = DEFAULT_MESH_MAX_TRIANGLES):
    """Labels -> visualization_msgs/MarkerArray for RViz.

    A DELETEALL marker first (clears the previous frame), then per label: a translucent CUBE, a
    LINE_LIST (12 edges + heading line), a TEXT_VIEW_FACING (class, score, id) and, when the label has
    a mesh and ``meshes`` is true, a TRIANGLE_LIST decimated to ``mesh_max_triangles`` (0 = full
    resolution). Each kind has its own namespace ``<namespace>/<kind>`` and the marker id is
    ``label.id``, so ids are stable per object and kinds can be toggled in RViz. The DELETEALL has
    ``ns=''``: since ros2/rviz#685 a DELETEALL clears only its own namespace unless that is empty.
    Lifetime 0 (forever, until the next DELETEALL); stamp = the sensor stamp; green = accepted,
    red = rejected. Labels without a finite box are left out.
    """
    from autolabel_ros.shape.mesh import decimate_mesh

    M = factory('visualization_msgs/msg/Marker')
    header = make_header(stamp_ns, frame_id, factory)
    zero = factory.new('builtin_interfaces/msg/Duration', sec=0, nanosec=0)
    identity = factory.new('geometry_msgs/msg/Pose')    # orientation w = 1 by default
    unit = factory.new('geometry_msgs/msg/Vector3', x=1.0, y=1.0, z=1.0)

    def vec(x: float, y: float, z: float):
        return factory.new('geometry_msgs/msg/Vector3', x=float(x), y=float(y), z=float(z))

    def marker(ns: str, ident: int, mtype: int, **fields):
        base = dict(header=header, ns=ns, id=int(ident), type=int(mtype), action=int(M.ADD), pose=identity,
                    scale=unit, lifetime=zero, frame_locked=False)
        base.update(fields)
        return factory.new('visualization_msgs/msg/Marker', **base)

    markers = [marker('', 0, M.CUBE, action=int(M.DELETEALL))]
    for lab in drawable_labels(labels):
        rgb = ACCEPTED_RGB if lab.accepted else REJECTED_RGB
        l, w, h = (float(v) for v in lab.size)
        markers.append(marker(f'{namespace}/box', lab.id, M.CUBE, pose=_box_pose(lab, factory),
                              scale=vec(l, w, h),
                              color=_color(rgb, 0.25, factory)))
        markers.append(marker(f'{namespace}/edges', lab.id, M.LINE_LIST,
                              scale=vec(line_width, 0.0, 0.0),
                              color=_color(rgb, 1.0, factory),
                              points=_points(label_edge_points(lab), factory)))
        top = lab.center + np.array([0.0, 0.0, h / 2 + text_height])
        markers.append(marker(f'{namespace}/text', lab.id, M.TEXT_VIEW_FACING,
                              pose=factory.new('geometry_msgs/msg/Pose', position=_point(top, factory)),
                              scale=vec(0.0, 0.0, text_height),
                              color=_color((1.0, 1.0, 1.0), 1.0, factory), text=label_text(lab)))
        if meshes and lab.mesh is not None and len(lab.mesh.faces):
            mesh = decimate_mesh(lab.mesh, mesh_max_triangles)
            tri = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces).reshape(-1)]
            markers.append(marker(f'{namespace}/mesh', lab.id, M.TRIANGLE_LIST,
                                  color=_color(rgb, 0.7, factory), points=_points(tri, factory)))
    return factory.new('visualization_msgs/msg/MarkerArray', markers=markers)
