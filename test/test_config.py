"""The one YAML schema shared by nodes, CLIs and benchmarks."""
import re

import pytest

from autolabel_ros.config import (AutolabelConfig, ConfigError, check_value, from_flat_dict, load_config,
                                  schema, to_flat_dict)


def test_yaml_and_ros_layout_round_trip(tmp_path):
    f = tmp_path / 'c.yaml'
    f.write_text('fit:\n  iterations: 42\n  energies: [lidar]\nverify:\n  min_mask_iou: 0.5\n')
    cfg = load_config(f)
    assert cfg.fit.iterations == 42 and cfg.fit.energies == ['lidar'] and cfg.verify.min_mask_iou == 0.5
    ros = tmp_path / 'r.yaml'
    ros.write_text('/**:\n  ros__parameters:\n    image_topic: /cam\n    fit:\n      iterations: 7\n')
    assert load_config(ros).fit.iterations == 7
    flat = to_flat_dict(cfg)
    assert flat['fit.iterations'] == 42
    assert from_flat_dict(flat) == cfg


def test_bad_keys_and_values_name_the_key(tmp_path):
    f = tmp_path / 'c.yaml'
    f.write_text('fit:\n  iteratons: 3\n')
    with pytest.raises(ConfigError, match="fit.iteratons"):
        load_config(f)
    f.write_text('fit:\n  iterations: many\n')
    with pytest.raises(ConfigError, match="fit.iterations"):
        load_config(f)
    with pytest.raises(ConfigError, match='not found'):
        load_config(tmp_path / 'missing.yaml')


BAD_VALUES = [
    # (YAML of the plain layout, key named, what the message says is allowed)
    ('fit:\n  energies: [mask, lidr]\n', 'fit.energies',
     "got 'lidr'.*allowed: a non-empty list of mask, lidar, ground"),
    ('fit:\n  energies: []\n', 'fit.energies', 'allowed: a non-empty list of mask, lidar, ground'),
    ('fit:\n  sdf_mode: foo\n', 'fit.sdf_mode', "got 'foo'; allowed: one of decode, shared"),
    ('fit:\n  iterations: -1\n', 'fit.iterations', 'got -1; allowed: an integer >= 0'),
    ('fit:\n  iterations: -5\n', 'fit.iterations', 'got -5; allowed: an integer >= 0'),
    ('fit:\n  iterations: true\n', 'fit.iterations', 'got True; allowed: an integer >= 0'),
    ('fit:\n  iterations: 2.5\n', 'fit.iterations', 'got 2.5; allowed: an integer >= 0'),
    ('fit:\n  keep_hypotheses: 0\n', 'fit.keep_hypotheses', 'got 0; allowed: an integer >= 1'),
    ('fit:\n  yaw_hypotheses: 0\n', 'fit.yaw_hypotheses', 'got 0; allowed: an integer >= 1'),
    ('fit:\n  crop_size: 0\n', 'fit.crop_size', r'got 0; allowed: an integer in \[4, 512\]'),
    ('fit:\n  zeta: .nan\n', 'fit.zeta', 'allowed: a number >= 1e-06'),
    ('fit:\n  log_scales: 3\n', 'fit.log_scales', 'allowed: true or false'),
    ('verify:\n  min_mask_iou: 1.5\n', 'verify.min_mask_iou', r'allowed: a number in \[0.0, 1.0\]'),
    ('segmenter:\n  model: sam3\n', 'segmenter.model', 'allowed: one of mobile_sam, vit_b'),
    ('device: 3\n', 'device', 'allowed: a string'),
    ('fitt:\n  iterations: 3\n', 'fitt', 'unknown key; known keys: device, prior, seed, .*segmenter'),
    ('fit: 3\n', 'fit', 'expected a mapping of keys'),
    # checked when the file is read (each frame failed once the models loaded: exit 1, not 2)
    ('device: tpu\n', 'device', "got 'tpu'; allowed: auto, cpu, cuda or cuda:N"),
    ('device: cuda:x\n', 'device', "got 'cuda:x'; allowed: auto, cpu, cuda or cuda:N"),
    ('prior: /nonexistent/prior.npz\n', 'prior', '/nonexistent/prior.npz: file not found'),
    ('css:\n  weights: /nonexistent/css.pt\n', 'css.weights', '/nonexistent/css.pt: file not found'),
    ('shape:\n  deepsdf: no_such.pt\n', 'shape.deepsdf', 'no_such.pt: file not found'),
    # YAML keeps the last of two equal keys without a word: the first one was silently dropped
    ('seed: 1\nseed: 2\n', 'seed', r'given twice \(line [25]\)'),
    ('fit:\n  iterations: 10\n  iterations: 20\n', 'fit.iterations', r'given twice \(line [36]\)'),
]


def test_named_files_that_exist_and_device_spellings_are_accepted(tmp_path):
    (tmp_path / 'p.npz').write_bytes(b'x')
    for text in (f'prior: {tmp_path / "p.npz"}\n', 'prior: default\n', 'device: CUDA:1\n', 'device: cpu\n',
                 "css:\n  weights: ''\n"):
        (tmp_path / 'c.yaml').write_text(text)
        load_config(tmp_path / 'c.yaml')


def _ros_layout(plain: str) -> str:
    """The same keys in the ROS parameter layout (``/**: ros__parameters:``), beside a node parameter."""
    body = ''.join('    ' + line + '\n' for line in plain.splitlines())
    return '/**:\n  ros__parameters:\n    qos_depth: 5\n' + body


@pytest.mark.parametrize('text,key,allowed', BAD_VALUES)
@pytest.mark.parametrize('layout', ['plain', 'ros'])
def test_every_bad_value_is_one_error_naming_the_file_key_and_what_is_allowed(tmp_path, text, key, allowed,
                                                                             layout):
    f = tmp_path / 'c.yaml'
    f.write_text(text if layout == 'plain' else _ros_layout(text))
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert '\n' not in msg and msg.startswith(f'{f}: {key}: '), msg
    if layout == 'ros' and key == 'fitt':
        assert 'unknown section; known sections: segmenter, detector, fit, ground, verify' in msg
    else:
        assert re.search(allowed, msg), msg


def test_ros_layout_keeps_node_parameters_and_dotted_names(tmp_path):
    f = tmp_path / 'r.yaml'
    f.write_text('/**:\n  ros__parameters:\n    image_topic: /cam\n    fit.iterations: 9\n'
                 '    fit:\n      zeta: 3.0\n')
    cfg = load_config(f)
    assert cfg.fit.iterations == 9 and cfg.fit.zeta == 3.0
    f.write_text('/**:\n  ros__parameters:\n    fitt.iterations: 9\n')
    with pytest.raises(ConfigError, match=r'fitt.iterations: unknown section'):
        load_config(f)


def test_schema_rows_cover_every_key_with_help():
    rows = schema()
    assert [r.name for r in rows] == list(to_flat_dict(AutolabelConfig()))
    assert all(r.help for r in rows)
    by = {r.name: r for r in rows}
    assert by['fit.sdf_mode'].choices == ('decode', 'shared') and by['fit.iterations'].min == 0
    assert by['fit.energies'].items == ('mask', 'lidar', 'ground', 'nocs', 'surfel3d')
    # the defaults satisfy their own schema
    for r in rows:
        assert check_value(r, r.default) == r.default, r.name


def test_cli_reports_a_bad_config_in_one_line_with_exit_2(tmp_path, capsys):
    from autolabel_ros.cli.kitti import main
    f = tmp_path / 'c.yaml'
    f.write_text('fit:\n  sdf_mode: foo\n')
    rc = main(['--data', str(tmp_path), '--out', str(tmp_path / 'p'), '--config', str(f), '--quiet'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and '\n' not in err
    assert err == (f"autolabel-kitti: config error: {f}: fit.sdf_mode: got 'foo'; "
                   "allowed: one of decode, shared")


def test_node_parameters_are_declared_once_in_the_same_schema():
    """The nodes' own parameters are fields of NodeSettings declared with config.param: the descriptor
    specs, their defaults and the validated settings cannot drift apart."""
    from dataclasses import fields

    from autolabel_ros.nodes import params
    declared = [f.name for f in fields(params.NodeSettings) if 'help' in f.metadata]
    assert [s.name for s in params.FITTER_PARAMS] == declared
    assert [s.name for s in params.COMMON_PARAMS] == list(params.COMMON_NAMES)
    specs = params.fitter_specs()
    cfg, st = params.validate_parameters({s.name: s.default for s in specs}, specs, 'n')
    assert cfg == AutolabelConfig()
    assert all(getattr(st, s.name) == s.default for s in params.FITTER_PARAMS)
    by = {s.name: s for s in specs}
    assert by['qos_depth'].min == 1 and by['fit.crop_size'].min == 4 and by['fit.sdf_mode'].choices


@pytest.mark.parametrize('layout', ['plain', 'ros'])
def test_bag_cli_reports_a_bad_config_in_one_line_with_exit_2_before_writing(tmp_path, capsys, layout):
    from autolabel_ros.cli.bag import main
    f = tmp_path / 'c.yaml'
    text = 'fit:\n  keep_hypotheses: 0\n'
    f.write_text(text if layout == 'plain' else _ros_layout(text))
    rc = main([str(tmp_path), '--out', str(tmp_path / 'out'), '--config', str(f), '--quiet'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not (tmp_path / 'out').exists()
    assert err == f'autolabel-bag: config error: {f}: fit.keep_hypotheses: got 0; allowed: an integer >= 1'
