"""scripts/env.sh (the environment build behind `make demo` / `make test`) on a fresh cache, with a
stand-in interpreter instead of the 5 GB install: one line per phase with its usual duration, pip's
output kept out of the terminal, the log's tail and the failed phase when one fails, nothing rebuilt on
the second call."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a stand-in for python3 and the venv's python: `-m venv DIR` makes DIR/bin/python (itself), pip prints
# what pip prints (and fails on `-r` when FAIL_PIP_R is set), anything else succeeds
FAKE_PYTHON = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1" = -m ] && [ "$2" = pip ]; then
  echo "Collecting numpy"; echo "WARNING: Running pip as the 'root' user" >&2
  if [ -n "$FAIL_PIP_R" ] && [ "$4" = -r ]; then echo "ERROR: No matching distribution found" >&2; exit 1; fi
fi
exit 0
'''

pytestmark = pytest.mark.skipif(shutil.which('flock') is None or shutil.which('sha256sum') is None,
                                reason='env.sh needs flock and sha256sum')


def _env_sh(tmp_path, **env):
    fake = tmp_path / 'python3'
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    run_env = dict(os.environ, AUTOLABEL_CACHE=str(tmp_path / 'cache'), PYTHON=str(fake),
                   CALLS=str(tmp_path / 'calls.log'), **env)
    return subprocess.run(['bash', str(ROOT / 'scripts' / 'env.sh')], capture_output=True, text=True,
                          env=run_env, timeout=60)


def test_fresh_build_prints_one_line_per_phase_and_hides_pip(tmp_path):
    r = _env_sh(tmp_path)
    assert r.returncode == 0, r.stderr
    venv = Path(r.stdout.strip())
    assert venv.parent == tmp_path / 'cache' and venv.name.startswith('venv-')
    assert (venv / '.complete').is_file()
    lines = r.stderr.splitlines()
    starts = [ln for ln in lines if ln.startswith('[env] ') and '(usually ' in ln]
    assert [ln.split()[1] for ln in starts] == ['1/4', '2/4', '3/4', '4/4']
    assert all(ln.rstrip().endswith('...') for ln in starts)
    assert sum('done in' in ln for ln in lines) == 4
    # every line is the script's own: pip's chatter went to the build log
    assert all(ln.startswith('[env]') for ln in lines), lines
    log = (tmp_path / 'cache' / 'env-build.log').read_text()
    assert 'Collecting numpy' in log and "Running pip as the 'root' user" in log
    calls = (tmp_path / 'calls.log').read_text().splitlines()
    assert any('torch==' in c for c in calls) and calls[-1].startswith('-m pip install -q --no-deps')

    # the second call reuses the venv: no phase, only the (quiet) editable install
    again = _env_sh(tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == str(venv)
    assert again.stderr == ''


def test_a_failed_phase_names_itself_and_shows_the_log_tail(tmp_path):
    r = _env_sh(tmp_path, FAIL_PIP_R='1')
    assert r.returncode == 1
    assert 'ERROR: No matching distribution found' in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('[env] failed: 3/4 requirements.txt') and 'env-build.log' in last
    assert not list((tmp_path / 'cache').glob('venv-*/.complete'))
