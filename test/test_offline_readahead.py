"""The frames read (and detected) on a thread while the parent of forked workers loads the models
(offline/readahead.py): how many it holds, that stopping it loses no frame, that a reading error
reaches the caller, and that its detections are the detector's own."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from autolabel_ros.core.types import SensorFrame
from autolabel_ros.io.bags import BagError
from autolabel_ros.offline.readahead import ReadAhead, frame_mb
from autolabel_ros.offline.worker import FrameLabeler, FrameTask


def _task(i: int, image=None, mb: float = 1.0) -> FrameTask:
    if image is None:
        image = np.zeros((int(mb * 1e6 / 3 / 1000), 1000, 3), np.uint8)    # ~mb MB
    frame = SensorFrame(image=image, K=np.eye(3), points=np.zeros((0, 4), np.float32), T_cam_lidar=np.eye(4))
    return FrameTask(index=i, name=str(i), stamp_ns=i, frame=frame, prompts=[])


def _stream(n=None, fail_at=None):
    for i in itertools.count() if n is None else range(n):
        if i == fail_at:
            raise BagError(f'frame {i}: unreadable')
        yield _task(i)


def test_holds_its_minimum_then_what_fits_in_its_budget():
    assert frame_mb(_task(0)) == pytest.approx(1.0, rel=0.01)
    tasks = _stream(20)
    reader = ReadAhead(None, tasks, detect=False, min_frames=3, budget_mb=2.5).start()
    assert reader.wait(30)                        # ends by itself: 3 frames, 3 MB >= 2.5 MB
    assert [t.index for t in reader.stop()] == [0, 1, 2]
    assert next(tasks).index == 3                 # the rest is left to the caller, none lost
    reader = ReadAhead(None, _stream(20), detect=False, min_frames=3, budget_mb=7.5).start()
    assert reader.wait(30) and len(reader.stop()) == 8     # more while they fit in the budget
    reader = ReadAhead(None, _stream(4), detect=False, min_frames=9, budget_mb=100).start()
    assert reader.wait(30) and len(reader.stop()) == 4     # the input ends first
    assert reader.cpu_s > 0


def test_stopped_while_reading_loses_no_frame():
    tasks = _stream()                             # endless: only stop() ends the thread
    reader = ReadAhead(None, tasks, detect=False, min_frames=10 ** 9, budget_mb=1e12).start()
    assert not reader.wait(0.2)
    read = reader.stop()
    assert len(read) >= 1 and [t.index for t in read] == list(range(len(read)))
    assert next(tasks).index == len(read)


def test_stopped_before_it_read_anything_leaves_every_frame_to_the_caller():
    reader = ReadAhead(None, itertools.chain([_task(0)], _stream(3)), detect=False, min_frames=5)
    reader.stop_reading()                         # the models loaded before the thread ran
    reader.start()
    assert reader.stop() == []
    assert [t.index for t in reader.tasks] == [0, 0, 1, 2]   # the caller goes on with its iterator


def test_a_reading_error_reaches_the_caller():
    reader = ReadAhead(None, _stream(10, fail_at=2), detect=False, min_frames=10).start()
    assert reader.wait(30)
    with pytest.raises(BagError, match='frame 2'):
        reader.stop()
    assert [t.index for t in reader.stop(raise_error=False)] == [0, 1]


def test_detections_are_those_of_the_detector(shared_data):
    """SSD-MobileNet (OpenCV) on real KITTI raw frames, built and run by the thread: the same boxes as
    the detector run here afterwards, and each frame's cost is known before any worker gets it."""
    from autolabel_ros.config import load_config, to_dict
    from autolabel_ros.io.kitti import read_image

    pngs = sorted((shared_data / 'kitti_raw' / '2011_09_26_excerpt' / 'image_02' / 'data').glob('*.png'))[:3]
    tasks = [_task(i, read_image(p)) for i, p in enumerate(pngs)]
    for t in tasks:
        t.prompts = None                          # the detector's prompts
    labeler = FrameLabeler(to_dict(load_config(None)), torch_threads=1)
    assert labeler.detects_without_torch()
    reader = ReadAhead(labeler, iter(tasks), detect=True, min_frames=3, budget_mb=0).start()
    assert reader.wait(120)
    read = reader.stop()
    assert [t.index for t in read] == [0, 1, 2]
    assert sum(len(t.detections) for t in read) > 0
    for t in read:
        again = labeler._detector.detect(t.frame.image)
        assert [p.box.tolist() for p in t.detections] == [p.box.tolist() for p in again]
        assert t.detect_s > 0
