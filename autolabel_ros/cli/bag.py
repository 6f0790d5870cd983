"""``autolabel-bag``: autolabel a recorded drive offline (no ROS install needed).

    autolabel-bag INPUT --out OUTDIR [--config YAML] [--image-topic T] [--info-topic T] [--cloud-topic T]
                  [--prompts detector|topic:NAME|gt] [--start S --end S] [--workers N] [--ray ADDRESS]
                  [--no-resume] [--no-copy-sensors] [--calib FILE] [--storage mcap|sqlite3]
    autolabel-bag import-kitti-raw DRIVE --out BAG [--storage mcap|sqlite3] [--rate HZ] [--start-time SEC]

INPUT: a rosbag2 folder (sqlite3 or MCAP), a ROS 1 .bag, a KITTI raw drive folder or a KITTI object
folder. See docs/OFFLINE.md. Also ``ros2 run autolabel_ros autolabel_bag``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='autolabel-bag', description=__doc__.split('\n')[0],
                                epilog='Subcommand: autolabel-bag import-kitti-raw DRIVE --out BAG '
                                       '(see --help there).')
    p.add_argument('input', help='rosbag2 folder, ROS 1 .bag, KITTI raw drive or KITTI object folder')
    p.add_argument('--out', required=True,
                   help='output folder (created; results of a previous run are resumed)')
    p.add_argument('--config', help='pipeline config YAML (default: built-in defaults)')
    p.add_argument('--image-topic', help='camera topic (default: the only Image/CompressedImage topic)')
    p.add_argument('--info-topic', help='camera_info topic (default: the only CameraInfo topic)')
    p.add_argument('--cloud-topic', help='LiDAR topic (default: the only PointCloud2 topic)')
    p.add_argument('--prompts', default='detector',
                   help="'detector' (2D detector of the config), 'topic:NAME' (a "
                        "vision_msgs/Detection2DArray topic of the bag, matched by stamp) or 'gt' "
                        "(label_2 boxes of a KITTI object folder)")
    p.add_argument('--start', type=float, help='first frame, seconds after the first frame of the input')
    p.add_argument('--end', type=float, help='last frame, seconds after the first frame of the input')
    p.add_argument('--max-frames', type=int, help='label at most this many frames of the window')
    p.add_argument('--workers', type=int, default=1, help='local worker processes, or Ray actors with --ray')
    p.add_argument('--threads', type=int,
                   help='OpenCV threads per worker (the SSD detector; default: cpus / workers; 1 per Ray '
                        'actor), and torch threads when the config has fit.threads: 0 (torch otherwise '
                        'runs with fit.threads, 1 by default, so outputs are bit-identical across '
                        '--workers/--ray)')
    p.add_argument('--ray', metavar='ADDRESS',
                   help="run on Ray: 'local' starts a private instance with --workers CPUs, else a cluster "
                        "address ('auto', 'ray://host:10001')")
    p.add_argument('--no-resume', action='store_true', help='discard per-frame results of a previous run')
    p.add_argument('--no-copy-sensors', action='store_true',
                   help='label bag without the input camera/cloud topics (annotations and /tf_static only)')
    p.add_argument('--calib',
                   help='KITTI calib file for the LiDAR->camera extrinsic (and K without camera_info)')
    p.add_argument('--storage', default='mcap', choices=('mcap', 'sqlite3'), help='label bag storage plugin')
    p.add_argument('--tolerance', type=float, default=0.05,
                   help='camera/LiDAR stamp pairing tolerance, seconds')
    p.add_argument('--rectified', action='store_true',
                   help='the image topic is rectified (image_rect): project with camera_info P and ignore d')
    p.add_argument('--no-undistort', action='store_true',
                   help='refuse raw images whose camera_info has non-zero distortion d (default: undistort '
                        'them with OpenCV, as the fitter node does)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def _import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='autolabel-bag import-kitti-raw',
                                description='Write a KITTI raw drive into a rosbag2 (version 8) with the '
                                            "simulator's topics.")
    p.add_argument('drive', help='folder with image_02/data, velodyne_points/data (+ calib.txt)')
    p.add_argument('--out', required=True, help='rosbag2 folder to create')
    p.add_argument('--storage', default='mcap', choices=('mcap', 'sqlite3'))
    p.add_argument('--calib', help='calib file (object-benchmark format) if not DRIVE/calib.txt')
    p.add_argument('--rate', type=float, default=10.0, help='frame rate for synthesized stamps (Hz)')
    p.add_argument('--start-time', type=float,
                   help='stamp of the first frame, seconds since the epoch '
                        '(default: the date in the folder name)')
    return p


def _errors():
    from autolabel_ros.config import ConfigError
    from autolabel_ros.io.bags import BagError
    from autolabel_ros.io.kitti import KittiFormatError

    errs = [BagError, ConfigError, KittiFormatError, FileNotFoundError]
    for mod, name in (('autolabel_ros.core.device', 'DeviceError'), ('autolabel_ros.io.messages',
                                                                     'MessageError'),
                      ('autolabel_ros.detect', 'DetectorUnavailable'), ('autolabel_ros.segment',
                                                                        'SegmenterUnavailable')):
        try:
            errs.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errs)


def _import_main(argv) -> int:
    from autolabel_ros.io.kitti import read_calib
    from autolabel_ros.io.kitti_raw import import_kitti_raw

    a = _import_parser().parse_args(argv)
    try:
        if Path(a.out).exists():
            raise FileExistsError(f'{a.out} exists; choose a new folder for the bag')
        res = import_kitti_raw(a.drive, a.out, storage=a.storage,
                               calib=read_calib(a.calib) if a.calib else None,
                               rate_hz=a.rate,
                               start_ns=None if a.start_time is None else int(a.start_time * 1e9))
    except (FileExistsError, *_errors()) as e:
        print(f'autolabel-bag import-kitti-raw: error: {e}', file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {res['frames']} frames to {res['out']} ({res['storage']})")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'import-kitti-raw':
        return _import_main(argv[1:])
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if not a.quiet else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    from autolabel_ros.offline.job import BagJob, run_job

    if a.workers < 1:
        print('autolabel-bag: error: --workers must be >= 1', file=sys.stderr)
        return EXIT_USAGE
    job = BagJob(input=a.input, out=a.out, config=a.config, image_topic=a.image_topic,
                 info_topic=a.info_topic, cloud_topic=a.cloud_topic, prompts=a.prompts, start=a.start,
                 end=a.end, max_frames=a.max_frames, workers=a.workers, threads=a.threads, ray=a.ray,
                 resume=not a.no_resume, copy_sensors=not a.no_copy_sensors,
                 calib=a.calib, storage=a.storage, tolerance=a.tolerance, progress=not a.quiet,
                 rectified=a.rectified, undistort=not a.no_undistort)
    try:
        summary = run_job(job)
    except KeyboardInterrupt:
        print(f'autolabel-bag: interrupted; finished frames are kept in {Path(a.out) / ".frames"}, '
              f'run the same command again to resume', file=sys.stderr)
        return EXIT_INTERRUPTED
    except _errors() as e:
        from autolabel_ros.config import ConfigError
        kind = 'config error' if isinstance(e, ConfigError) else 'error'
        print(f'autolabel-bag: {kind}: {e}', file=sys.stderr)
        return EXIT_USAGE
    fr, ob = summary['frames'], summary['objects']
    print(f"{fr['labelled']}/{fr['selected']} frames labelled ({fr['failed']} failed), "
          f"{ob['accepted']} labels accepted, {ob['rejected']} rejected")
    fps = summary['run'].get('frames_per_s')
    if fps:
        print(f'{fps:.3f} frames/s with {a.workers} worker(s){" on Ray" if a.ray else ""}')
    print(f"outputs in {a.out}: labels.bag, kitti/, openlabel.json, meshes/, report/summary.json")
    return 0


if __name__ == '__main__':
    sys.exit(main())
