"""The detector node (SSD-MobileNet, the launch default) under a real ROS 2: simulator images in,
Detection2DArrays with the image's header out, its latency in the statistics line; and its
lifecycle (configure builds the detector, activate subscribes). Skipped with the reason where no
ROS 2 is sourced."""
from __future__ import annotations

import re
import time

import pytest
from ros_harness import SKIP_REASON, Peer, RosProcess, run_node_cmd

pytestmark = [pytest.mark.ros, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or '')]


def test_ssd_detector_node_answers_each_image_with_its_header(ros_ws, tmp_path):
    from lifecycle_msgs.srv import GetState
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from autolabel_ros.io import messages as M
    from autolabel_ros.nodes.common import rclpy_factory
    from autolabel_ros.sim import simulate_drive

    frames = list(simulate_drive(3, seed=100000))      # a scene where SSD scores a car above 0.4
    params = {'device': 'cpu', 'detector.backend': 'ssd_mobilenet'}
    proc = RosProcess(run_node_cmd('detector_node', params=params,
                                   remaps={'image': '/d/image', 'detections': '/d/detections'}),
                      ros_ws['env'], tmp_path / 'detector.log')
    peer = Peer('detector_peer')
    try:
        peer.subscribe(Detection2DArray, '/d/detections')
        pub = peer.node.create_publisher(Image, '/d/image', 10)
        proc.wait_for(r"detector 'ssd_mobilenet' ready in", 120)
        peer.wait_for(lambda: pub.get_subscription_count() > 0, 30, 'the detector to subscribe')
        state = peer.call(GetState, '/autolabel_detector/get_state', GetState.Request()).current_state.label
        assert state == 'active'
        f = rclpy_factory()
        stamps = []
        for sf in frames:
            stamp = peer.node.get_clock().now().nanoseconds     # a live camera: latency = now - stamp
            pub.publish(M.make_image(sf.frame.image, stamp, 'camera', f))
            stamps.append(stamp)
            peer.wait_for(lambda s=stamp: [m for m in peer.messages('/d/detections')
                                           if M.header_stamp_ns(m) == s], 60, 'detections of the image')
        got = {M.header_stamp_ns(m): m for m in peer.messages('/d/detections')}
        assert sorted(got) == sorted(stamps)
        assert all(m.header.frame_id == 'camera' for m in got.values())
        n_boxes = sum(len(m.detections) for m in got.values())
        assert n_boxes >= 1                       # the simulator's cars are found
        for m in got.values():
            assert len({d.id for d in m.detections}) == len(m.detections)
        line = proc.wait_for(r'\d+ frame\(s\): processing mean ([\d.]+) s .* latency mean ([\d.]+) s', 15)
        print(f'detector: {n_boxes} boxes in {len(stamps)} images; processing mean {line.group(1)} s, '
              f'latency mean {line.group(2)} s')
        time.sleep(0.5)
    finally:
        peer.close()
        code = proc.stop()
    assert code == 0, proc.output[-3000:]
    assert re.search(r'final: 3 frames processed', proc.output), proc.output[-2000:]
