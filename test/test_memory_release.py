"""core/memory.py: the free pages that glibc's malloc keeps after multi-MB buffers are freed on a thread
go back to the system (what the nodes do after each frame: release_memory)."""
from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# In a fresh process: on a thread, free one 8 MB buffer (glibc raises its mmap threshold above it, as
# after the first image / cloud message), then 30 buffers of 1.5 MB (an image each) come from the
# thread's arena; a small buffer allocated after them pins the arena's top, so freeing them keeps the
# pages resident until release_free_memory hands them back.
SCRIPT = r'''
import threading
from autolabel_ros.core.memory import release_free_memory

def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024

out = {}
def work():
    del_first = bytearray(8 << 20)
    del del_first
    bufs = [bytearray(3 << 19) for _ in range(30)]     # written (zeroed): resident
    pin = bytearray(200_000)
    out['full'] = rss_mb()
    del bufs
    out['freed'] = rss_mb()
    out['released'] = release_free_memory()
    out['after'] = rss_mb()
    out['pin'] = len(pin)
t = threading.Thread(target=work)
t.start()
t.join()
print(out['full'], out['freed'], out['released'], out['after'])
'''


GLIBC = sys.platform.startswith('linux') and 'libc.so' in (ctypes.util.find_library('c') or '')


@pytest.mark.skipif(not GLIBC, reason='glibc only (malloc_trim)')
def test_freed_message_sized_buffers_stay_resident_until_released():
    res = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True, timeout=60,
                         env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'})
    assert res.returncode == 0, res.stderr
    full, freed, released, after = res.stdout.split()
    full, freed, after = float(full), float(freed), float(after)
    assert released == 'True'
    assert freed > full - 10, f'the freed 45 MB should stay resident: {full:.0f} -> {freed:.0f} MB'
    assert after < freed - 35, f'released: {freed:.0f} -> {after:.0f} MB'


# In a fresh process (glibc's mmap threshold still at its 128 KiB start, as while a node warms up): on
# a thread, 30 buffers of 1.5 MB are written, a small buffer pins the arena's top, all 30 are freed.
# By default each of them was mmap-ed and goes back at free; with the thresholds settled (as the nodes
# do before their warm-up) they come from the arena and stay resident, as a real frame's do later.
SETTLE_SCRIPT = r'''
import sys, threading
from autolabel_ros.core.memory import settle_malloc_thresholds

def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024

out = {'settled': settle_malloc_thresholds() if sys.argv[1] == 'settle' else None}
def work():
    bufs = [bytearray(3 << 19) for _ in range(30)]
    pin = bytearray(200_000)
    out['full'] = rss_mb()
    del bufs
    out['freed'] = rss_mb()
    out['pin'] = len(pin)
t = threading.Thread(target=work)
t.start()
t.join()
print(out['settled'], out['full'], out['freed'])
'''


@pytest.mark.skipif(not GLIBC, reason='glibc only (mallopt)')
def test_settled_thresholds_keep_a_warm_up_sized_working_set_resident():
    got = {}
    for mode in ('default', 'settle'):
        res = subprocess.run([sys.executable, '-c', SETTLE_SCRIPT, mode], capture_output=True, text=True,
                             timeout=60, env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'})
        assert res.returncode == 0, res.stderr
        settled, full, freed = res.stdout.split()
        got[mode] = (settled, float(full), float(freed))
    settled, full, freed = got['settle']
    assert settled == 'True'
    assert freed > full - 10, f'settled: the freed 45 MB should stay resident: {full:.0f} -> {freed:.0f} MB'
    _, full, freed = got['default']
    assert freed < full - 35, f'default: the mmap-ed buffers go back at free: {full:.0f} -> {freed:.0f} MB'
