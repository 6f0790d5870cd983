"""``autolabel-bag``: autolabel a recorded drive offline (no ROS install needed).

    autolabel-bag INPUT --out OUTDIR [--config YAML] [--image-topic T] [--info-topic T] [--cloud-topic T]
                  [--prompts fused|detector|topic:NAME|gt] [--start S --end S] [--workers N] [--ray ADDRESS]
                  [--no-resume] [--no-copy-sensors] [--calib FILE] [--storage mcap|sqlite3]
                  [--tracks] [--occupancy [VOXEL]] [--ego auto|tf|oxts|icp]
    autolabel-bag import-kitti-raw DRIVE --out BAG [--storage mcap|sqlite3] [--rate HZ] [--start-time SEC]

INPUT: a rosbag2 folder (sqlite3 or MCAP), a ROS 1 .bag, a KITTI raw drive folder or a KITTI object
folder. See docs/OFFLINE.md. Also ``ros2 run autolabel_ros autolabel_bag``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from autolabel_ros.cli.args import add_output_args, description
from autolabel_ros.cli.entry import EXIT_INTERRUPTED   # Ctrl-C: finished frames are kept, the same
                                                       # command resumes

EXIT_NOTHING_LABELLED = 1   # the run finished but not one frame could be labelled
EXIT_USAGE = 2              # bad input, option, config or output folder; disk full (one line)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='autolabel-bag', description=description(__doc__),
                                epilog='Subcommand: autolabel-bag import-kitti-raw DRIVE --out BAG '
                                       '(see --help there).')
    p.add_argument('input', help='rosbag2 folder, ROS 1 .bag, KITTI raw drive or KITTI object folder')
    add_output_args(p, 'output folder (created; results of a previous run are resumed)',
                    'only its own files')
    p.add_argument('--config', help='pipeline config YAML (default: built-in defaults)')
    p.add_argument('--image-topic', help='camera topic (default: the only Image/CompressedImage topic)')
    p.add_argument('--info-topic', help='camera_info topic (default: the only CameraInfo topic)')
    p.add_argument('--cloud-topic', help='LiDAR topic (default: the only PointCloud2 topic)')
    p.add_argument('--prompts', default='fused',
                   help="'fused' (default: the 2D detector's boxes fused with LiDAR object proposals, "
                        "config section proposals), 'detector' (the 2D detector of the config alone), "
                        "'topic:NAME' (a vision_msgs/Detection2DArray topic of the bag, matched by "
                        "stamp) or 'gt' (label_2 boxes of a KITTI object folder)")
    p.add_argument('--start', type=float, help='first frame, seconds after the first frame of the input')
    p.add_argument('--end', type=float, help='last frame, seconds after the first frame of the input')
    p.add_argument('--max-frames', type=int, help='label at most this many frames of the window (>= 1)')
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
    p.add_argument('--prompt-chunk', type=int, default=32,
                   help='prompts fitted together; frames with more are labelled in chunks of this size '
                        '(bounds memory, logs progress); the config key max_prompts caps them per frame')
    p.add_argument('--rectified', action='store_true',
                   help='the image topic is rectified (image_rect): project with camera_info P and ignore d')
    p.add_argument('--no-undistort', action='store_true',
                   help='refuse raw images whose camera_info has non-zero distortion d (default: undistort '
                        'them with OpenCV, as the fitter node does)')
    p.add_argument('--tracks', action='store_true',
                   help='track the labels across frames (ids = track ids, one size per car, heading from '
                        'motion, interpolated gaps); adds kitti/label_02/0000.txt and report/tracks_bev.png')
    p.add_argument('--occupancy', nargs='?', const=True, default=False, type=float, metavar='VOXEL',
                   help='write a semantic occupancy grid per frame (free / car with its id / ground / '
                        'other / unknown) to occupancy/<frame>.npz + occupancy/occupancy.json and '
                        'report/occupancy_bev.png; VOXEL = voxel edge in metres (default: the config\'s '
                        'occupancy.voxel, 0.2); the grid box and the other settings: config section '
                        'occupancy')
    p.add_argument('--ego', default='auto', choices=('auto', 'tf', 'oxts', 'icp'),
                   help="ego motion for --tracks and --occupancy: the bag's dynamic /tf, KITTI raw OXTS, or "
                        "ICP between the sweeps; 'auto' (default) takes the first the input has")
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def _import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='autolabel-bag import-kitti-raw',
                                description='Write a KITTI raw drive into a rosbag2 (version 8) with the '
                                            "simulator's topics.")
    p.add_argument('drive', help='folder with image_02/data, velodyne_points/data (+ calib.txt)')
    p.add_argument('--out', required=True, help='rosbag2 folder to create')
    p.add_argument('--storage', default='mcap', choices=('mcap', 'sqlite3'),
                   help='rosbag2 storage plugin (default mcap)')
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

    from autolabel_ros.io.outdir import OutputDirError

    errs = [BagError, ConfigError, KittiFormatError, OutputDirError, FileNotFoundError]
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

    from autolabel_ros.io.outdir import check_new_path

    a = _import_parser().parse_args(argv)
    created = False
    try:
        if not a.rate > 0:
            raise ValueError(f'--rate {a.rate}: must be a positive frame rate in Hz')
        check_new_path(a.out)
        created = True     # from here on the folder at --out is this run's (it did not exist)
        res = import_kitti_raw(a.drive, a.out, storage=a.storage,
                               calib=read_calib(a.calib) if a.calib else None,
                               rate_hz=a.rate,
                               start_ns=None if a.start_time is None else int(a.start_time * 1e9))
    except (ValueError, *_errors()) as e:
        if created:
            _remove_partial_bag(a.out)
        print(f'autolabel-bag import-kitti-raw: error: {e}', file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        if created:
            _remove_partial_bag(a.out)
        print(f'autolabel-bag import-kitti-raw: error: writing {a.out}: {_os_reason(e)}; the partial bag '
              f'was removed', file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {res['frames']} frames to {res['out']} ({res['storage']})")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'import-kitti-raw':
        return _import_main(argv[1:])
    try:
        return _label_main(argv)
    except KeyboardInterrupt:    # Ctrl-C outside the labelling (while the libraries load, ...)
        print('autolabel-bag: interrupted; run the same command again to resume', file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        # some extensions turn a Ctrl-C during their import into another error (open3d: ImportError
        # 'initialization failed', raised from the KeyboardInterrupt)
        from autolabel_ros.core.interrupts import caused_by_interrupt
        if not caused_by_interrupt(e):
            raise
        print(f'autolabel-bag: interrupted; finished frames are kept in {_frames_dir(argv)}, run the same '
              f'command again to resume', file=sys.stderr)
        # the half-initialised extension can fail the interpreter's shutdown (seen: exit 1), so the
        # process ends here; only a real Ctrl-C gets here, never a call from a test
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


def _frames_dir(argv) -> Path:
    out = argv[argv.index('--out') + 1] if '--out' in argv[:-1] else '.'
    return Path(out) / '.frames'


def _label_main(argv) -> int:
    a = _parser().parse_args(argv)
    if a.workers > 1 and not a.ray:
        # local workers: the thread pools that size themselves when their library loads (OpenBLAS,
        # with numpy) get a worker's share now, before they load here: the workers are forked from
        # this process and keep their sizes (offline/parallel.fork_start)
        from autolabel_ros.core.device import POOL_ENV, threads_per_worker
        share = a.threads or threads_per_worker(a.workers)
        os.environ.update({k: str(share) for k in POOL_ENV})
    logging.basicConfig(level=logging.INFO if not a.quiet else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    from autolabel_ros.offline.job import BagJob, run_job

    job = BagJob(input=a.input, out=a.out, config=a.config, image_topic=a.image_topic,
                 info_topic=a.info_topic, cloud_topic=a.cloud_topic, prompts=a.prompts, start=a.start,
                 end=a.end, max_frames=a.max_frames, workers=a.workers, threads=a.threads, ray=a.ray,
                 resume=not a.no_resume, copy_sensors=not a.no_copy_sensors,
                 calib=a.calib, storage=a.storage, tolerance=a.tolerance, progress=not a.quiet,
                 rectified=a.rectified, undistort=not a.no_undistort, overwrite=a.overwrite,
                 prompt_chunk=a.prompt_chunk, tracks=a.tracks, ego=a.ego, occupancy=a.occupancy is not False,
                 occupancy_voxel=None if isinstance(a.occupancy, bool) else a.occupancy)
    frames_dir = Path(a.out) / '.frames'
    try:
        summary = run_job(job)
    except KeyboardInterrupt:
        print(f'autolabel-bag: interrupted; finished frames are kept in {frames_dir} (frames in flight '
              f'are redone), run the same command again to resume', file=sys.stderr)
        return EXIT_INTERRUPTED
    except _errors() as e:
        from autolabel_ros.config import ConfigError
        kind = 'config error' if isinstance(e, ConfigError) else 'error'
        print(f'autolabel-bag: {kind}: {e}', file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:   # disk full, file system gone read-only, ... while writing
        n = len(list(frames_dir.glob('[0-9]*.json'))) if frames_dir.is_dir() else 0
        print(f'autolabel-bag: error: writing {a.out}: {_os_reason(e)}; {n} finished frames are kept in '
              f'{frames_dir}, run the same command again to resume', file=sys.stderr)
        return EXIT_USAGE
    fr, ob = summary['frames'], summary['objects']
    print(f"{fr['labelled']}/{fr['selected']} frames labelled ({fr['failed']} failed), "
          f"{ob['accepted']} labels accepted, {ob['rejected']} rejected"
          + (f", {sum(ob['dropped_prompts'].values())} prompts dropped" if ob.get('dropped_prompts') else ''))
    if ob.get('prompts_by_source'):
        print('prompts by source: ' + ', '.join(f'{k} {v}' for k, v in ob['prompts_by_source'].items())
              + '; accepted labels by source: '
              + (', '.join(f'{k} {v}' for k, v in ob['accepted_by_source'].items()) or 'none'))
    if summary.get('fleet'):
        from autolabel_ros.fit.fleet import FleetLength
        print(FleetLength(**summary['fleet']).summary())
    if summary.get('tracks'):
        t = summary['tracks']
        print(f"{t['tracks']} tracks ({t['moving_tracks']} moving), {t['interpolated_boxes']} interpolated "
              f"boxes; ego motion from {t['ego_source']} ({t['path_m']:.1f} m driven)")
    if summary.get('occupancy'):
        o = summary['occupancy']
        print(f"occupancy: {o['frames']} grids of {' x '.join(str(n) for n in o['shape'])} voxels of "
              f"{o['voxel']:g} m in occupancy/")
    fps = summary['run'].get('frames_per_s')
    if fps:
        print(f'{fps:.3f} frames/s with {a.workers} worker(s){" on Ray" if a.ray else ""}')
    from autolabel_ros.io.outdir import own_files
    own = own_files(a.out)        # this run's files: a user's folder of the same name is not an output
    names = [n for n in ('labels.bag', 'kitti/', 'openlabel.json', 'meshes/', 'report/summary.json',
                         'report/tracks_bev.png', 'occupancy/', 'report/occupancy_bev.png')
             if any(f == n or f.startswith(n.rstrip('/') + '/') for f in own)]
    print(f"outputs in {a.out}: {', '.join(names)}")
    if fr['labelled'] == 0:
        failed = fr.get('failed_frames') or [{}]
        first = f"frame {failed[0]['frame']}: {failed[0]['error']}" if failed[0] else 'see the log'
        print(f"autolabel-bag: error: 0 of {fr['selected']} frames could be labelled (first: {first}); all "
              f"errors in {Path(a.out) / 'report' / 'summary.json'}", file=sys.stderr)
        return EXIT_NOTHING_LABELLED
    return 0


def _os_reason(e: OSError) -> str:
    return f'{e.strerror or e}' + (f' ({e.filename})' if getattr(e, 'filename', None) else '')


def _remove_partial_bag(path) -> None:
    """Only called for a folder this run created: a half-written bag is no use to anyone."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == '__main__':
    from autolabel_ros.core.interrupts import run_quietly
    run_quietly(lambda: main, EXIT_INTERRUPTED, skip_teardown=True)
