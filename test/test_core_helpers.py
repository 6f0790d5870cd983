"""The shared helpers of core/: chunked resumable .npz generation and the training loop's clock."""
import time

import numpy as np

from autolabel_ros.core.npz_chunks import write_npz_chunks
from autolabel_ros.core.train_clock import TrainClock


def test_chunks_are_written_once_and_a_rerun_only_fills_the_gaps(tmp_path):
    built = []

    def build(part):
        built.append(list(part))
        rows = [k for k in part if k % 4]          # item 4 gives nothing: chunk [4] has no file
        return {'x': np.array(rows, float), 'y': np.array(rows) * 2} if rows else {}

    def name(part):
        return f'c_{part[0]}_{len(part)}.npz'

    lines = []
    paths = write_npz_chunks([1, 2, 3, 4, 5], tmp_path, 3, name, build, log=lines.append)
    assert [p.name for p in paths] == ['c_1_3.npz', 'c_4_2.npz']
    assert built == [[1, 2, 3], [4, 5]] and lines[0].startswith('c_1_3.npz: 3 samples')
    with np.load(paths[1]) as z:
        assert z['x'].tolist() == [5.0] and z['y'].tolist() == [10]
    (tmp_path / 'c_1_3.npz').unlink()                  # a killed run: one chunk missing
    built.clear()
    again = write_npz_chunks([1, 2, 3, 4, 5], tmp_path, 3, name, build, compress=False, log=None)
    assert built == [[1, 2, 3]] and [p.name for p in again] == ['c_1_3.npz', 'c_4_2.npz']
    assert not list(tmp_path.glob('*.tmp.npz'))
    assert write_npz_chunks([4], tmp_path / 'empty', 2, name, build, log=None) == []


def test_clock_reports_every_n_steps_and_the_last_and_stops_at_the_limit():
    lines = []
    clock = TrainClock(steps=7, minutes=10.0, every=3, log=lines.append)
    for step in range(7):
        if clock.due(step):
            clock.report(f'step {step}')
        assert not clock.expired(step)
    assert [ln.split('  ')[0] for ln in lines] == ['step 0', 'step 3', 'step 6'] and lines[0].endswith(' s')
    lines.clear()
    clock = TrainClock(steps=100, minutes=0.2 / 60, every=50, log=lines.append, stop_prefix='net: ')
    step = 0
    while not clock.expired(step):
        time.sleep(0.05)
        step += 1
    assert 2 <= step <= 10 and lines == [f'net: time limit after {step + 1} steps']
    silent = TrainClock(steps=3, minutes=0.0, every=1, log=None)
    time.sleep(0.01)
    assert not silent.due(0) and silent.expired(0)
