"""A Ctrl-C at any moment ends the autolabel-* commands quietly: exit code 130 (128 + SIGINT, what a
shell reports for an interrupted command), no traceback, also while the libraries still load."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from interrupt_harness import interrupt_once_loaded

ROOT = Path(__file__).resolve().parents[1]


def _interrupted(entry: str, args: list, wait_for: str, tmp_path) -> tuple[int, str]:
    """Run the console script's function ``entry`` (cli/entry.py) like the installed script does;
    SIGINT once the process has loaded the shared library ``wait_for`` (so: while importing)."""
    code = f'import sys; sys.argv[1:] = {args!r}; from autolabel_ros.cli.entry import {entry}; {entry}()'
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    return interrupt_once_loaded([sys.executable, '-c', code], wait_for, env, cwd=tmp_path)


@pytest.mark.skipif(not Path('/proc/self/maps').exists(), reason='needs /proc (Linux)')
def test_ctrl_c_while_a_command_loads_exits_130_without_traceback(tmp_path):
    # numpy's C core being loaded: the command's modules are being imported
    code, text = _interrupted('sim_main', ['--out', 'sim', '--frames', '1', '--quiet'], '_multiarray_umath',
                              tmp_path)
    assert 'Traceback' not in text, text[-3000:]
    assert code == 130, f'exit code {code}:\n{text[-3000:]}'
    assert not (tmp_path / 'sim').exists()


def test_a_finished_command_keeps_its_exit_code(tmp_path):
    """The quiet wrapper changes nothing else: a bad argument is still exit code 2 with its message."""
    code = 'from autolabel_ros.cli.entry import eval_main; eval_main()'
    res = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'no_gt'), str(tmp_path / 'no_pred')],
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr
    assert 'ground-truth directory not found' in res.stderr, res.stderr
