"""The order local workers get the frames in (offline/schedule.py): the dearest first within the
look-ahead, the first ones at once, unknown costs in reading order, bounded memory."""
from __future__ import annotations

import numpy as np

from autolabel_ros.core.types import Prompt
from autolabel_ros.offline.schedule import dearest_first, dearest_order, prompt_count
from autolabel_ros.offline.worker import FrameTask

COSTS = [5, 3, 9, 1, 7, 2, 8, 4, 6, 0]


def test_dearest_first_within_the_look_ahead():
    order = list(dearest_first(range(10), COSTS.__getitem__, lookahead=4, in_order=1))
    assert sorted(order) == list(range(10))
    assert order[0] == 0                                   # handed out as soon as read
    assert [COSTS[i] for i in order[-4:]] == [3, 2, 1, 0]  # the end: the cheapest, dearest first
    # a look-ahead as long as the stream fills two frames per one handed out; once every frame is
    # read, the rest go dearest first (longest processing time first)
    assert [COSTS[i] for i in dearest_first(range(10), COSTS.__getitem__, lookahead=10)] == \
        [5, 9, 7, 8, 6, 4, 3, 2, 1, 0]


def test_reads_ahead_at_most_the_look_ahead():
    read, held = [], []

    def source():
        for i in range(10):
            read.append(i)
            yield i

    for k, _ in enumerate(dearest_first(source(), COSTS.__getitem__, lookahead=3, in_order=2)):
        held.append(len(read) - k - 1)
        if k < 2:
            assert len(read) == k + 1           # the workers' first frames wait for no read-ahead
    assert max(held) <= 3 and len(read) == 10


def test_unknown_costs_keep_the_order_and_go_first():
    costs = [None, 2, None, 5, None]
    order = list(dearest_first(range(5), costs.__getitem__, lookahead=5))
    assert order == [0, 2, 4, 3, 1]
    assert list(dearest_first(range(6), lambda i: None, lookahead=3)) == list(range(6))
    assert list(dearest_first([], lambda i: 1, lookahead=3)) == []


def test_prompt_count_of_a_task():
    def task(**kw):
        return FrameTask(index=0, name='0', stamp_ns=0, frame=None, **kw)

    box = Prompt(id=0, box=np.array([0.0, 0.0, 10.0, 10.0]))
    assert prompt_count(task(prompts=[box, box])) == 2
    assert prompt_count(task(prompts=None)) is None
    assert prompt_count(task(prompts=None, detections=[box])) == 1


def test_frames_read_ahead_all_go_dearest_first():
    costs = [None, 2, 5, 2, None, 9]
    assert dearest_order(list(range(6)), costs.__getitem__) == [0, 4, 5, 2, 1, 3]
    assert dearest_order([], costs.__getitem__) == []


def test_a_phase_timed_on_another_thread_counts_that_threads_cpu():
    """The frames read while the models load (offline/readahead.py) are timed on the reading thread:
    its phase holds its own CPU seconds, not those of the main thread loading the models meanwhile."""
    import threading
    import time

    from autolabel_ros.offline.phases import PhaseClock

    clock = PhaseClock()
    started = threading.Event()

    def idle_phase():
        with clock('label.read'):
            started.set()
            time.sleep(0.5)

    reader = threading.Thread(target=idle_phase)
    reader.start()
    started.wait()
    end = time.thread_time() + 0.3
    while time.thread_time() < end:      # the main thread busy meanwhile
        pass
    reader.join()
    assert clock.wall['label.read'] >= 0.5 and clock.cpu['label.read'] < 0.1
    with clock('main'):                  # on the main thread: the process' CPU seconds
        end = time.thread_time() + 0.1
        while time.thread_time() < end:
            pass
    assert clock.cpu['main'] >= 0.1
