"""A simulator bag labelled end to end under a real ROS 2, compared with the offline tool.

``ros2 bag play --clock`` (slowed down) feeds the launch file (detector:=external with the
simulator's ground-truth 2D boxes as prompts, use_sim_time:=true); this test's rclpy subscriber
records the fitter's Detection3DArray. ``autolabel-bag`` labels the same bag with the same config;
both must give the same labels within float noise. The fitter's last statistics line says what
arrived per topic (nothing may be lost in transport) and how many frames the one-slot queue dropped
(labelled + dropped = frames). Skipped with the reason where no ROS 2 is sourced.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from ros_harness import ROOT, SKIP_REASON, Peer, RosProcess

pytestmark = [pytest.mark.ros, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or '')]

FRAMES = int(os.environ.get('AUTOLABEL_ROS_BAG_FRAMES', '6'))
RATE = float(os.environ.get('AUTOLABEL_ROS_BAG_RATE', '0.05'))     # 1/20 of real time
SEED = 1
SEGMENTER = os.environ.get('AUTOLABEL_ROS_BAG_SEGMENTER', 'box')
TOPICS = ['/camera/image_raw', '/camera/camera_info', '/lidar/points', '/ground_truth/detections_2d']


def _config(tmp_path):
    """The package's params YAML, read by the node and by autolabel-bag. SEGMENTER=box (default) puts box
    masks in SAM's place and shortens the fit, so CI stays within minutes; mobile_sam is the full run."""
    data = yaml.safe_load((ROOT / 'config' / 'autolabel.yaml').read_text())
    p = data['/**']['ros__parameters']
    p['device'] = 'cpu'
    p['segmenter']['model'] = SEGMENTER
    if SEGMENTER == 'box':
        p['fit'].update(iterations=20, prune_after=8, mask_from=8)
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope='module')
def sim_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp('sim')
    subprocess.run([sys.executable, '-m', 'autolabel_ros.cli.sim', '--out', str(out), '--frames', str(FRAMES),
                    '--seed', str(SEED), '--quiet'], check=True, cwd=ROOT, timeout=900)
    return out / 'bag'


def _boxes(det_array) -> dict:
    out = {}
    for d in det_array.detections:
        c, s, q = d.bbox.center.position, d.bbox.size, d.bbox.center.orientation
        out[int(d.id)] = np.array([c.x, c.y, c.z, s.x, s.y, s.z, 2 * np.arctan2(q.z, q.w)])
    return out


def _offline_labels(out_dir) -> dict:
    """stamp -> {id: box} of the label bag's /autolabel/detections_3d."""
    from rosbags.rosbag2 import Reader

    from autolabel_ros.io import messages as M
    from autolabel_ros.io.ros_types import get_typestore

    ts = get_typestore()
    got = {}
    with Reader(out_dir / 'labels.bag') as r:
        conns = [c for c in r.connections if c.topic == '/autolabel/detections_3d']
        for c, _, raw in r.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, c.msgtype)
            got[M.header_stamp_ns(msg)] = _boxes(msg)
    return got


def _wait_until_quiet(peer, topic, quiet_s: float, timeout: float):
    """Until no new message came on ``topic`` for ``quiet_s`` (the last fit has ended)."""
    end = time.monotonic() + timeout
    n, since = -1, time.monotonic()
    while time.monotonic() < end:
        k = len(peer.messages(topic))
        if k != n:
            n, since = k, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.5)


def test_played_bag_labelled_end_to_end_like_the_offline_tool(ros_ws, tmp_path, sim_bag):
    from vision_msgs.msg import Detection3DArray

    from autolabel_ros.io import messages as M

    env = ros_ws['env']
    params = _config(tmp_path)
    launch = RosProcess(['ros2', 'launch', 'autolabel_ros', 'autolabel.launch.py', 'rviz:=false',
                         'detector:=external', 'detections_topic:=/ground_truth/detections_2d',
                         'use_sim_time:=true', f'params_file:={params}'], env, tmp_path / 'launch.log')
    peer = Peer('bag_recorder')
    peer.subscribe(Detection3DArray, '/autolabel_fitter/detections_3d')
    play = None
    try:
        launch.wait_for(r'Autolabeler ready in', 240)
        launch.wait_for(r'reliability auto: waiting for a publisher', 30)
        # --delay: the fitter subscribes once it has seen the player's publishers (reliability auto)
        play = RosProcess(['ros2', 'bag', 'play', '--clock', '-r', str(RATE), '--delay', '3', str(sim_bag)],
                          env, tmp_path / 'play.log')
        assert play.proc.wait(60 + FRAMES * 0.1 / RATE * 3) == 0, play.output[-3000:]
        _wait_until_quiet(peer, '/autolabel_fitter/detections_3d', quiet_s=20.0, timeout=300.0)
    finally:
        peer.close()
        code = launch.stop(timeout=40)
        if play is not None and play.proc.poll() is None:
            play.stop()
    log = launch.output
    assert code == 0, log[-4000:]
    m = re.search(r'final: (\d+) frames processed, (\d+) dropped by the one-slot queue; received (.*?); '
                  r'(\d+) synchronized', log)
    assert m, log[-4000:]
    processed, dropped, synced = int(m.group(1)), int(m.group(2)), int(m.group(4))
    received = {t: int(n) for t, n in re.findall(r'(\S+) (\d+)', m.group(3))}
    assert received == {t: FRAMES for t in TOPICS}, (received, log[-3000:])      # nothing lost in transport
    assert synced == FRAMES and processed + dropped == FRAMES
    node = {M.header_stamp_ns(msg): _boxes(msg) for msg in peer.messages('/autolabel_fitter/detections_3d')}
    assert len(node) == processed
    # the offline tool on the same bag and config
    out = tmp_path / 'offline'
    subprocess.run([sys.executable, '-m', 'autolabel_ros.cli.bag', str(sim_bag), '--out', str(out),
                    '--config', str(params), '--prompts', 'topic:/ground_truth/detections_2d',
                    '--no-copy-sensors', '--quiet'], check=True, cwd=ROOT, timeout=1200)
    offline = _offline_labels(out)
    assert len(offline) == FRAMES
    compared = 0
    for stamp, boxes in node.items():
        near = min(offline, key=lambda s: abs(s - stamp))
        assert abs(near - stamp) < 50_000_000
        ref = offline[near]
        assert sorted(boxes) == sorted(ref), (stamp, sorted(boxes), sorted(ref))
        for i in boxes:
            np.testing.assert_allclose(boxes[i][:6], ref[i][:6], atol=0.05, err_msg=f'frame {stamp} id {i}')
            dyaw = (boxes[i][6] - ref[i][6] + np.pi) % (2 * np.pi) - np.pi
            assert abs(dyaw) < 0.05, (stamp, i, dyaw)
            compared += 1
    assert compared > 0
    summary = {'frames': FRAMES, 'rate': RATE, 'processed': processed, 'dropped': dropped,
               'received': received, 'labels_compared': compared}
    (tmp_path / 'e2e.json').write_text(json.dumps(summary))
    print('end-to-end:', summary)
