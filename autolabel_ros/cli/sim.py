"""``autolabel-sim --out DIR --frames N --seed S [--beams 64] [--format mcap|sqlite3]``: simulate a
drive (camera + LiDAR + ground truth) into DIR/kitti/training/ (KITTI object layout, the ego pose as
KITTI raw OXTS in oxts/data/, the ground-truth tracks in label_02/0000.txt) and DIR/bag/ (rosbag2,
ego pose on /tf). Deterministic by seed."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from autolabel_ros.cli.args import description


TOOL = 'autolabel-sim'


def _kitti_names(n_frames: int) -> list[str]:
    """The files a drive of ``n_frames`` writes beside its bag (relative to --out)."""
    names = ['sim_summary.json', 'kitti/training/label_02/0000.txt']
    for i in range(n_frames):
        fid = f'{i:06d}'
        names += [f'kitti/training/image_2/{fid}.png', f'kitti/training/velodyne/{fid}.bin',
                  f'kitti/training/calib/{fid}.txt', f'kitti/training/label_2/{fid}.txt',
                  f'kitti/training/oxts/data/{fid}.txt']
    return names


def own_drive_files(folder) -> set[str]:
    """The files of ``folder`` that autolabel-sim wrote: those its marker lists, or for a drive written
    before the marker listed them, those of its layout (frame files named by six digits)."""
    import re

    from autolabel_ros.io.outdir import read_marker

    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None or marker['tool'] != TOOL:
        return set()
    if marker['files']:
        return set(marker['files'])
    layout = re.compile(r'(sim_summary\.json|bag/.*|kitti/training/label_02/0000\.txt|kitti/training/'
                        r'(image_2/\d{6}\.png|velodyne/\d{6}\.bin|(calib|label_2|oxts/data)/\d{6}\.txt))')
    return {rel for p in folder.rglob('*') if p.is_file()
            and layout.fullmatch(rel := p.relative_to(folder).as_posix())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='autolabel-sim', description=description(__doc__))
    p.add_argument('--out', required=True, help='output folder (kitti/ and bag/ are created in it)')
    p.add_argument('--frames', type=int, default=20, help='number of frames at 10 Hz (default 20)')
    p.add_argument('--seed', type=int, default=0, help='scene seed (default 0)')
    p.add_argument('--beams', type=int, default=64, choices=(64, 32, 16), help='LiDAR beams (default 64)')
    p.add_argument('--format', default='mcap', choices=('mcap', 'sqlite3'), help='bag storage (default mcap)')
    p.add_argument('--azimuth-step', type=float, default=0.17,
                   help='LiDAR azimuth step in degrees, 0.08-0.2 (default 0.17, HDL-64E at 10 Hz)')
    p.add_argument('--cars', type=int, default=None,
                   help='number of cars (default: 2-15 per 60 m of road, more for long drives)')
    p.add_argument('--no-clutter', action='store_true', help='no poles, bushes and buildings')
    p.add_argument('--scale', type=float, default=1.0,
                   help='camera resolution scale of the 1242x375 KITTI camera (default 1)')
    p.add_argument('--no-bag', action='store_true', help='write only the KITTI folder')
    p.add_argument('--overwrite', action='store_true',
                   help='write into a non-empty folder this tool did not write (only autolabel-sim files are '
                   'replaced; a file of another origin at one of its paths stops the run)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error('--frames must be >= 1')
    if not 0.1 <= args.scale <= 2.0:
        p.error('--scale must lie in [0.1, 2]')
    # checked here, naming the flag, before --out is created (-3 cars gave an empty drive, exit 0)
    if args.cars is not None and args.cars < 0:
        p.error(f'--cars {args.cars}: must be >= 0')
    if args.seed < 0:
        p.error(f'--seed {args.seed}: must be >= 0')
    if not 0.08 <= args.azimuth_step <= 0.2:
        p.error(f'--azimuth-step {args.azimuth_step:g}: must lie in [0.08, 0.2] degrees')

    from tqdm import tqdm

    from autolabel_ros.sim.drive import simulate_drive
    from autolabel_ros.sim.sensors import Camera, Lidar
    from autolabel_ros.io.outdir import OutputDirError, prepare_output_dir, record_files
    from autolabel_ros.io.kitti_tracking import write_tracking_file
    from autolabel_ros.sim.writers import BagWriter, tracking_gt_lines, write_kitti

    out = Path(args.out)
    kitti_root = out / 'kitti' / 'training'
    bag_path = out / 'bag'
    if bag_path.exists() and not args.no_bag:
        print(f'autolabel-sim: error: {bag_path} exists; choose an empty --out', file=sys.stderr)
        return 2
    names = _kitti_names(args.frames)
    try:
        prepare_output_dir(out, TOOL, overwrite=args.overwrite, outputs=names)
        # listed before they are written: a run stopped half-way leaves none the next run would refuse
        record_files(out, TOOL, names)
    except OutputDirError as e:
        print(f'autolabel-sim: error: {e}', file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    totals: dict = {}
    n_labels = 0
    track_lines: list[str] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        lidar = Lidar(beams=args.beams, azimuth_step_deg=args.azimuth_step)
        frames = simulate_drive(args.frames, args.seed, camera=Camera.kitti(args.scale), lidar=lidar,
                                n_cars=args.cars, clutter=not args.no_clutter)
        with contextlib.ExitStack() as stack:
            # the bag is written aside and renamed into place only when every frame is in it
            bag = None if args.no_bag else stack.enter_context(BagWriter(bag_path, args.format))
            for sf in tqdm(frames, total=args.frames, desc='autolabel-sim', unit='frame', disable=args.quiet):
                tw = time.perf_counter()
                write_kitti(kitti_root, sf, oxts=True)
                track_lines += tracking_gt_lines(sf)
                sf.timings['kitti_write_s'] = time.perf_counter() - tw
                if bag is not None:
                    tw = time.perf_counter()
                    bag.write(sf)
                    sf.timings['bag_write_s'] = time.perf_counter() - tw
                for k, v in sf.timings.items():
                    totals[k] = totals.get(k, 0.0) + v
                n_labels += len(sf.gt)
        write_tracking_file(kitti_root / 'label_02' / '0000.txt', track_lines)
    except (OSError, ValueError) as e:
        print(f'autolabel-sim: error: {e}', file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    per_frame = {k: round(v / args.frames, 3) for k, v in totals.items()}
    summary = {'frames': args.frames, 'labels': n_labels, 'wall_s': round(wall, 2), 'per_frame_s': per_frame,
               'kitti': str(kitti_root), 'bag': None if args.no_bag else str(bag_path)}
    (out / 'sim_summary.json').write_text(json.dumps(summary, indent=1) + '\n')
    if not args.no_bag:
        record_files(out, TOOL, [p.relative_to(out).as_posix() for p in bag_path.rglob('*') if p.is_file()])
    if not args.quiet:
        print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    from autolabel_ros.cli.entry import EXIT_INTERRUPTED
    from autolabel_ros.core.interrupts import run_quietly
    run_quietly(lambda: main, EXIT_INTERRUPTED)
