"""The nodes' parameter schema: node parameters + the pipeline config flattened with dots
(``fit.iterations``), so one schema serves ``config/autolabel.yaml``, the nodes and the CLIs;
startup validation with errors that name the parameter; the generators of the params YAML and of
docs/ROS.md's parameter tables. ROS-free (the nodes only declare what is listed here).

Regenerate after a config change::

    python -m autolabel_ros.nodes.params > config/autolabel.yaml
    python -m autolabel_ros.nodes.params --doc docs/ROS.md
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from autolabel_ros.config import (AutolabelConfig, ConfigError, ParamInfo, check_value, from_flat_dict, param,
                                  to_flat_dict)
from autolabel_ros.config import schema as config_schema

RELIABILITY = ('auto', 'best_effort', 'reliable')


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: tuple = ()


@dataclass
class NodeSettings:
    """The node (non-pipeline) parameters, declared like the pipeline config (:func:`config.param`):
    the descriptors, the params YAML, the docs/ROS.md table and the checks all come from here."""

    # shared by both nodes (sensor subscriptions, lifecycle): COMMON_NAMES
    reliability: str = param('auto', 'QoS reliability of the sensor subscriptions: auto (wait for the '
                             'publishers, then reliable when they all are, else best effort: rosbag2 and '
                             'most drivers publish reliably, and a best-effort link loses multi-MB clouds), '
                             'best_effort (matches any publisher) or reliable', choices=RELIABILITY)
    qos_depth: int = param(5, 'QoS history depth of the sensor subscriptions', min=1, max=1000)
    compressed_image: bool = param(False, 'subscribe to sensor_msgs/CompressedImage on the image topic '
                                   '(remap "image" to e.g. /camera/image_raw/compressed) instead of '
                                   'sensor_msgs/Image')
    autostart: bool = param(True, 'lifecycle node: configure (load models) and activate (subscribe) at '
                            'startup; false = stay unconfigured until `ros2 lifecycle set` or a lifecycle '
                            'manager')
    warm_up: bool = param(True, 'at configure, run one synthetic frame through the models and the output '
                          'messages, so the first real frame does not pay for lazy imports and first-call '
                          'allocations (~3 s on a CPU; a first frame that late made the one-slot queue drop '
                          'the next one)')
    pending_frames: int = param(1, 'frames that may wait for the worker; when more arrive the oldest '
                                'waiting one is dropped (counted in the statistics line). 1 = live: '
                                'always the newest frame, no backlog; a bag replay that must label every '
                                'frame sets N to absorb N frames of backlog (N frames more latency)',
                                min=1, max=1000)
    release_memory: bool = param(True, "after each frame, hand the allocator's free pages back to the "
                                 'system (glibc malloc_trim): without it the multi-MB messages freed on '
                                 'the worker thread stay resident in per-thread arenas (+15-20 % RSS in '
                                 'the first minute of a bag, then flat); at start, fix glibc\'s mmap '
                                 'threshold at its 32 MiB cap so the warm-up leaves a frame\'s working '
                                 'set resident, as real frames do')
    # fitter_node only
    queue_size: int = param(30, 'ApproximateTimeSynchronizer queue length per topic; it must cover the '
                            'detector latency (camera rate x latency, e.g. 30 Hz x 0.5 s = 15 images)',
                            min=1, max=1000)
    slop: float = param(0.1, 'ApproximateTimeSynchronizer: largest stamp difference within a set (seconds)',
                        min=0.0, max=10.0)
    sync_detections: bool = param(True, 'synchronize a vision_msgs/Detection2DArray with each frame; '
                                  'false = prompts only from RViz clicks (detector backend none)')
    sync_warn_after: float = param(5.0, 'log once (with the stamps seen per topic) when nothing has '
                                   'synchronized for this long (seconds)', min=0.5, max=3600.0)
    tf_timeout: float = param(0.2, 'how long to wait for the LiDAR -> camera TF at the frame stamp '
                              '(seconds)', min=0.0, max=10.0)
    static_transform: str = param('', 'fallback LiDAR -> camera optical transform when TF has none: '
                                  '"x y z qx qy qz qw" or 16 numbers (row-major 4x4 T_cam_lidar); empty = '
                                  'none (skip frame)')
    lidar_frame: str = param('', 'override the LiDAR frame id; empty = header.frame_id of the cloud')
    camera_frame: str = param('', 'override the camera optical frame id; empty = header.frame_id of the '
                              'image')
    use_rectified_projection: bool = param(False, 'use CameraInfo P (left 3x3) instead of K and ignore d: '
                                           'set true when the image topic is rectified (image_rect)')
    undistort: bool = param(True, 'raw images (use_rectified_projection false) whose CameraInfo has '
                            'non-zero d (plumb_bob, rational_polynomial, equidistant) are undistorted with '
                            'OpenCV before labelling; false = skip such frames with a warning naming the '
                            'camera_info topic')
    publish_debug_image: bool = param(True, 'publish ~/debug_image (masks, prompts, projected boxes); it '
                                      'is drawn only while someone subscribes')
    publish_meshes: bool = param(True, "add each label's fitted mesh (TRIANGLE_LIST) to ~/markers")
    mesh_max_triangles: int = param(2000, 'decimate each published mesh to at most this many triangles '
                                    '(0 = full resolution)', min=0, max=1000000)
    publish_rejected: bool = param(False, 'also put rejected labels in ~/detections_3d (markers always '
                                   'show them, in red)')
    clicked_point_topic: str = param('/clicked_point', 'geometry_msgs/PointStamped topic of RViz '
                                     '"Publish Point"; each click becomes a point prompt for the next frame')
    click_max_age: float = param(30.0, 'clicks older than this (seconds, wall clock) are discarded', min=0.0)
    marker_namespace: str = param('autolabel', 'namespace prefix of the RViz markers')
    # derived from static_transform by validate_parameters (not a parameter: no help text)
    T_cam_lidar_static: Optional[np.ndarray] = field(default=None, repr=False)


COMMON_NAMES = ('reliability', 'qos_depth', 'compressed_image', 'autostart', 'warm_up', 'pending_frames',
                'release_memory')


def _spec(info: ParamInfo) -> ParamSpec:
    return ParamSpec(info.name, info.default, info.help, min=info.min, max=info.max,
                     choices=info.choices or info.items or ())


_NODE_INFO = {i.name: i for i in config_schema(NodeSettings)}
FITTER_PARAMS = tuple(_spec(i) for i in _NODE_INFO.values())
COMMON_PARAMS = tuple(s for s in FITTER_PARAMS if s.name in COMMON_NAMES)
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
        out.append(_spec(rows[name]))
    return tuple(out)


def detector_pipeline_keys() -> list[str]:
    return ['device'] + [k for k in to_flat_dict(AutolabelConfig()) if k.startswith('detector.')] \
        + ['proposals.lidar', 'proposals.confirm_score', 'proposals.detector_tiles']


def fitter_specs() -> tuple[ParamSpec, ...]:
    return FITTER_PARAMS + pipeline_specs()


def detector_specs() -> tuple[ParamSpec, ...]:
    return DETECTOR_PARAMS + pipeline_specs(detector_pipeline_keys())


def _kind(value) -> str:
    if isinstance(value, bool):
        return 'a boolean'
    if isinstance(value, int):
        return 'an integer'
    if isinstance(value, float):
        return 'a float'
    if isinstance(value, str):
        return 'a string'
    if isinstance(value, (list, tuple)) or hasattr(value, 'typecode'):    # rclpy gives array.array
        items = list(value)
        return f'a list of {_kind(items[0]).split(" ", 1)[1]}s' if items else 'an empty list'
    return type(value).__name__


def refused_value_text(spec: ParamSpec, value) -> Optional[str]:
    """Why ROS refused ``value`` for ``spec`` when the node declared it (typed, ranged descriptors are
    checked before this package's own checks, in ROS's words: "Trying to set parameter 'slop' to '1'
    of type 'INTEGER', expecting type 'DOUBLE'"): its type or its range, in one short phrase;
    None when neither explains it."""
    given, wanted = _kind(value), _kind(spec.default)
    if hasattr(value, 'typecode'):
        value = list(value)
    if given != wanted:
        hint = f' (write {value}.0)' if (given, wanted) == ('an integer', 'a float') else ''
        return f'{value!r} is {given}, expected {wanted}{hint}'
    if spec.min is not None or spec.max is not None:
        lo = spec.min if spec.min is not None else '-inf'
        hi = spec.max if spec.max is not None else 'inf'
        return f'{value!r} is out of its range [{lo}, {hi}]'
    return None


# parameters of every rclpy node or of ROS tools: not ours to check
ROS_PARAMETERS = ('use_sim_time', 'start_type_description_service')
ROS_PARAMETER_PREFIXES = ('qos_overrides.',)


def unknown_parameters(names: Iterable[str]) -> list[str]:
    """The names of a params file / ``-p`` overrides that no node of the package declares (ROS ignores
    them without a word: a typo leaves the default in force), each with the closest declared name
    when one is close: ``fit.iteratoins (did you mean fit.iterations?)``. The fitter declares every
    name the detector does, so one shared params file is checked against the fitter's."""
    known = [s.name for s in fitter_specs()]
    out = []
    for name in sorted(names):
        if name in known or name in ROS_PARAMETERS or name.startswith(ROS_PARAMETER_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        out.append(f'{name} (did you mean {close[0]}?)' if close else name)
    return out


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
            try:
                node_vals[spec.name] = check_value(_NODE_INFO[spec.name], values[spec.name])
            except ConfigError as e:
                raise ConfigError(f'{node}: {e}') from None
    try:
        cfg = from_flat_dict(flat)
    except ConfigError as e:
        raise ConfigError(f'{node}: {e}') from None
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


def main(argv=None) -> int:
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(prog='python -m autolabel_ros.nodes.params',
                                 description='print the nodes\' parameter YAML (> config/autolabel.yaml), '
                                             'or rewrite the parameter tables of a doc (--doc docs/ROS.md)')
    ap.add_argument('--doc', type=Path, help='Markdown file whose parameter tables are rewritten in place')
    args = ap.parse_args(argv)
    if args.doc:
        args.doc.write_text(update_doc_tables(args.doc.read_text()))
    else:
        print(render_params_yaml(), end='')
    return 0


if __name__ == '__main__':
    # python -m autolabel_ros.nodes.params > config/autolabel.yaml
    # python -m autolabel_ros.nodes.params --doc docs/ROS.md     (rewrites its parameter tables)
    raise SystemExit(main())
