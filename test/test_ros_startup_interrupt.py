"""Under a real ROS 2: a Ctrl-C while a node is still starting (importing rclpy / numpy, loading the
models) ends it quietly: exit code 0 (ROS convention for a node told to stop), no traceback.
The SIGINT goes to the installed executable itself (what `ros2 run` and `ros2 launch` start), at
moments read from its memory map: which shared libraries it has loaded so far."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ros_harness import SKIP_REASON

pytestmark = [pytest.mark.ros, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or '')]


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f'/proc/{pid}/maps').read_text()
    except OSError:
        return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize('moment,library', [
    ('importing', '_multiarray_umath'),       # numpy's C core: the node's modules are being imported
    ('loading the models', 'libtorch_cpu'),   # torch: rclpy is up, the Autolabeler is being built
])
def test_ctrl_c_while_the_fitter_starts_exits_quietly(ros_ws, tmp_path, moment, library):
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'device': 'cpu',
                                                                   'segmenter': {'model': 'box'}}}}))
    exe = ros_ws['install'] / 'lib' / 'autolabel_ros' / 'fitter_node'
    proc = subprocess.Popen([str(exe), '--ros-args', '--params-file', str(params)], env=ros_ws['env'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        end = time.monotonic() + 60
        while not _loaded(proc.pid, library) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.005)
        assert proc.poll() is None, f'the fitter ended before {moment}: {proc.communicate()[1][-2000:]}'
        assert _loaded(proc.pid, library), f'{library} not loaded within 60 s'
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = (out + err).decode(errors='replace')
    assert 'Traceback' not in text and 'KeyboardInterrupt' not in text, text[-3000:]
    assert 'ready' not in text, f'the SIGINT came after the start ({moment}):\n{text[-2000:]}'
    assert proc.returncode == 0, f'exit code {proc.returncode} ({moment}):\n{text[-3000:]}'
