"""Fault campaign of ``autolabel-bag``: stop a run with ``kill -9`` or SIGINT at a random moment
(while starting, while labelling, while writing the outputs), run the same command again, and
compare every output file with an uninterrupted run.

``test/test_bad_inputs.py`` runs a few seeds; the full campaign (documented in docs/OFFLINE.md):

    PYTHONPATH=. python test/fault_campaign.py --seeds 10 [--frames 5] [--work DIR]

prints one line per seed and exits non-zero when a resumed run differs or leaves temporaries.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
# files whose content depends on wall-clock times (docs/OFFLINE.md)
TIMING_FILES = {'report/timing.png'}
PHASES = ('startup', 'labelling', 'output')


def output_tree(out: Path) -> dict:
    """{relative path: bytes} of the outputs, ``summary.json`` without its wall-clock entries."""
    tree = {}
    for p in sorted(out.rglob('*')):
        rel = p.relative_to(out).as_posix()
        if not p.is_file() or rel.startswith('.frames/') or rel in TIMING_FILES:
            continue
        if rel == 'report/summary.json':
            s = json.loads(p.read_text())
            s.pop('timing')
            s.pop('run')
            tree[rel] = json.dumps(s, sort_keys=True).encode()
        else:
            tree[rel] = p.read_bytes()
    return tree


def leftovers(out: Path) -> list[str]:
    """Temporaries and staging folders a finished run must not leave behind."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob('*')
                  if '.tmp' in p.name or p.name == '.assemble')


def command(bag: Path, cfg: Path, out: Path, extra=()) -> list[str]:
    return [sys.executable, '-m', 'autolabel_ros.cli.bag', str(bag), '--out', str(out), '--config', str(cfg),
            '--prompts', 'topic:/prompts', '--quiet', *extra]


def _env() -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(REPO)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                                                        if p])
    return env


def run(bag, cfg, out, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(command(bag, cfg, out), capture_output=True, text=True, env=_env(), timeout=timeout)


def _wait_for(pred, proc, timeout: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if pred():
            return True
        time.sleep(0.005)
    return False


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stopped_as_expected(r: dict) -> bool:
    """kill -9: killed (or done before the signal); SIGINT: exit 130 with the one-line message."""
    if not r['sent']:
        return r['rc'] == 0
    if r['signal'] == 'SIGKILL':
        return r['rc'] == -signal.SIGKILL
    if r['rc'] == -signal.SIGINT:     # before the interpreter ran any of the tool: nothing written
        return not r['out_existed']
    return r['rc'] == 130 and 'interrupted' in r['stderr'] and 'Traceback' not in r['stderr']


def _exiting(pid: int) -> bool:
    """Whether the process is already in its exit system call (the kernel's PF_EXITING flag): its exit
    code is set, but tearing down a large process takes a while on a loaded machine, and a signal sent
    then is lost (the run is done before it, with its own exit code)."""
    try:
        flags = int(Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[6])
    except (OSError, IndexError, ValueError):
        return False          # no /proc: as before, the signal is sent
    return bool(flags & 0x4)


def interrupted_run(bag, cfg, out: Path, seed: int, sig=signal.SIGKILL, phase=None) -> dict:
    """Start a run, send ``sig`` at a random moment of ``phase`` (by seed when None); returns what
    happened: the phase, the delay, the exit code and stderr of the stopped run."""
    rng = random.Random(seed)
    phase = phase or PHASES[seed % len(PHASES)]
    # a shell without job control starts background jobs with SIGINT ignored, and Python then never
    # raises KeyboardInterrupt: the child gets the default disposition back, as at a terminal
    proc = subprocess.Popen(command(bag, cfg, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), preexec_fn=_default_sigint)
    frames = out / '.frames'
    if phase == 'startup':
        time.sleep(rng.uniform(0.0, 3.0))
    elif phase == 'labelling':
        _wait_for(lambda: any(frames.glob('[0-9]*.json')), proc, 300)
        time.sleep(rng.uniform(0.0, 0.5))
    else:   # while the outputs are assembled and moved into place
        _wait_for(lambda: (out / '.assemble').exists(), proc, 300)
        time.sleep(rng.uniform(0.0, 1.5))
    sent = proc.poll() is None and not _exiting(proc.pid)
    if sent:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return {'seed': seed, 'phase': phase, 'signal': signal.Signals(sig).name, 'sent': sent,
            'rc': proc.returncode, 'stderr': err, 'out_existed': out.exists()}


def resume_in_subprocess(bag, cfg, out) -> tuple[int, str]:
    r = run(bag, cfg, out)
    return r.returncode, r.stderr


def campaign(bag, cfg, work: Path, seeds, reference: dict, sig=signal.SIGKILL, resume=resume_in_subprocess
             ) -> list[dict]:
    """One interrupted + resumed run per seed; each result says whether the outputs are identical.
    ``resume(bag, cfg, out) -> (exit code, stderr)`` runs the same command again (the tests run it
    in-process: the models need not load in a new interpreter)."""
    results = []
    for seed in seeds:
        out = work / f'{signal.Signals(sig).name.lower()}_{seed}'
        r = interrupted_run(bag, cfg, out, seed, sig)
        rc, err = resume(bag, cfg, out)
        tree = output_tree(out)
        r.update(resume_rc=rc, resume_stderr=err[-2000:],
                 differing=sorted(k for k in set(tree) | set(reference) if tree.get(k) != reference.get(k)),
                 leftovers=leftovers(out))
        results.append(r)
    return results


def main(argv=None) -> int:
    from test_bag_fixtures import fast_config, write_tiny_bag

    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, default=10)
    ap.add_argument('--frames', type=int, default=5)
    ap.add_argument('--work', default=None, help='working folder (default: a temporary one)')
    ap.add_argument('--signals', default='KILL,INT', help='which signals, of KILL and INT')
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix='fault_campaign_'))
    work.mkdir(parents=True, exist_ok=True)
    bag = write_tiny_bag(work / 'drive.bag', n=a.frames)
    cfg = fast_config(work / 'fast.yaml')
    t0 = time.perf_counter()
    ref = run(bag, cfg, work / 'reference')
    if ref.returncode != 0:
        print(ref.stderr)
        return 1
    print(f'reference run: {time.perf_counter() - t0:.1f} s, {len(output_tree(work / "reference"))} files')
    reference = output_tree(work / 'reference')
    bad = 0
    sigs = [getattr(signal, 'SIG' + n.strip()) for n in a.signals.split(',')]
    for sig in sigs:
        for r in campaign(bag, cfg, work, range(a.seeds), reference, sig):
            ok = stopped_as_expected(r) and r['resume_rc'] == 0 and not r['differing'] and not r['leftovers']
            bad += not ok
            print(f"{r['signal']} seed {r['seed']} phase {r['phase']:9s} sent={r['sent']!s:5s} rc={r['rc']} "
                  f"resumed rc={r['resume_rc']} differing={len(r['differing'])} leftovers={r['leftovers']} "
                  f"{'OK' if ok else 'FAIL'}", flush=True)
    n = len(sigs) * a.seeds
    print(f'{n - bad}/{n} interrupted runs stopped as expected and resumed to identical outputs', flush=True)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
