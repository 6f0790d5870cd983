"""Every decision the ROS nodes make, without ROS (tested here; the nodes only wire it to rclpy).

- the parameter schema: node parameters + the pipeline config flattened with dots
  (``fit.iterations``), so one schema serves ``config/autolabel.yaml``, the nodes and the CLIs;
- startup validation with errors that name the parameter;
- the one-slot job queue that drops stale frames, latency / drop statistics;
- the "nothing synchronizes" watchdog that reports the stamps seen per topic;
- RViz "Publish Point" clicks -> point prompts; the debug overlay image.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Sequence

import numpy as np

from autolabel_ros.config import AutolabelConfig, ConfigError, from_flat_dict, to_flat_dict
from autolabel_ros.config import schema as config_schema
from autolabel_ros.core.geometry import BOX_EDGES, box_corners, project, transform_points
from autolabel_ros.core.types import Label3D, Prompt, SensorFrame

# --------------------------------------------------------------------------------------------
# Parameter schema
# --------------------------------------------------------------------------------------------

RELIABILITY = ('best_effort', 'reliable')


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: tuple = ()


# Parameters shared by both nodes (sensor subscriptions).
COMMON_PARAMS = (
    ParamSpec('reliability', 'best_effort', 'QoS reliability of the sensor subscriptions: best_effort '
              '(sensor data, matches any publisher) | reliable', choices=RELIABILITY),
    ParamSpec('qos_depth', 5, 'QoS history depth of the sensor subscriptions', min=1, max=1000),
    ParamSpec('compressed_image', False, 'subscribe to sensor_msgs/CompressedImage on the image topic '
              '(remap "image" to e.g. /camera/image_raw/compressed) instead of sensor_msgs/Image'),
)

FITTER_PARAMS = COMMON_PARAMS + (
    ParamSpec('queue_size', 30, 'ApproximateTimeSynchronizer queue length per topic; it must cover the '
              'detector latency (camera rate x latency, e.g. 30 Hz x 0.5 s = 15 images)', min=1, max=1000),
    ParamSpec('slop', 0.1, 'ApproximateTimeSynchronizer: largest stamp difference within a set (seconds)',
              min=0.0, max=10.0),
    ParamSpec('sync_detections', True, 'synchronize a vision_msgs/Detection2DArray with each frame; '
              'false = prompts only from RViz clicks (detector backend none)'),
    ParamSpec('sync_warn_after', 5.0, 'log once (with the stamps seen per topic) when nothing has '
              'synchronized for this long (seconds)', min=0.5, max=3600.0),
    ParamSpec('tf_timeout', 0.2, 'how long to wait for the LiDAR -> camera TF at the frame stamp (seconds)',
              min=0.0, max=10.0),
    ParamSpec('static_transform', '', 'fallback LiDAR -> camera optical transform when TF has none: '
              '"x y z qx qy qz qw" or 16 numbers (row-major 4x4 T_cam_lidar); empty = none (skip frame)'),
    ParamSpec('lidar_frame', '', 'override the LiDAR frame id; empty = header.frame_id of the cloud'),
    ParamSpec('camera_frame', '', 'override the camera optical frame id; empty = header.frame_id of '
              'the image'),
    ParamSpec('use_rectified_projection', False, 'use CameraInfo P (left 3x3) instead of K: set true '
              'when the image topic is rectified (image_rect)'),
    ParamSpec('publish_debug_image', True, 'publish ~/debug_image (masks, prompts, projected boxes)'),
    ParamSpec('publish_rejected', False, 'also put rejected labels in ~/detections_3d (markers always '
              'show them, in red)'),
    ParamSpec('clicked_point_topic', '/clicked_point', 'geometry_msgs/PointStamped topic of RViz '
              '"Publish Point"; each click becomes a point prompt for the next frame'),
    ParamSpec('click_max_age', 30.0, 'clicks older than this (seconds, wall clock) are discarded', min=0.0),
    ParamSpec('marker_namespace', 'autolabel', 'namespace prefix of the RViz markers'),
)

DETECTOR_PARAMS = COMMON_PARAMS


def pipeline_specs(keys: Optional[Sequence[str]] = None) -> tuple[ParamSpec, ...]:
    """ParamSpecs of the pipeline config (all keys, or the given ones): defaults, help, ranges and
    choices from the one schema in :mod:`autolabel_ros.config`."""
    rows = {p.name: p for p in config_schema()}
    names = list(rows) if keys is None else list(keys)
    out = []
    for name in names:
        if name not in rows:
            raise ConfigError(f'unknown pipeline parameter {name!r}')
        r = rows[name]
        out.append(ParamSpec(name, r.default, r.help, min=r.min, max=r.max,
                             choices=r.choices or r.items or ()))
    return tuple(out)


def detector_pipeline_keys() -> list[str]:
    return ['device'] + [k for k in to_flat_dict(AutolabelConfig()) if k.startswith('detector.')]


def fitter_specs() -> tuple[ParamSpec, ...]:
    return FITTER_PARAMS + pipeline_specs()


def detector_specs() -> tuple[ParamSpec, ...]:
    return DETECTOR_PARAMS + pipeline_specs(detector_pipeline_keys())


@dataclass
class NodeSettings:
    """Validated node (non-pipeline) parameters."""

    reliability: str = 'best_effort'
    qos_depth: int = 5
    compressed_image: bool = False
    queue_size: int = 30
    slop: float = 0.1
    sync_detections: bool = True
    sync_warn_after: float = 5.0
    tf_timeout: float = 0.2
    static_transform: str = ''
    lidar_frame: str = ''
    camera_frame: str = ''
    use_rectified_projection: bool = False
    publish_debug_image: bool = True
    publish_rejected: bool = False
    clicked_point_topic: str = '/clicked_point'
    click_max_age: float = 30.0
    marker_namespace: str = 'autolabel'
    T_cam_lidar_static: Optional[np.ndarray] = field(default=None, repr=False)


def _check_value(spec: ParamSpec, value: Any, node: str) -> Any:
    where = f'{node}: parameter {spec.name!r}'
    d = spec.default
    if isinstance(d, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f'{where} must be true or false, got {value!r}')
        return bool(value)
    if isinstance(d, int):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f'{where} must be an integer, got {value!r}')
        value = int(value)
    elif isinstance(d, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(value):
            raise ConfigError(f'{where} must be a finite number, got {value!r}')
        value = float(value)
    elif isinstance(d, str):
        value = str(value).strip()
    if spec.min is not None and value < spec.min:
        raise ConfigError(f'{where} = {value} is below the minimum {spec.min}')
    if spec.max is not None and value > spec.max:
        raise ConfigError(f'{where} = {value} is above the maximum {spec.max}')
    if spec.choices and value not in spec.choices:
        raise ConfigError(f'{where} = {value!r}; expected one of {", ".join(spec.choices)}')
    return value


def parse_static_transform(text: str) -> Optional[np.ndarray]:
    """'' -> None; 'x y z qx qy qz qw' or 16 row-major numbers -> 4x4 T_cam_lidar."""
    text = (text or '').replace(',', ' ').strip()
    if not text:
        return None
    try:
        vals = [float(v) for v in text.split()]
    except ValueError:
        raise ConfigError(f'parameter static_transform: not numbers: {text!r}') from None
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f'parameter static_transform: non-finite value in {text!r}')
    if len(vals) == 16:
        T = np.array(vals, dtype=np.float64).reshape(4, 4)
        R = T[:3, :3]
        if not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(R @ R.T, np.eye(3), atol=1e-4) \
                or np.linalg.det(R) < 0:
            raise ConfigError('parameter static_transform: the 4x4 matrix is not a rigid transform')
        return T
    if len(vals) == 7:
        from scipy.spatial.transform import Rotation

        q = np.array(vals[3:])
        if np.linalg.norm(q) < 1e-9:
            raise ConfigError('parameter static_transform: zero quaternion')
        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(q).as_matrix()
        T[:3, 3] = vals[:3]
        return T
    raise ConfigError(f'parameter static_transform: expected 7 numbers (x y z qx qy qz qw) or 16 '
                      f'(row-major 4x4), got {len(vals)}')


def validate_parameters(values: dict, specs: Sequence[ParamSpec], node: str = 'node'
                        ) -> tuple[AutolabelConfig, NodeSettings]:
    """Node parameter values (name -> value, as read from ROS) -> (pipeline config, node settings).

    Raises ConfigError naming the node and the parameter. Pipeline keys go through the same
    ``from_flat_dict`` as the YAML and CLI paths.
    """
    pipeline_keys = set(to_flat_dict(AutolabelConfig()))
    flat, node_vals = {}, {}
    for spec in specs:
        if spec.name not in values:
            continue
        if spec.name in pipeline_keys:
            flat[spec.name] = values[spec.name]
        else:
            node_vals[spec.name] = _check_value(spec, values[spec.name], node)
    try:
        cfg = from_flat_dict(flat)
    except ConfigError as e:
        raise ConfigError(f'{node}: {e}') from None
    if cfg.detector.score_threshold < 0 or cfg.detector.score_threshold > 1:
        raise ConfigError(f'{node}: parameter detector.score_threshold = {cfg.detector.score_threshold} '
                          f'must lie in [0, 1]')
    known = {f.name for f in fields(NodeSettings)}
    settings = NodeSettings(**{k: v for k, v in node_vals.items() if k in known})
    try:
        settings.T_cam_lidar_static = parse_static_transform(settings.static_transform)
    except ConfigError as e:
        raise ConfigError(f'{node}: {e}') from None
    return cfg, settings


# --------------------------------------------------------------------------------------------
# Worker queue and statistics
# --------------------------------------------------------------------------------------------

class LatestSlot:
    """A one-slot queue: ``put`` replaces a waiting item (counted as dropped), ``get`` blocks.

    The subscription callback puts, the worker thread gets: a slow pipeline always works on the
    newest frame and never builds a backlog.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._has = False
        self._closed = False
        self.dropped = 0
        self.accepted = 0

    def put(self, item) -> bool:
        """Store ``item``; returns True when it replaced an unprocessed one."""
        with self._cond:
            replaced = self._has
            if replaced:
                self.dropped += 1
            self._item, self._has = item, True
            self.accepted += 1
            self._cond.notify()
            return replaced

    def get(self, timeout: Optional[float] = None):
        """The waiting item, or None after ``timeout`` seconds / when closed."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    @property
    def pending(self) -> bool:
        """An item waits for the worker."""
        with self._cond:
            return self._has

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class LatencyStats:
    """Running processing time and sensor-to-output latency, for periodic log lines."""

    def __init__(self):
        self.frames = 0
        self.objects = 0
        self._proc: list[float] = []
        self._lat: list[float] = []

    def add(self, processing_s: float, latency_s: float, n_objects: int):
        self.frames += 1
        self.objects += int(n_objects)
        self._proc.append(float(processing_s))
        self._lat.append(float(latency_s))

    def summary(self, dropped: int) -> str:
        """One log line over the frames since the last summary (then resets the window)."""
        if not self._proc:
            return (f'no frame processed since the last report; total {self.frames} frames, '
                    f'dropped {dropped} stale frame(s)')
        p, lat = np.array(self._proc), np.array(self._lat)
        line = (f'{len(p)} frame(s): processing mean {p.mean():.3f} s (max {p.max():.3f}), '
                f'latency mean {lat.mean():.3f} s (max {lat.max():.3f}); total {self.frames} frames, '
                f'{self.objects} objects, dropped {dropped} stale frame(s)')
        self._proc.clear()
        self._lat.clear()
        return line


# --------------------------------------------------------------------------------------------
# "Nothing synchronizes" watchdog
# --------------------------------------------------------------------------------------------

class SyncMonitor:
    """Remembers the last stamp and arrival per input topic and the last synchronized set.

    ``check(now)`` returns a message once when nothing synchronized for ``warn_after`` seconds
    (again only after a successful sync), listing what each topic delivered, so the usual causes
    (a silent topic, a QoS mismatch, stamps from different clocks) are visible in one line.
    """

    def __init__(self, topics: Sequence[str], warn_after: float, start_time: float):
        self.topics = list(topics)
        self.warn_after = float(warn_after)
        self.last_stamp_ns: dict[str, Optional[int]] = {t: None for t in self.topics}
        self.last_arrival: dict[str, Optional[float]] = {t: None for t in self.topics}
        self.counts: dict[str, int] = {t: 0 for t in self.topics}
        self.last_sync = float(start_time)
        self.syncs = 0
        self._warned = False

    def note(self, topic: str, stamp_ns: int, now: float):
        self.last_stamp_ns[topic] = int(stamp_ns)
        self.last_arrival[topic] = float(now)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def synced(self, now: float):
        self.last_sync = float(now)
        self.syncs += 1
        self._warned = False

    def check(self, now: float) -> Optional[str]:
        if self._warned or now - self.last_sync < self.warn_after:
            return None
        self._warned = True
        parts = []
        for t in self.topics:
            if self.counts.get(t, 0) == 0:
                parts.append(f'{t}: nothing received')
            else:
                parts.append(f'{t}: {self.counts[t]} msgs, last stamp {self.last_stamp_ns[t] / 1e9:.3f} s, '
                             f'{now - self.last_arrival[t]:.1f} s ago')
        stamps = [s for s in self.last_stamp_ns.values() if s is not None]
        spread = ''
        if len(stamps) > 1:
            spread = f'; last stamps span {(max(stamps) - min(stamps)) / 1e9:.3f} s'
        what = 'since start' if self.syncs == 0 else 'for'
        return (f'no synchronized frame {what} {now - self.last_sync:.1f} s: ' + '; '.join(parts) + spread +
                ' (check topic names/remaps, QoS reliability, the slop parameter and use_sim_time)')


# --------------------------------------------------------------------------------------------
# Human-in-the-loop clicks
# --------------------------------------------------------------------------------------------

@dataclass
class Click:
    xyz: np.ndarray        # in frame_id
    frame_id: str
    received: float        # wall clock seconds


class ClickBuffer:
    """Clicked 3D points waiting for the next frame (thread-safe)."""

    def __init__(self, max_age: float = 30.0):
        self.max_age = float(max_age)
        self._lock = threading.Lock()
        self._clicks: list[Click] = []

    def add(self, xyz, frame_id: str, now: float):
        p = np.asarray(xyz, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(p)):
            return
        with self._lock:
            self._clicks.append(Click(p, str(frame_id), float(now)))

    def take(self, now: float) -> list[Click]:
        """All fresh clicks (removed from the buffer); stale ones are dropped."""
        with self._lock:
            clicks, self._clicks = self._clicks, []
        return [c for c in clicks if self.max_age <= 0 or now - c.received <= self.max_age]

    def __len__(self):
        with self._lock:
            return len(self._clicks)


CLICK_ID_BASE = 100000   # click prompt ids start here so they never collide with detector ids


def clicks_to_prompts(points_cam: np.ndarray, K: np.ndarray, width: int, height: int,
                      first_id: int = CLICK_ID_BASE, cls: str = 'Car') -> tuple[list[Prompt], int]:
    """Clicked points already in the camera optical frame -> one point prompt each.

    Returns (prompts, number of clicks that fell behind the camera or outside the image).
    """
    pts = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0:
        return [], 0
    uv, z = project(np.asarray(K, dtype=np.float64), pts)
    ok = (z > 1e-3) & np.all(np.isfinite(uv), axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] < width) \
        & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    prompts = [Prompt(id=first_id + i, points=uv[i:i + 1], point_labels=np.ones(1, np.int64), cls=cls)
               for i in np.flatnonzero(ok)]
    return prompts, int((~ok).sum())


# --------------------------------------------------------------------------------------------
# One synchronized set -> pipeline input -> messages (the fitter node's work, minus ROS calls)
# --------------------------------------------------------------------------------------------

class SkipFrame(Exception):
    """This synchronized set cannot be processed; the text says why (logged, throttled)."""


def tf_frame_id(name) -> str:
    """A frame id as tf2 accepts it: ROS 2 tf2 rejects lookups of ids with a leading '/' (ROS 1 style,
    e.g. bags converted from ROS 1) and stores such transforms without the slash."""
    return str(name or '').strip().lstrip('/')


def frame_ids(settings: NodeSettings, image_msg, cloud_msg) -> tuple[str, str]:
    """(LiDAR frame, camera frame) of a synchronized set: the overrides, else the headers' frame ids."""
    return (tf_frame_id(settings.lidar_frame or cloud_msg.header.frame_id),
            tf_frame_id(settings.camera_frame or image_msg.header.frame_id))


def prepare_frame(image_msg, info_msg, cloud_msg, det_msg, T_cam_lidar: np.ndarray, settings: NodeSettings,
                  clicks_cam: Optional[np.ndarray] = None) -> tuple[SensorFrame, list[Prompt], int]:
    """Messages (rclpy or rosbags) + extrinsic -> (SensorFrame, prompts, clicks outside the image).

    The frame is stamped and named by the cloud (labels live in the LiDAR frame); prompts are the
    synchronized detections followed by the clicked points (already in the camera frame).
    """
    from autolabel_ros.io import messages as M

    if settings.compressed_image:
        image = M.compressed_image_to_numpy(image_msg)
    else:
        image = M.image_to_numpy(image_msg)
    K, w, h = M.camera_info_to_intrinsics(info_msg, use_projection=settings.use_rectified_projection)
    if w > 0 and h > 0 and (w, h) != (image.shape[1], image.shape[0]):
        raise SkipFrame(f'camera_info is {w}x{h} but the image is {image.shape[1]}x{image.shape[0]}')
    points = M.pointcloud2_to_numpy(cloud_msg)
    stamp_ns = M.header_stamp_ns(cloud_msg)
    lidar_frame, camera_frame = frame_ids(settings, image_msg, cloud_msg)
    frame = SensorFrame(image=image, K=K, points=points, T_cam_lidar=T_cam_lidar, stamp_ns=stamp_ns,
                        frame_id=str(stamp_ns), lidar_frame=lidar_frame, camera_frame=camera_frame)
    prompts = M.detection2d_array_to_prompts(det_msg) if det_msg is not None else []
    outside = 0
    if clicks_cam is not None and len(clicks_cam):
        used = {p.id for p in prompts}
        first = max([CLICK_ID_BASE] + [i + 1 for i in used if i >= CLICK_ID_BASE])
        extra, outside = clicks_to_prompts(clicks_cam, K, frame.width, frame.height, first_id=first)
        prompts += extra
    return frame, prompts, outside


def frame_outputs(frame: SensorFrame, labels: Sequence[Label3D], prompts: Sequence[Prompt],
                  settings: NodeSettings, factory, image_stamp_ns: Optional[int] = None,
                  masks: Optional[Sequence[np.ndarray]] = None) -> dict:
    """The messages the fitter publishes for one frame: 'markers', 'detections_3d' (LiDAR frame,
    cloud stamp) and, when enabled, 'debug_image' (camera frame, image stamp)."""
    from autolabel_ros.io import messages as M

    out = {'markers': M.labels_to_marker_array(labels, frame.stamp_ns, frame.lidar_frame, factory,
                                               namespace=settings.marker_namespace),
           'detections_3d': M.labels_to_detection3d_array(labels, frame.stamp_ns, frame.lidar_frame, factory,
                                                          include_rejected=settings.publish_rejected)}
    if settings.publish_debug_image:
        overlay = draw_debug_image(frame.image, frame.K, frame.T_cam_lidar, labels, prompts, masks)
        stamp = frame.stamp_ns if image_stamp_ns is None else image_stamp_ns
        out['debug_image'] = M.make_image(overlay, stamp, frame.camera_frame, factory)
    return out


# --------------------------------------------------------------------------------------------
# Debug overlay
# --------------------------------------------------------------------------------------------

_GREEN, _RED, _YELLOW, _CYAN = (40, 220, 70), (240, 40, 40), (255, 210, 0), (0, 220, 255)


def draw_debug_image(image: np.ndarray, K: np.ndarray, T_cam_lidar: np.ndarray, labels: Sequence[Label3D],
                     prompts: Sequence[Prompt] = (), masks: Optional[Sequence[np.ndarray]] = None,
                     mask_alpha: float = 0.4) -> np.ndarray:
    """RGB overlay: segmentation masks (tinted), prompts (yellow boxes, cyan clicks) and the labels'
    3D boxes projected into the image (green accepted, red rejected). Returns a new H x W x 3 uint8."""
    from PIL import Image, ImageDraw

    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    if masks is not None:
        palette = np.array([[255, 80, 80], [80, 160, 255], [255, 200, 60], [160, 255, 120], [220, 100, 255]],
                           dtype=np.float32)
        for i, m in enumerate(masks):
            m = np.asarray(m, dtype=bool)
            if m.shape != (h, w) or not m.any():
                continue
            out[m] = ((1 - mask_alpha) * out[m] + mask_alpha * palette[i % len(palette)]).astype(np.uint8)
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    for p in prompts:
        if p.box is not None:
            draw.rectangle([float(v) for v in p.box], outline=_YELLOW, width=2)
        if p.points is not None:
            for (u, v), lab in zip(p.points, p.point_labels):
                r = 5
                draw.ellipse([u - r, v - r, u + r, v + r], outline=_CYAN if lab > 0 else _RED, width=2)
    K = np.asarray(K, dtype=np.float64)
    for lab in labels:
        cam = transform_points(T_cam_lidar, box_corners(lab.center, lab.size, lab.yaw))
        uv, z = project(K, cam)
        color = _GREEN if lab.accepted else _RED
        for a, b in BOX_EDGES:
            if z[a] > 0.1 and z[b] > 0.1:    # skip edges crossing behind the camera
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=color, width=2)
        if np.all(z > 0.1):
            top = uv[np.argmin(uv[:, 1])]
            draw.text((float(top[0]), max(0.0, float(top[1]) - 12)), f'{lab.cls} {lab.score:.2f} #{lab.id}',
                      fill=color)
    return np.asarray(pil, dtype=np.uint8)


def now_wall() -> float:
    return time.monotonic()


# --------------------------------------------------------------------------------------------
# The params file
# --------------------------------------------------------------------------------------------

def _yaml_value(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, float):
        return repr(v)              # keeps the decimal point: ROS parameters are typed
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return '[' + ', '.join(_yaml_value(x) for x in v) + ']'
    text = str(v)
    if text == '' or any(c in text for c in ':/#{}[],&*!|>%@`\'"') or text.lower() in (
            'true', 'false', 'yes', 'no', 'on', 'off', 'null', '~'):
        return "'" + text.replace("'", "''") + "'"
    return text


def render_params_yaml() -> str:
    """config/autolabel.yaml from the schema: every parameter with its default and description.

    Regenerate after a config change: ``python -m autolabel_ros.nodes.logic > config/autolabel.yaml``.
    """
    import textwrap

    def comment(text, indent):
        return [indent + '# ' + ln for ln in textwrap.wrap(text, 100 - len(indent))]

    lines = ["# Parameters of autolabel_ros' nodes (detector_node, fitter_node), also read by the CLIs",
             '# (load_config() takes the pipeline sections). Generated by',
             '#   python -m autolabel_ros.nodes.logic > config/autolabel.yaml',
             '# Nested keys are dotted ROS parameter names (fit.iterations). Parameters are typed: floats',
             '# keep their decimal point (1.0, not 1) and lists must not be empty.',
             '/**:', '  ros__parameters:',
             '    # ---- node settings (fitter_node; detector_node reads reliability, qos_depth,',
             '    # compressed_image)']
    for s in FITTER_PARAMS:
        text = s.description + (f' (one of: {", ".join(s.choices)})' if s.choices else '')
        lines += comment(text, '    ') + [f'    {s.name}: {_yaml_value(s.default)}']
    lines += ['', '    # ---- pipeline (autolabel_ros.config.AutolabelConfig; detector_node reads device and',
              '    # detector.*)']
    section = None
    for s in pipeline_specs():
        parts = s.name.split('.')
        indent = '    '
        if len(parts) == 2:
            if parts[0] != section:
                section = parts[0]
                lines.append(f'    {section}:')
            indent = '      '
        lines += comment(spec_text(s), indent) + [f'{indent}{parts[-1]}: {_yaml_value(s.default)}']
    return '\n'.join(lines) + '\n'


def spec_text(s: ParamSpec) -> str:
    """Description + choices + range of a parameter, for the YAML comments and the doc tables."""
    text = s.description + (f' (one of: {", ".join(s.choices)})' if s.choices else '')
    if s.min is not None or s.max is not None:
        text += f'; range [{"-inf" if s.min is None else s.min}, {"inf" if s.max is None else s.max}]'
    return text


def param_table_rows(specs: Sequence[ParamSpec], both: set) -> list[str]:
    """Markdown rows ``| `name` | `default` | both/fitter | description |`` of docs/ROS.md."""
    rows = []
    for s in specs:
        text = spec_text(s)
        node = 'both' if s.name in both else 'fitter'
        rows.append(f'| `{s.name}` | `{_yaml_value(s.default)}` | {node} | {text.replace("|", "/")} |')
    return rows


def update_doc_tables(text: str) -> str:
    """docs/ROS.md with its two parameter tables (node, pipeline) regenerated from the schema."""
    both = {s.name for s in COMMON_PARAMS} | set(detector_pipeline_keys())
    lines = text.split('\n')
    for first, rows in ((FITTER_PARAMS[0].name, param_table_rows(FITTER_PARAMS, both)),
                        ('device', param_table_rows(pipeline_specs(), both))):
        i = next(k for k, line in enumerate(lines) if line.startswith(f'| `{first}` |'))
        j = i
        while j < len(lines) and lines[j].startswith('| `'):
            j += 1
        lines[i:j] = rows
    return '\n'.join(lines)


if __name__ == '__main__':
    # python -m autolabel_ros.nodes.logic > config/autolabel.yaml
    # python -m autolabel_ros.nodes.logic --doc docs/ROS.md     (rewrites its parameter tables)
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == '--doc':
        from pathlib import Path

        doc = Path(sys.argv[2])
        doc.write_text(update_doc_tables(doc.read_text()))
    else:
        print(render_params_yaml(), end='')
