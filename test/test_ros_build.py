"""Under a real ROS 2: colcon installs the package (launch/, config/, executables), the launch file's
arguments and conditions, the params file (loaded; a bad value: one FATAL line, exit code 2).
Skipped with the reason where no ROS 2 is sourced."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
import yaml
from ros_harness import SKIP_REASON, Peer, RosProcess, python_of_script, ros2, run_node_cmd

pytestmark = [pytest.mark.ros, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or '')]


def test_colcon_installs_launch_config_and_executables(ros_ws):
    share = ros_ws['install'] / 'share' / 'autolabel_ros'
    for rel in ('launch/autolabel.launch.py', 'config/autolabel.yaml', 'config/autolabel.rviz',
                'config/cyclonedds.xml', 'package.xml'):
        assert (share / rel).is_file(), rel
    res = ros2('pkg', 'executables', 'autolabel_ros', env=ros_ws['env'])
    assert res.returncode == 0, res.stderr
    exes = {line.split()[1] for line in res.stdout.splitlines() if line.strip()}
    assert {'fitter_node', 'detector_node'} <= exes
    res = ros2('pkg', 'prefix', 'autolabel_ros', env=ros_ws['env'])
    assert res.stdout.strip() == str(ros_ws['install'])
    script = ros_ws['install'] / 'lib' / 'autolabel_ros' / 'fitter_node'
    assert script.is_file() and python_of_script(script)


def test_launch_arguments_listed(ros_ws):
    res = ros2('launch', 'autolabel_ros', 'autolabel.launch.py', '--show-args', env=ros_ws['env'])
    assert res.returncode == 0, res.stderr
    for name in ('namespace', 'image_topic', 'camera_info_topic', 'cloud_topic', 'detections_topic',
                 'detector', 'use_sim_time', 'autostart', 'rviz', 'fixed_frame', 'log_level', 'params_file',
                 'rviz_config', 'dds_config'):
        assert f"'{name}':" in res.stdout, name


def test_launch_with_a_params_file_that_does_not_exist_stops_with_one_line(ros_ws, tmp_path):
    """launch_ros itself only warns about a params_file that is no file and starts the nodes with every
    default; the launch file stops before any node starts."""
    missing = tmp_path / 'autolabel_typo.yaml'
    res = ros2('launch', 'autolabel_ros', 'autolabel.launch.py', 'rviz:=false', f'params_file:={missing}',
               env=ros_ws['env'], timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-2000:]
    assert f'params_file:={missing}: no such file' in out and 'process started' not in out, out[-2000:]


def test_launch_with_rviz_not_installed_stops_before_any_node(ros_ws, tmp_path):
    """rviz:=true (the default) where RViz is not installed: launch_ros failed on the rviz2 node after
    the fitter had started and left the fitter running without the launch; the launch file stops first."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix('rviz2')
        pytest.skip('rviz2 is installed here')
    except PackageNotFoundError:
        pass
    res = ros2('launch', 'autolabel_ros', 'autolabel.launch.py', 'detector:=none', 'autostart:=false',
               env=ros_ws['env'], timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-2000:]
    assert "rviz:=true but RViz (package 'rviz2') is not installed" in out, out[-2000:]
    assert 'process started' not in out, out[-2000:]


def _node_names(peer: Peer) -> set:
    return {(ns.rstrip('/') + '/' + n) for n, ns in peer.node.get_node_names_and_namespaces()}


@pytest.mark.parametrize('detector,expect_detector,sync,fused', [
    ('none', False, False, False), ('external', False, True, False), ('ssd_mobilenet', True, True, False),
    (None, True, True, True)])
def test_launch_conditions_namespace_and_log_level(ros_ws, tmp_path, detector, expect_detector, sync, fused):
    """detector:=none/external start no detector node; sync_detections follows (false only for none);
    the default (no detector:=) is fused: the detector node and proposals.lidar on the fitter;
    namespace:= puts the nodes under it; log_level reaches the nodes as a ROS argument; autostart:=false
    leaves the lifecycle nodes unconfigured (so no model loads here)."""
    from lifecycle_msgs.srv import GetState
    from rcl_interfaces.srv import GetParameters

    launch = RosProcess(['ros2', 'launch', 'autolabel_ros', 'autolabel.launch.py', 'rviz:=false',
                         'autostart:=false', 'namespace:=t1', 'log_level:=debug']
                        + ([f'detector:={detector}'] if detector else []),
                        ros_ws['env'], tmp_path / 'launch.log')
    peer = Peer('launch_checker')
    try:
        expected = {'/t1/autolabel_fitter'} | ({'/t1/autolabel_detector'} if expect_detector else set())
        peer.wait_for(lambda: expected <= _node_names(peer), 60, f'nodes {expected}')
        time.sleep(1.0)
        names = _node_names(peer)
        assert ('/t1/autolabel_detector' in names) == expect_detector, names
        req = GetParameters.Request(names=['sync_detections', 'autostart', 'proposals.lidar'])
        res = peer.call(GetParameters, '/t1/autolabel_fitter/get_parameters', req)
        assert [v.bool_value for v in res.values] == [sync, False, fused]
        state = peer.call(GetState, '/t1/autolabel_fitter/get_state', GetState.Request())
        assert state.current_state.label == 'unconfigured'
        launch.wait_for(r'\[DEBUG\]', 30)          # --log-level debug reached the nodes
    finally:
        peer.close()
        code = launch.stop()
    assert code == 0, launch.output[-3000:]


def test_ctrl_c_repeated_until_the_launch_ends_exits_cleanly(ros_ws, tmp_path):
    """Ctrl-C reaches `ros2 launch` only through launch's own signal handling (the launch file's
    keep_ctrl_c_out_of_the_launch_loop). SIGINT every 20 ms until the node has ended, with
    debug-level node output keeping its event loop busy: with Python's default handler each signal
    also raised a KeyboardInterrupt at a random point of that loop (7 of 10 such runs ended with
    exit code -2 or an abort; rarely one lost a wakeup and hung without forwarding SIGINT, the CI
    failure of the test above). Now: exit code 0 within the stop bound, the node stopped cleanly."""
    launch = RosProcess(['ros2', 'launch', 'autolabel_ros', 'autolabel.launch.py', 'rviz:=false',
                         'autostart:=false', 'namespace:=t2', 'detector:=none', 'log_level:=debug'],
                        ros_ws['env'], tmp_path / 'launch.log')
    peer = Peer('ctrl_c_checker')
    try:
        peer.wait_for(lambda: '/t2/autolabel_fitter' in _node_names(peer), 60, 'the fitter node')
    finally:
        peer.close()
    end = time.monotonic() + 20.0
    sent = 0
    # until launch reports the node's end (after that only the interpreter's exit remains, where
    # Python itself restores the default handler)
    while (launch.proc.poll() is None and time.monotonic() < end
           and 'process has finished cleanly' not in launch.output):
        os.kill(launch.proc.pid, signal.SIGINT)
        sent += 1
        time.sleep(0.02)
    try:
        code = launch.proc.wait(max(0.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        code = launch.stop(timeout=0.1)
    out = launch.output
    assert sent > 1 and code == 0, f'{sent} SIGINTs, exit code {code}:\n{out[-3000:]}'
    assert "sending signal 'SIGINT' to process[fitter_node-1]" in out, out[-3000:]
    assert 'process has finished cleanly' in out and 'Traceback' not in out, out[-3000:]


def test_params_file_loads_and_a_bad_value_is_one_fatal_line(ros_ws, tmp_path):
    from rcl_interfaces.srv import GetParameters

    good = tmp_path / 'good.yaml'
    good.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'slop': 0.25, 'fit': {'iterations': 7,
                                                                                   'iteratoins': 9},
                                                                'autostart': False}}}))
    node = RosProcess(run_node_cmd('fitter_node', [good]), ros_ws['env'], tmp_path / 'good.log')
    peer = Peer('params_checker')
    try:
        peer.wait_for(lambda: '/autolabel_fitter' in _node_names(peer), 60, 'the fitter node')
        res = peer.call(GetParameters, '/autolabel_fitter/get_parameters',
                        GetParameters.Request(names=['slop', 'fit.iterations', 'queue_size']))
        assert res.values[0].double_value == 0.25 and res.values[1].integer_value == 7
        assert res.values[2].integer_value == 30          # untouched default
        # ROS ignores an undeclared name without a word: the node names it, with the closest declared one
        node.wait_for(r'\[WARN\] .*ignored: parameter\(s\) that no autolabel_ros node declares: '
                      r'fit\.iteratoins \(did you mean fit\.iterations\?\)', 10)
    finally:
        peer.close()
        assert node.stop() == 0, node.output[-3000:]
    for i, (params, needle) in enumerate([({'queue_size': 0}, "parameter 'queue_size'"),
                                          ({'reliability': 'sometimes'}, "reliability: got 'sometimes'"),
                                          ({'slop': 'abc'}, "parameter 'slop'")]):
        bad = tmp_path / f'bad{i}.yaml'
        bad.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}))
        res = RosProcess(run_node_cmd('fitter_node', [bad]), ros_ws['env'], tmp_path / f'bad{i}.log')
        code = res.proc.wait(60)
        out = res.output
        fatal = [line for line in out.splitlines() if line.startswith('[FATAL]')]
        assert code == 2, out[-2000:]
        assert len(fatal) == 1 and needle in fatal[0], out[-2000:]
        assert 'Traceback' not in out, out[-2000:]
        assert re.search(r'autolabel_fitter', fatal[0])
    # a params file rcl cannot parse fails in rclpy.init, before any node exists: one FATAL line too
    broken = tmp_path / 'broken.yaml'
    broken.write_text('/**:\n  ros__parameters:\n    slop: [0.1,\n')
    res = RosProcess(run_node_cmd('fitter_node', [broken]), ros_ws['env'], tmp_path / 'broken.log')
    code = res.proc.wait(60)
    out = res.output
    fatal = [line for line in out.splitlines() if line.startswith('[FATAL]')]
    assert code == 2 and 'Traceback' not in out, out[-2000:]
    assert len(fatal) == 1, out[-2000:]
    assert "cannot start ROS: failed to initialize rcl: Couldn't parse params file" in fatal[0]
    assert '.c:' not in fatal[0], fatal[0]


def test_a_model_that_cannot_load_is_one_fatal_line(ros_ws, tmp_path):
    """A configure that fails at autostart (a torchvision detector without its weights file) is the
    one FATAL line, exit code 2; it was also logged as an ERROR line before it."""
    res = RosProcess(run_node_cmd('detector_node', params={'detector.backend': 'fasterrcnn'}), ros_ws['env'],
                     tmp_path / 'detector.log')
    code = res.proc.wait(60)
    out = res.output
    lines = [line for line in out.splitlines() if 'needs detector.weights' in line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith('[FATAL] autolabel_detector: '), out[-2000:]
    assert 'Traceback' not in out, out[-2000:]


def test_an_input_published_with_another_type_is_one_warning(ros_ws, tmp_path):
    """compressed_image: true on a raw Image topic: DDS matches nothing and the node would only count
    "nothing received"; it names the two types and the parameter once the publisher is seen."""
    from sensor_msgs.msg import Image

    cmd = run_node_cmd('detector_node', params={'detector.backend': 'none', 'compressed_image': True},
                       remaps={'image': '/typed/image'})
    node = RosProcess(cmd, ros_ws['env'], tmp_path / 'detector.log')
    peer = Peer('type_checker')
    try:
        pub = peer.node.create_publisher(Image, '/typed/image', 10)
        node.wait_for(r'\[WARN\] .*/typed/image is published as sensor_msgs/msg/Image, but this node '
                      r'subscribes sensor_msgs/msg/CompressedImage: set compressed_image: false', 60)
        assert pub.get_subscription_count() == 0
    finally:
        peer.close()
        assert node.stop() == 0, node.output[-2000:]


def test_ctrl_c_twice_in_quick_succession_exits_cleanly(ros_ws, tmp_path):
    """A terminal's Ctrl-C reaches a launched node twice: directly (the whole process group) and as
    forwarded by `ros2 launch`. A second SIGINT while the node ended killed it by the signal (launch:
    "process has died [... exit code -2]") once the interpreter's teardown had reset SIGINT; and its
    last statistics line, logged while the shut-down lifecycle node still held /rosout, added "Failed
    to publish log message to rosout". Now: exit code 0, the final line, no other."""
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'device': 'cpu', 'segmenter': {'model': 'box'}, 'warm_up': False}}}))
    exe = ros_ws['install'] / 'lib' / 'autolabel_ros' / 'fitter_node'
    node = RosProcess([str(exe), '--ros-args', '--params-file', str(params)], ros_ws['env'],
                      tmp_path / 'node.log')
    try:
        node.wait_for(r'reliability auto: waiting for a publisher', 120)
        time.sleep(1.0)               # spinning (that line comes from activate, just before the spin)
        for _ in range(2):
            os.kill(node.proc.pid, signal.SIGINT)
            time.sleep(0.05)
        code = node.proc.wait(20)
    finally:
        node.stop(timeout=5)
    out = node.output
    assert code == 0, f'exit code {code}:\n{out[-2000:]}'
    assert re.search(r'\[INFO\] \[[\d.]+\] \[autolabel_fitter\]: final: 0 frames processed', out), out[-2000:]
    assert 'Failed to publish' not in out and 'Traceback' not in out, out[-2000:]
