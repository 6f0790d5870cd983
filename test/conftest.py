"""Shared fixtures: the read-only real data beside the repo (skipped when absent)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """../shared/data (KITTI object/raw frames, ApolloCar3D models); tests using it skip without it."""
    if not (SHARED_DATA / 'kitti_object' / 'training').is_dir():
        pytest.skip(f'real data not present at {SHARED_DATA}')
    return SHARED_DATA


@pytest.fixture(scope='session')
def kitti_training(shared_data) -> Path:
    return shared_data / 'kitti_object' / 'training'


# ---------------------------------------------------------------------------------- ROS 2 tests

@pytest.fixture(scope='session')
def ros_ws(tmp_path_factory):
    """This checkout built with colcon into a temporary workspace, and the environment to run it in
    (test/ros_harness.py); skips with the reason when no ROS 2 is sourced."""
    import ros_harness

    if ros_harness.SKIP_REASON:
        pytest.skip(ros_harness.SKIP_REASON)
    return ros_harness.ros_workspace(tmp_path_factory.mktemp('colcon'))


_ROS_TESTS: set = set()


def pytest_collection_modifyitems(items):
    _ROS_TESTS.update(item.nodeid for item in items if item.get_closest_marker('ros'))


def pytest_terminal_summary(terminalreporter):
    """One line that says how many ROS tests ran (CI prints it; .ci/run sources ROS when present)."""
    counts, reasons = {}, set()
    for outcome in ('passed', 'failed', 'skipped', 'error'):
        for rep in terminalreporter.stats.get(outcome, []):
            if getattr(rep, 'nodeid', None) not in _ROS_TESTS:
                continue
            if outcome == 'passed' and rep.when != 'call':
                continue
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == 'skipped' and isinstance(rep.longrepr, tuple):
                reasons.add(str(rep.longrepr[2]).removeprefix('Skipped: '))
    if _ROS_TESTS:
        text = ', '.join(f'{n} {k}' for k, n in counts.items()) or 'none run'
        why = f' ({"; ".join(sorted(reasons))})' if reasons else ''
        terminalreporter.write_line(f'ROS 2 tests: {text}{why}')
