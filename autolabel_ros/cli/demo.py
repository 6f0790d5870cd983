"""``make demo``: simulate a drive (once), autolabel its bag offline, score the labels.

    python -m autolabel_ros.cli.demo --dir DIR [--frames 20] [--seed 0] [--workers 1] [--config YAML]

1. ``DIR/sim``: the synthetic drive of ``autolabel-sim`` (KITTI ground truth + a rosbag2 with camera,
   LiDAR, /tf_static and the ground-truth 2D boxes on /ground_truth/detections_2d), generated only
   when absent;
2. ``DIR/labels``: ``autolabel-bag DIR/sim/bag --prompts topic:/ground_truth/detections_2d`` (the 2D
   boxes play the part of a person's box prompts; masks, 3D boxes and shapes come from the pipeline);
3. the ``autolabel-eval`` table of DIR/labels/kitti/label_2 against the simulator's label_2, and the
   path of the run report.
Re-running reuses the drive and the finished frames (the bag tool resumes).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from autolabel_ros.cli.args import description
from autolabel_ros.io.outdir import MARKER, read_marker

PROMPT_TOPIC = '/ground_truth/detections_2d'


def _simulate(sim_dir: Path, frames: int, seed: int) -> int:
    from autolabel_ros.cli.sim import main as sim_main

    gt = sim_dir / 'kitti' / 'training' / 'label_2'
    if (sim_dir / 'bag' / 'metadata.yaml').is_file() and gt.is_dir():
        n = len(list(gt.glob('*.txt')))
        if n == frames:
            print(f'demo: reusing the simulated drive in {sim_dir} ({n} frames)')
            return 0
    if sim_dir.exists():   # partial or of another length: start over, but only on the simulator's own folder
        marker = read_marker(sim_dir)
        if marker is None or marker['tool'] != 'autolabel-sim':
            if any(sim_dir.iterdir()):
                print(f'autolabel-demo: error: --dir {sim_dir.parent}: {sim_dir} is not empty and was not '
                      'written by autolabel-sim (nothing is deleted); choose another --dir', file=sys.stderr)
                return 2
        else:             # the simulator's folder, and files of the user's put in it: those are kept
            from autolabel_ros.cli.sim import own_drive_files
            own = own_drive_files(sim_dir) | {MARKER}
            other = next((p for p in sorted(sim_dir.rglob('*')) if not p.is_dir()
                          and p.relative_to(sim_dir).as_posix() not in own), None)
            if other is not None:
                print(f'autolabel-demo: error: --dir {sim_dir.parent}: {other} was not written by '
                      f'autolabel-sim and the drive in {sim_dir} must be simulated again (nothing is '
                      'deleted); move it away, or choose another --dir', file=sys.stderr)
                return 2
        shutil.rmtree(sim_dir)
    print(f'demo: simulating {frames} frames (seed {seed}) into {sim_dir}')
    return sim_main(['--out', str(sim_dir), '--frames', str(frames), '--seed', str(seed)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='autolabel-demo', description=description(__doc__))
    p.add_argument('--dir', required=True, help='working folder (drive, labels, report)')
    p.add_argument('--frames', type=int, default=20, help='frames of the simulated drive (default 20)')
    p.add_argument('--seed', type=int, default=0, help='scene seed of the drive (default 0)')
    p.add_argument('--workers', type=int, default=1, help='worker processes of the bag tool')
    p.add_argument('--config', help='pipeline config YAML (default: built-in defaults)')
    a = p.parse_args(argv)
    if a.frames < 1 or a.workers < 1:    # before the drive of an earlier run is replaced
        p.error(f'--frames {a.frames} and --workers {a.workers}: must be >= 1')
    root = Path(a.dir).expanduser()
    sim_dir, out = root / 'sim', root / 'labels'
    rc = _simulate(sim_dir, a.frames, a.seed)
    if rc != 0:
        return rc

    from autolabel_ros.cli.bag import main as bag_main

    args = [str(sim_dir / 'bag'), '--out', str(out), '--prompts', f'topic:{PROMPT_TOPIC}',
            '--workers', str(a.workers)]
    if a.config:
        args += ['--config', a.config]
    print('demo: autolabel-bag ' + ' '.join(args))
    rc = bag_main(args)
    if rc != 0:
        return rc

    from autolabel_ros.eval import evaluate, format_table

    gt, pred = sim_dir / 'kitti' / 'training' / 'label_2', out / 'kitti' / 'label_2'
    print(f'\nautolabel-eval {gt} {pred}')
    print(format_table(evaluate(gt, pred)))
    print(f'\nreport: {out / "report" / "summary.json"} (figures beside it: bev_sheet.png, confidence.png, '
          f'timing.png)\nlabel bag: {out / "labels.bag"}  OpenLABEL: {out / "openlabel.json"}')
    return 0


if __name__ == '__main__':
    from autolabel_ros.cli.entry import EXIT_INTERRUPTED
    from autolabel_ros.core.interrupts import run_quietly
    run_quietly(lambda: main, EXIT_INTERRUPTED)
