"""Soak the fitter under ROS 2: a looped bag at its recorded rate for N minutes; reports the fitter's
resident memory over time and its statistics lines (processing, publish time, latency, drops).

    source /opt/ros/jazzy/setup.bash && source <ws>/install/setup.bash
    python scripts/ros_soak.py --bag /tmp/sim/bag --minutes 10 --out /tmp/soak.json

The launch file runs with the simulator's ground-truth 2D boxes as prompts (detector:=external),
use_sim_time and no RViz; ``ros2 bag play --clock --loop`` feeds it. Memory is read from
/proc/<pid>/status when the fitter says it is ready (loaded and warmed up, nothing received yet) and
every ``--interval`` s after (VmRSS and RssAnon); the growth is reported from ready, from the bag's
start and from the end of the first minute, to the end, with the sample at each full minute, and per
minute the lowest, median and highest sample with the median's growth over ready (the robust figure:
a fit in progress faults its working set in, so one sample lands anywhere in a ~100 MiB band).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _rss_kb(pid: int, field: str = 'VmRSS') -> int:
    """VmRSS (all resident pages), RssAnon (heap, stacks: what a leak grows) or RssFile (mapped
    files: library code, which grows as new code paths first run), in kB."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(f'{field}:'):
            return int(line.split()[1])
    return 0


def _minute_summary(samples: list, ready_kb: int | None) -> list[dict]:
    """Per minute of the run: lowest, median and highest sample (MiB) and the median's growth over ready."""
    out = []
    for m in sorted({int(t // 60) for t, _ in samples}):
        v = sorted(kb for t, kb in samples if int(t // 60) == m)
        med = statistics.median(v)
        out.append({'minute': m, 'samples': len(v), 'min_mib': round(v[0] / 1024),
                    'median_mib': round(med / 1024), 'max_mib': round(v[-1] / 1024),
                    'median_growth': round((med - ready_kb) / ready_kb, 4) if ready_kb else None})
    return out


def _fitter_pid(session_id: int) -> int | None:
    """The fitter_node process among the launch's process group."""
    for d in Path('/proc').iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getsid(int(d.name)) != session_id:
                continue
            cmd = (d / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except (OSError, ProcessLookupError):
            continue
        if 'fitter_node' in cmd and 'ros2 launch' not in cmd and '--ros-args' in cmd:
            return int(d.name)
    return None


def main(argv=None) -> int:
    # run in the background (`nice python scripts/ros_soak.py ... &`), a shell starts this with SIGINT
    # ignored and the children would inherit it: the launch would ignore the Ctrl-C that ends the soak
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--bag', required=True)
    p.add_argument('--minutes', type=float, default=10.0)
    p.add_argument('--rate', type=float, default=1.0, help='bag play rate (1.0 = recorded, 10 Hz)')
    p.add_argument('--params', help='params YAML (default: the installed one)')
    p.add_argument('--interval', type=float, default=2.0, help='seconds between memory samples')
    p.add_argument('--out', default='soak.json')
    p.add_argument('--log', default='soak_launch.log')
    a = p.parse_args(argv)

    launch_cmd = ['ros2', 'launch', 'autolabel_ros', 'autolabel.launch.py', 'rviz:=false',
                  'detector:=external', 'detections_topic:=/ground_truth/detections_2d', 'use_sim_time:=true']
    if a.params:
        launch_cmd.append(f'params_file:={a.params}')
    log = open(a.log, 'wb')
    launch = subprocess.Popen(launch_cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    play = None
    samples, anon = [], []
    ready_kb = ready_anon_kb = None
    try:
        t0 = time.monotonic()
        while 'waiting for a publisher' not in Path(a.log).read_text(errors='replace'):
            if launch.poll() is not None or time.monotonic() - t0 > 300:
                print('the fitter did not start; see', a.log, file=sys.stderr)
                return 1
            time.sleep(1)
        pid = _fitter_pid(launch.pid)
        ready_kb = _rss_kb(pid)       # the node said ready (warm-up done), nothing received yet
        ready_anon_kb = _rss_kb(pid, 'RssAnon')
        play = subprocess.Popen(['ros2', 'bag', 'play', '--clock', '--loop', '--delay', '3',
                                 '-r', str(a.rate), a.bag], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        start = time.monotonic()
        while time.monotonic() - start < a.minutes * 60:
            if launch.poll() is not None:
                print('the launch ended early; see', a.log, file=sys.stderr)
                break
            t = round(time.monotonic() - start, 1)
            samples.append((t, _rss_kb(pid)))
            anon.append((t, _rss_kb(pid, 'RssAnon')))
            time.sleep(a.interval)
    finally:
        if play is not None:
            os.killpg(play.pid, signal.SIGINT)
            play.wait(30)
        os.killpg(launch.pid, signal.SIGINT)
        try:
            code = launch.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            code = -9
        log.close()
    text = Path(a.log).read_text(errors='replace')
    num = r'([\d.]+)'
    stats = re.findall(rf'(\d+) frame\(s\): processing mean {num} s \(max {num}\), publish mean {num} s '
                       rf'\(max {num}\), latency mean {num} s \(max {num}\); total (\d+) frames, '
                       r'(\d+) objects, dropped (\d+)', text)
    after = [kb for t, kb in samples if t >= 60.0]
    growth = (after[-1] - after[0]) / after[0] if len(after) >= 2 and after[0] else None
    first = samples[0][1] if samples else 0
    growth_start = (samples[-1][1] - first) / first if len(samples) >= 2 and first else None
    final = re.search(r'final: (\d+) frames processed, (\d+) dropped by the frame queue; received (.*?); '
                      r'(\d+) synchronized', text)
    counts = [int(final.group(k)) if final else None for k in (1, 2, 4)]
    received = {t: int(n) for t, n in re.findall(r'(\S+) (\d+)', final.group(3))} if final else {}
    # the looped bag sends every topic equally often: a topic behind the others lost messages on the way
    lost = {t: max(received.values()) - n for t, n in received.items()} if received else {}
    per_minute = {}                        # the first sample of each minute
    for t, kb in samples:
        per_minute.setdefault(int(t // 60), kb)
    minutes = _minute_summary(samples, ready_kb)
    report = {'minutes': a.minutes, 'rate': a.rate, 'exit_code': code, 'crashed': 'Traceback' in text,
              'rss_kb_at_ready': ready_kb,
              # the target's figure: the median of the last minute's samples over ready
              'rss_median_growth_last_minute': minutes[-1]['median_growth'] if minutes else None,
              'rss_mib_per_minute': {m: round(kb / 1024) for m, kb in per_minute.items()},
              'rss_growth_from_ready': ((samples[-1][1] - ready_kb) / ready_kb
                                        if samples and ready_kb else None),
              'rss_minutes': minutes,
              'rss_anon_minutes': _minute_summary(anon, ready_anon_kb),
              'rss_kb': samples, 'rss_anon_kb_at_ready': ready_anon_kb,
              'rss_anon_kb': anon, 'rss_growth_from_bag_start': growth_start,
              'rss_growth_after_first_minute': growth,
              'processed': counts[0], 'dropped': counts[1], 'synchronized': counts[2],
              'received': received, 'lost_at_least': lost,
              'stats_lines': [dict(zip(('frames', 'proc_mean', 'proc_max', 'pub_mean', 'pub_max', 'lat_mean',
                                        'lat_max', 'total', 'objects', 'dropped'), s)) for s in stats],
              'final': final.group(0) if final else None}
    Path(a.out).write_text(json.dumps(report, indent=1))
    brief = {k: v for k, v in report.items() if k not in ('rss_kb', 'rss_anon_kb', 'stats_lines')}
    print(json.dumps(brief, indent=1))
    return 0 if code == 0 and not report['crashed'] else 1


if __name__ == '__main__':
    raise SystemExit(main())
