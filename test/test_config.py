"""The one YAML schema shared by nodes, CLIs and benchmarks."""
import pytest

from autolabel_ros.config import (ConfigError, from_flat_dict, load_config, to_flat_dict)


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
