"""The launch file, the params YAML and the RViz config parse and agree with the nodes (no ROS needed)."""
import ast
import re
from pathlib import Path

import pytest
import yaml

from autolabel_ros.config import AutolabelConfig, load_config, to_flat_dict
from autolabel_ros.nodes import params

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch' / 'autolabel.launch.py'
PARAMS = ROOT / 'config' / 'autolabel.yaml'
RVIZ = ROOT / 'config' / 'autolabel.rviz'


def _strings(path: Path) -> set:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _launch_arguments() -> dict:
    """name -> default of the ARGUMENTS table in the launch file (read without importing launch)."""
    tree = ast.parse(LAUNCH.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'ARGUMENTS':
            return {name: default for name, default, _ in ast.literal_eval(node.value)}
    raise AssertionError('ARGUMENTS table not found')


def _launch_constant(name: str):
    tree = ast.parse(LAUNCH.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f'{name} not found in the launch file')


def _flatten(d: dict, prefix: str = '') -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f'{prefix}{k}.'))
        else:
            out[prefix + k] = v
    return out


def test_launch_file_is_valid_python_with_its_arguments():
    tree = ast.parse(LAUNCH.read_text())
    assert 'generate_launch_description' in [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    strings = _strings(LAUNCH)
    args = _launch_arguments()
    for name in ('namespace', 'image_topic', 'camera_info_topic', 'cloud_topic', 'use_sim_time', 'detector',
                 'autostart', 'rviz', 'log_level'):
        assert name in args
    # the log level goes to the nodes as a ROS argument, conditions are substitutions (no glued quotes)
    src = LAUNCH.read_text()
    assert 'ros_arguments=log_level' in src and 'PythonExpression' not in src
    assert {'cyclonedds.xml', 'CYCLONEDDS_URI'} <= strings
    assert {'params_file', 'rviz_config', 'autolabel.yaml', 'autolabel.rviz'} <= strings
    # executables and node names match setup.py and the nodes
    setup = (ROOT / 'setup.py').read_text()
    for exe, module, node_name in (('detector_node', 'detector_node', 'autolabel_detector'),
                                   ('fitter_node', 'fitter_node', 'autolabel_fitter')):
        assert exe in strings and node_name in strings
        # the executable enters through nodes/entry.py (quiet Ctrl-C while importing), which runs module.main
        assert f'{exe} = autolabel_ros.nodes.entry:{exe}' in setup
        assert f"_run('{module}')" in (ROOT / 'autolabel_ros' / 'nodes' / 'entry.py').read_text()
        node_src = ROOT / 'autolabel_ros' / 'nodes' / f'{module}.py'
        assert node_name in _strings(node_src)
        funcs = [n.name for n in ast.parse(node_src.read_text()).body if isinstance(n, ast.FunctionDef)]
        assert 'main' in funcs
    # the remapped names are the nodes' relative topic names
    for topic in ('image', 'camera_info', 'points', 'detections'):
        assert topic in strings and topic in _strings(ROOT / 'autolabel_ros' / 'nodes' / 'fitter_node.py')
    assert "glob('launch/*.launch.py')" in setup and "glob('config/*.rviz')" in setup


def test_params_yaml_has_every_parameter_typed_and_documented():
    text = PARAMS.read_text()
    data = yaml.safe_load(text)
    assert list(data) == ['/**'] and list(data['/**']) == ['ros__parameters']
    flat = _flatten(data['/**']['ros__parameters'])
    schema = {s.name: s.default for s in params.fitter_specs()}
    missing = sorted(set(to_flat_dict(AutolabelConfig())) - set(flat))
    assert not missing, f'pipeline keys missing in {PARAMS.name}: {missing}'
    assert not sorted(set(schema) - set(flat)), 'node parameters missing in the YAML'
    assert not sorted(set(flat) - set(schema)), 'unknown keys in the YAML (typo?)'
    for name, value in flat.items():
        default = schema[name]
        # ROS parameters are typed: a YAML int for a float parameter fails at node startup
        assert type(value) is type(default), f'{name}: {value!r} is {type(value).__name__}, ' \
                                             f'the node declares {type(default).__name__}'
        if isinstance(default, list):
            assert value and all(type(v) is type(default[0]) for v in value), name
    lines = text.splitlines()
    key_lines = [i for i, line in enumerate(lines) if re.match(r'^\s+\w+: \S', line)]   # "key: value"
    assert len(key_lines) == len(flat)
    for i in key_lines:
        assert lines[i - 1].strip().startswith('#'), f'undocumented parameter: {lines[i]!r}'
    assert load_config(PARAMS) is not None    # the CLIs read the same file


def test_rviz_config_matches_node_topics():
    data = yaml.safe_load(RVIZ.read_text())
    vm = data['Visualization Manager']
    displays = {d['Class']: d for d in vm['Displays']}
    for cls in ('Image', 'PointCloud2', 'MarkerArray', 'TF', 'Grid'):
        assert f'rviz_default_plugins/{cls}' in displays
    args = _launch_arguments()
    assert vm['Global Options']['Fixed Frame'] == args['fixed_frame'] == 'lidar'
    # the cloud display's topic is the one the launch file remaps onto cloud_topic
    cloud = displays['rviz_default_plugins/PointCloud2']['Topic']
    assert cloud['Value'] == args['cloud_topic'] == _launch_constant('RVIZ_CLOUD_TOPIC')
    assert cloud['Reliability Policy'] == 'Best Effort'
    # the fitter's outputs by relative names: RViz runs in the nodes' namespace
    assert displays['rviz_default_plugins/MarkerArray']['Topic']['Value'] == 'autolabel_fitter/markers'
    assert displays['rviz_default_plugins/Image']['Topic']['Value'] == 'autolabel_fitter/debug_image'
    tools = {t['Class']: t for t in vm['Tools']}
    click_default = {s.name: s.default for s in params.FITTER_PARAMS}['clicked_point_topic']
    assert tools['rviz_default_plugins/PublishPoint']['Topic']['Value'] == click_default


def test_ros_doc_lists_every_node_parameter_and_launch_argument():
    doc = (ROOT / 'docs' / 'ROS.md').read_text()
    # node and pipeline parameters with their current defaults (a config change must reach the doc)
    for s in params.fitter_specs():
        assert f'| `{s.name}` | `{params._yaml_value(s.default)}` |' in doc, s.name
    assert params.update_doc_tables(doc) == doc, 'run: python -m autolabel_ros.nodes.params --doc docs/ROS.md'
    for name in _launch_arguments():
        assert f'| `{name}` |' in doc, name
    for needle in ('colcon build --symlink-install', 'rosdep install', 'ros2 bag play --clock',
                   'use_sim_time:=true', 'Publish Point', 'QoS mismatch', 'TF missing'):
        assert needle in doc, needle


def test_rosdep_commands_skip_the_pip_keys_the_venv_installs():
    """package.xml's pip-only keys make `rosdep install` pip-install system-wide (refused by PEP 668 on
    Ubuntu 24.04, and torch would go beside the venv's): the documented commands skip exactly them."""
    xml = (ROOT / 'package.xml').read_text()
    keys = re.findall(r'<exec_depend>(python3-[a-z0-9-]+-pip)</exec_depend>', xml)
    # names rosdep's python.yaml defines (python3-torch-pip is none: rosdep stopped at it)
    assert sorted(keys) == ['python3-pytorch-pip', 'python3-rosbags-pip', 'python3-trimesh-pip']
    for doc in ('README.md', 'docs/ROS.md'):
        text = (ROOT / doc).read_text()
        skipped = re.findall(r'rosdep install [^\n]*\\?\n?[^\n]*--skip-keys "([^"]+)"', text)
        assert skipped and all(sorted(s.split()) == sorted(keys) for s in skipped), doc


def test_the_generator_command_line(tmp_path, capsys):
    """`--help` (or a misspelt option) printed the YAML, as if it were the request to generate it."""
    with pytest.raises(SystemExit) as e:
        params.main(['--help'])
    assert e.value.code == 0 and '--doc' in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        params.main(['--docs', 'x.md'])
    assert e.value.code == 2
    assert params.main([]) == 0 and capsys.readouterr().out == PARAMS.read_text()
    doc = tmp_path / 'ROS.md'
    doc.write_text((ROOT / 'docs' / 'ROS.md').read_text())
    assert params.main(['--doc', str(doc)]) == 0 and doc.read_text() == (ROOT / 'docs' / 'ROS.md').read_text()
