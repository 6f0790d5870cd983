"""Style gate (the ROS ament_flake8 equivalent here): ruff over the package, tests and benchmarks."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which('ruff') or str(Path(sys.executable).with_name('ruff'))
    if not Path(ruff).exists():
        pytest.skip('ruff not installed')
    proc = subprocess.run([ruff, 'check', 'autolabel_ros', 'test', 'benchmarks', 'launch', 'setup.py'],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
