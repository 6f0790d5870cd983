"""Under a real ROS 2: a Ctrl-C while a node is still starting (importing rclpy / numpy, loading the
models) ends it quietly: exit code 0 (ROS convention for a node told to stop), no traceback.
The SIGINT goes to the installed executable itself (what `ros2 run` and `ros2 launch` start), at
moments read from its memory map: which shared libraries it has loaded so far."""
from __future__ import annotations

import pytest
import yaml
from interrupt_harness import interrupt_once_loaded
from ros_harness import SKIP_REASON

pytestmark = [pytest.mark.ros, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or '')]


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
    code, text = interrupt_once_loaded([str(exe), '--ros-args', '--params-file', str(params)], library,
                                       ros_ws['env'])
    assert 'Traceback' not in text and 'KeyboardInterrupt' not in text, text[-3000:]
    assert 'ready' not in text, f'the SIGINT came after the start ({moment}):\n{text[-2000:]}'
    assert code == 0, f'exit code {code} ({moment}):\n{text[-3000:]}'
