"""The offline autolabeling job: input -> per-frame results (persisted, resumable) -> outputs.

Outputs are always assembled from the persisted per-frame results, after all frames are done, in a
staging folder moved into place at the end. So an interrupted run that is resumed gives the same
bytes as an uninterrupted one (everything but ``report/timing.png`` and the ``timing`` / ``run``
entries of ``report/summary.json``), whatever the number of workers.
"""
from __future__ import annotations

import hashlib
import heapq
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from autolabel_ros.core.interrupts import caused_by_interrupt
from autolabel_ros.io.bags import BagError, BagSource
from autolabel_ros.offline.annotations import AnnotationCache, annotation_messages, record_annotations
from autolabel_ros.offline.phases import PhaseClock, process_usage, schedule_summary, worker_summary
from autolabel_ros.offline.store import FrameStore, atomic_write_bytes, atomic_write_text, canonical_json
from autolabel_ros.offline.worker import SPAN_KEY, FrameTask, label_from_dict

log = logging.getLogger(__name__)



@dataclass
class BagJob:
    """Options of one run (the CLI flags of ``autolabel-bag``)."""

    input: str
    out: str
    config: Optional[str] = None
    image_topic: Optional[str] = None
    info_topic: Optional[str] = None
    cloud_topic: Optional[str] = None
    prompts: str = 'fused'             # fused (detector + LiDAR) | detector | topic:NAME | gt (KITTI object)
    start: Optional[float] = None      # seconds after the first frame
    end: Optional[float] = None
    max_frames: Optional[int] = None
    workers: int = 1
    threads: Optional[int] = None      # torch threads per worker (default: cpus / workers; 1 per Ray actor)
    ray: Optional[str] = None          # 'local' or a cluster address
    resume: bool = True
    copy_sensors: bool = True
    calib: Optional[str] = None        # KITTI calib file: extrinsic (and K without camera_info)
    storage: str = 'mcap'              # label bag storage: mcap | sqlite3
    tolerance: float = 0.05            # camera/LiDAR pairing tolerance, seconds
    rectified: bool = False            # the image topic is rectified: camera_info P, no undistortion
    undistort: bool = True             # remove camera_info d from raw images (false: refuse them)
    progress: bool = True
    overwrite: bool = False            # write into a non-empty folder the tool did not write
    prompt_chunk: int = 32             # prompts fitted together; bigger frames go in chunks of this
    tracks: bool = False               # track the labels across frames (offline/tracking.py)
    ego: str = 'auto'                  # ego motion for the tracks and the occupancy: auto | tf | oxts | icp
    occupancy: bool = False            # per-frame occupancy grids (offline/occupancy.py); config occupancy.*
    occupancy_voxel: Optional[float] = None   # their voxel edge (m); None = the config's occupancy.voxel


TOOL = 'autolabel-bag'


def check_options(job: BagJob) -> None:
    """Option values that would silently do something else than asked; one line naming the flag."""
    def bad(flag, value, need):
        raise BagError(f'{flag} {value}: must be {need}')

    if job.max_frames is not None and job.max_frames < 1:
        bad('--max-frames', job.max_frames, '>= 1 (leave it out for all frames)')
    if job.workers < 1:
        bad('--workers', job.workers, '>= 1')
    if job.threads is not None and job.threads < 1:
        bad('--threads', job.threads, '>= 1')
    if not (job.tolerance > 0 and np.isfinite(job.tolerance)):
        bad('--tolerance', job.tolerance, 'a positive number of seconds')
    for flag, v in (('--start', job.start), ('--end', job.end)):
        if v is not None and not (np.isfinite(v) and v >= 0):
            bad(flag, v, 'seconds >= 0 after the first frame')
    if job.start is not None and job.end is not None and job.end < job.start:
        raise BagError(f'--end {job.end} is before --start {job.start}')
    if job.prompt_chunk < 1:
        bad('--prompt-chunk', job.prompt_chunk, '>= 1')
    if job.tracks or job.occupancy:
        from autolabel_ros.offline.tracking import check_ego
        check_ego(job.ego)
    elif job.ego != 'auto':
        raise BagError(f'--ego {job.ego}: only used with --tracks or --occupancy')
    if not Path(job.input).exists():
        raise BagError(f'{job.input}: input not found')


def parse_prompts(spec: str) -> tuple[str, Optional[str]]:
    spec = (spec or 'fused').strip()
    if spec in ('detector', 'fused'):
        return spec, None
    if spec == 'gt':
        return 'gt', None
    if spec.startswith('topic:') and len(spec) > 6:
        return 'topic', spec[6:]
    raise BagError(f"--prompts must be 'detector', 'fused', 'topic:NAME' or 'gt', got {spec!r}")


def open_source(job: BagJob, calib=None):
    """A BagSource, KittiRawSource or KittiObjectSource depending on what INPUT is."""
    from autolabel_ros.io.kitti_raw import KittiObjectSource, KittiRawSource, is_kitti_object, is_kitti_raw

    path = Path(job.input)
    mode, topic = parse_prompts(job.prompts)
    if path.is_dir() and is_kitti_raw(path):
        return KittiRawSource(path, calib=calib)
    if path.is_dir() and is_kitti_object(path):
        return KittiObjectSource(path, calib=calib)
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        raise BagError(f'{path}: not a rosbag2 folder (no metadata.yaml), KITTI raw drive (image_02/data, '
                       f'velodyne_points/data) or KITTI object folder (calib/, velodyne/, image_2/)')
    return BagSource(path, image_topic=job.image_topic, info_topic=job.info_topic,
                     cloud_topic=job.cloud_topic,
                     prompts_topic=topic if mode == 'topic' else None, calib=calib, tolerance_s=job.tolerance,
                     rectified=job.rectified, undistort=job.undistort, progress=job.progress)


def _calib_dict(calib) -> Optional[dict]:
    if calib is None:
        return None
    return {k: np.asarray(getattr(calib, k)).tolist() for k in ('P2', 'R0_rect', 'Tr_velo_to_cam')}


def _calib_of(record: dict):
    from autolabel_ros.io.kitti import KittiCalib, calib_from_K

    if record.get('calib'):
        c = record['calib']
        return KittiCalib(P2=np.array(c['P2']), R0_rect=np.array(c['R0_rect']),
                          Tr_velo_to_cam=np.array(c['Tr_velo_to_cam']))
    return calib_from_K(np.array(record['K']), np.array(record['T_cam_lidar']))


def run_job(job: BagJob, on_frame: Optional[Callable[[int], None]] = None) -> dict:
    """Run (or resume) a job and write all outputs; returns the summary dict.

    ``on_frame(n_done_this_run)`` is called after each persisted frame (tests interrupt through it).
    """
    from autolabel_ros.config import load_config

    from autolabel_ros.io.outdir import prepare_output_dir, read_marker, undo_prepare
    from autolabel_ros.offline.parallel import check_ray_address

    t_start = time.perf_counter()
    clock = PhaseClock()
    clock.add('before_run', 0.0, time.process_time())    # interpreter start and imports (CPU only)
    # everything that can be checked without the models is checked before they load
    check_options(job)
    cfg = load_config(job.config)
    occupancy = _occupancy_wanted(job)
    calib = None
    if job.calib:
        from autolabel_ros.io.kitti import read_calib
        calib = read_calib(job.calib)
    mode, _ = parse_prompts(job.prompts)
    if job.ray:
        check_ray_address(job.ray)
    existed = Path(job.out).exists()
    had_marker = existed and read_marker(job.out) is not None
    out = prepare_output_dir(job.out, TOOL, overwrite=job.overwrite)
    try:
        return _run(job, cfg, calib, mode, occupancy, out, on_frame, clock, t_start)
    except BaseException:
        # a run that stops before writing anything (a wrong topic, --start past the end) leaves no
        # marker in the folder, nor the folder when it made it
        if not had_marker:
            undo_prepare(out, TOOL, created=not existed)
        raise


def _planned_outputs(job: BagJob, refs, occupancy: bool) -> list[str]:
    """The outputs whose names are known before the labelling (the per-frame KITTI files of the
    selected frames, the fixed names); meshes and the occupancy grids depend on the labels."""
    rels = ['openlabel.json', 'report/summary.json', 'report/confidence.png', 'report/timing.png']
    for ref in refs:
        rels += [f'kitti/label_2/{ref.name}.txt', f'kitti/calib/{ref.name}.txt']
    if job.tracks:
        rels += ['kitti/label_02/0000.txt', 'report/tracks_bev.png']
    if occupancy:
        rels += ['occupancy/occupancy.json', 'report/occupancy_bev.png']
    return rels


def _looks_like_frame_store(path: Path) -> bool:
    """A ``.frames`` folder of a run from before the marker listed its work folders."""
    import json

    try:
        manifest = json.loads((path / 'manifest.json').read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {'key', 'parts'} <= set(manifest)


def _run(job: BagJob, cfg, calib, mode, occupancy, out: Path, on_frame, clock, t_start) -> dict:
    from autolabel_ros.config import to_dict
    from autolabel_ros.io.outdir import check_outputs, claim_work_dir

    with open_source(job, calib) as source:
        if mode == 'gt' and source.kind != 'kitti_object':
            raise BagError('--prompts gt needs a KITTI object folder with label_2/ as INPUT')
        refs = source.select(job.start, job.end, job.max_frames)
        if not refs:
            window = ', '.join(f'{flag} {v:g} s' for flag, v in (('--start', job.start), ('--end', job.end))
                               if v is not None)
            stamps = [r.stamp_ns for r in source.index()]
            raise BagError(f"no frame in the window {window} (the input's {len(stamps)} frames span "
                           f'{(max(stamps) - min(stamps)) / 1e9:.1f} s)')
        if job.tracks or occupancy:   # an ego source asked for but absent fails now, not after the labelling
            from autolabel_ros.offline.tracking import check_ego_source
            check_ego_source(job.ego, source, refs)
        # a user's file at an output path stops the run now, not after the labelling
        check_outputs(out, TOOL, _planned_outputs(job, refs, occupancy), units=('labels.bag',))
        info = source.describe()
        # the occupancy settings change no label: saved frames stay valid when only they change
        key = {'input': str(Path(job.input).resolve()), 'source': info, 'prompts': job.prompts,
               'config': {k: v for k, v in to_dict(cfg).items() if k != 'occupancy'},
               'calib': _file_hash(job.calib), 'format': 1}
        if job.prompt_chunk != BagJob.prompt_chunk:    # the default leaves earlier runs' key as it was
            key['prompt_chunk'] = job.prompt_chunk
        # a user's folder named like a work folder is refused now, before either is listed as the tool's
        for name, own in (('.frames', _looks_like_frame_store), ('.assemble', None)):
            claim_work_dir(out, TOOL, name, looks_own=own, record=False)
        store = FrameStore(claim_work_dir(out, TOOL, '.frames', looks_own=_looks_like_frame_store), key,
                           resume=job.resume)
        done = store.done()
        todo = [r for r in refs if r.index not in done]
        log.info('%d frames selected, %d already done, %d to label', len(refs), len(refs) - len(todo),
                 len(todo))
        clock.add('start', time.perf_counter() - t_start, time.process_time() - clock.cpu['before_run'])
        labelled, spans = [], []
        streamed = StreamedOutputs(job, len(refs), clock)
        try:
            with clock('label'):
                if todo:
                    with clock('label.stream'):
                        streamed.start_figures()
                t_label = time.monotonic()
                failures = _label(job, cfg, source, todo, mode, calib, store, on_frame, clock, labelled,
                                  streamed.on_saved, spans)
                with clock('label.stream'):
                    streamed.labelling_done()
            wall = time.perf_counter() - t_start
            failures += [{'index': i, 'name': _name(refs, i), 'error': reason}
                         for i, reason in source.stats.corrupt_frames]
            failures.sort(key=lambda f: f['index'])
            summary = assemble(job, cfg, source, refs, store, failures, info,
                               run_info={'workers': job.workers, 'threads': job.threads, 'ray': job.ray,
                                         'labelled_this_run':
                                         len(todo) - len(failures), 'resumed_frames': len(refs) - len(todo),
                                         'wall_s': wall,
                                         'frames_per_s': (len(todo) / wall) if todo and wall > 0 else None,
                                         'workers_side': worker_summary(labelled),
                                         'schedule': schedule_summary(spans, t_label, job.workers)},
                               clock=clock, streamed=streamed)
        finally:
            streamed.close()
    return summary


class StreamedOutputs:
    """Output work done before the last frame rather than after it: the figure process is started
    (its imports) as the labelling starts, on the core that the model load leaves idle; with the
    first frame (forked workers: while the models load), the extensions of the output phase are
    imported; each frame's annotation messages for the label bag are built as it is saved. With more
    than one worker the workers have every core until the last frames: the messages wait for the
    tail (fewer frames left than workers, a core idle), where a thread of this process builds them
    while the last frames are labelled; what it has not built by the end is built at assembly
    (beside the figure process). The output phase then does what needs every frame."""

    # frames whose messages wait at most (~0.1 s CPU each): what the tail's thread leaves is built at
    # assembly beside the figure process (~3 s), more would make this process the critical path there
    DEFER_FRAMES = 16

    def __init__(self, job: BagJob, n_frames: int, clock: PhaseClock):
        # --tracks replaces the labels at assembly: their messages are built then
        self.annotations = None if job.tracks else AnnotationCache()
        self.n_frames = n_frames
        self.clock = clock
        self.figure_pool = None
        self.started = False
        self.deferred = queue.SimpleQueue() if job.workers > 1 and self.annotations is not None else None
        self.n_deferred = 0
        self._building = threading.Lock()     # one frame's messages at a time (the cache is not shared)
        self._stop = threading.Event()
        self._tail = None                      # the thread building the deferred frames' messages

    def start_figures(self) -> None:
        """The figure process, started now (before the models load: the workers are forked from
        this process once it has loaded them, or one worker labels in it, so a core is idle)."""
        if self.figure_pool is None and FigureJob.wanted(self.n_frames):
            self.figure_pool = start_figure_pool()

    def on_saved(self, record: dict, arrays: dict, saved_json: Optional[str] = None,
                 idle: bool = False) -> None:
        """``idle``: fewer frames are left to label than there are workers (a core to spare)."""
        with self.clock('label.stream'):
            if not self.started:
                self.started = True
                _preload_output_libraries()
            if self.annotations is None:
                return
            if self.deferred is not None:
                if idle or self.n_deferred < self.DEFER_FRAMES:
                    self.deferred.put((record, arrays, saved_json))
                    self.n_deferred += 1
                    if idle and self._tail is None:
                        self._tail = threading.Thread(target=self._build_deferred, daemon=True,
                                                      name='annotations-tail')
                        self._tail.start()
                    return
            self._build(record, arrays, saved_json)

    def _build(self, record: dict, arrays: dict, saved_json: Optional[str]) -> None:
        with self._building:
            try:
                self.annotations.add(record, arrays, saved_json)
            except Exception as e:   # noqa: BLE001 - the assembly builds it again and reports it
                log.debug('frame %s: annotations left to the assembly (%s)', record.get('name'), e)

    def _build_deferred(self) -> None:
        while not self._stop.is_set():
            item = self.deferred.get()
            if item is None or self._stop.is_set():
                return
            self._build(*item)

    def labelling_done(self) -> None:
        """Stop the tail's thread after its current frame; the frames it has not built are left to the
        assembly (which builds a frame's messages itself when the cache has none)."""
        if self._tail is not None:
            self._stop.set()
            self.deferred.put(None)
            self._tail.join()
            self._tail = None
        self.deferred = None

    def take_figure_pool(self):
        pool, self.figure_pool = self.figure_pool, None
        return pool

    def close(self):
        self.labelling_done()
        if self.figure_pool is not None:
            self.figure_pool.terminate()
            self.figure_pool.join()
            self.figure_pool = None


def _occupancy_wanted(job: BagJob) -> bool:
    """Whether the job writes occupancy grids (``--occupancy`` or the config's occupancy.enabled); the
    settings are checked now, before any labelling."""
    if not job.occupancy and job.occupancy_voxel is None and not job.config:
        return False
    from autolabel_ros.offline.occupancy import occupancy_config
    return occupancy_config(job).occupancy.enabled


def _preload_output_libraries():
    """Import the extensions the output phase needs (open3d: the markers' mesh decimation) here:
    open3d turns a Ctrl-C that lands in its import into an ImportError, which would make an
    interruption look like a crash (exit 1) instead of exit 130. Called with the first saved frame
    (not before the labelling: the workers start meanwhile; forked workers: while this process loads
    their models, offline/parallel.py) and again before the output phase."""
    try:
        import open3d  # noqa: F401
    except ImportError as e:  # the mesh decimation says so itself when it needs it
        if caused_by_interrupt(e):    # a Ctrl-C landed in the import: it stays a Ctrl-C
            raise KeyboardInterrupt from e



def _name(refs, index):
    for r in refs:
        if r.index == index:
            return r.name
    return str(index)


def _file_hash(path) -> Optional[str]:
    if not path:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _label(job, cfg, source, todo, mode, calib, store, on_frame, clock=None, labelled=None,
           on_saved=None, spans=None) -> list[dict]:
    """Label the frames still to do; persists each result as it arrives. Returns worker failures.
    ``clock`` gets the main process' reading (``label.read``) and saving (``label.save``) time;
    ``labelled`` the records of the frames labelled; ``spans`` when and on which worker each frame
    ran; ``on_saved(record, arrays, saved_json, idle)`` is called after each frame is saved (``idle``:
    fewer frames are left than workers)."""
    from tqdm import tqdm

    from autolabel_ros.config import to_dict
    from autolabel_ros.offline.parallel import run_tasks

    if not todo:
        return []

    clock = clock or PhaseClock()
    labelled = [] if labelled is None else labelled

    def tasks():
        frames = iter(source.iter_frames(todo, prompts_from_topic=(mode == 'topic'),
                                         **({'gt_prompts': True} if mode == 'gt' else {})))
        while True:
            with clock('label.read'):
                item = next(frames, None)
            if item is None:
                return
            ref, frame, prompts = item
            kcal = calib or (source.kitti_calib(ref) if hasattr(source, 'kitti_calib') else None)
            yield FrameTask(index=ref.index, name=ref.name, stamp_ns=ref.stamp_ns, frame=frame,
                            prompts=None if mode in ('detector', 'fused') else list(prompts),
                            calib=_calib_dict(kcal), fused=mode == 'fused',
                            dropped_prompts=[d.as_dict() for d in getattr(prompts, 'dropped', ())],
                            prompt_chunk=job.prompt_chunk)

    failures = []
    n = 0
    bar = tqdm(total=len(todo), unit='frame', desc='autolabel', disable=not job.progress, dynamic_ncols=True)
    # the first frame comes after the models load (seconds to a minute): say so, and keep the clock going
    bar.set_postfix_str('loading the models')
    ticker = _Ticker(bar) if job.progress else None
    try:
        # forked workers: the output phase's extensions are imported while the models load
        for record, arrays in run_tasks(tasks(), to_dict(cfg), workers=job.workers, ray_address=job.ray,
                                        threads=job.threads, meanwhile=_preload_output_libraries):
            span = record.pop(SPAN_KEY, None)
            if span is not None and spans is not None:
                spans.append(span)
            if arrays is None:
                failures.append(record)
            else:
                with clock('label.save'):
                    saved_json = store.save(record, arrays)
                labelled.append(record)
                if on_saved is not None:
                    # fewer frames left than workers after this one: a worker has none, a core is idle
                    on_saved(record, arrays, saved_json, idle=len(todo) - n - 1 < job.workers)
            n += 1
            bar.update(1)
            bar.set_postfix(failed=len(failures) + len(source.stats.corrupt_frames))
            if on_frame is not None:
                on_frame(n)
    except KeyboardInterrupt:
        bar.close()
        log.warning('interrupted: %d frames are saved under %s; run the same command again to resume',
                    len(store.done()), store.root)
        raise
    finally:
        if ticker is not None:
            ticker.stop()
    bar.close()
    return failures


_DRAWING = threading.Lock()     # held by the ticker while it writes to the terminal, and by a fork:
# a worker forked while the ticker held the lock of sys.stderr would inherit it held, and hang at its
# first log line
if hasattr(os, 'register_at_fork'):     # POSIX
    os.register_at_fork(before=_DRAWING.acquire, after_in_parent=_DRAWING.release,
                        after_in_child=_DRAWING.release)


class _Ticker:
    """Redraws a progress bar every second from a thread, so its elapsed time moves while a step
    takes long (tqdm redraws only when it is updated)."""

    def __init__(self, bar, every_s: float = 1.0):
        self.bar = bar
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s):
        while not self._stop.wait(every_s):
            with _DRAWING:
                self.bar.refresh()

    def stop(self):
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------------------------
# assembly

def assemble(job: BagJob, cfg, source, refs, store: FrameStore, failures, info, run_info, clock=None,
             streamed: Optional[StreamedOutputs] = None) -> dict:
    """All outputs from the saved frames, built in ``OUTDIR/.assemble`` then moved into place; a
    failure (disk full) removes the staging folder and leaves the previous outputs and the saved
    frames as they were."""
    from autolabel_ros.io.outdir import ForeignFileError, claim_work_dir, release_work_dir

    _preload_output_libraries()      # done with the first frame unless every frame was saved before
    out = Path(job.out)
    stage = claim_work_dir(out, TOOL, '.assemble')
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    from tqdm import tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=0, unit='step', desc='writing', disable=not job.progress, dynamic_ncols=True)
    keep = False
    try:
        summary = _assemble(job, cfg, source, refs, store, failures, info, run_info, out, stage, bar,
                            clock or PhaseClock(), streamed)
    except ForeignFileError as e:     # nothing moved: the outputs stay staged
        keep = True
        raise ForeignFileError(f'{e} and its labelled frames in {store.root}: run the same command again '
                               f'once it is moved') from None
    finally:
        bar.close()
        if not keep:
            shutil.rmtree(stage, ignore_errors=True)
            try:
                release_work_dir(out, TOOL, '.assemble')
            except OSError:         # a full disk: the marker keeps listing it, the next run removes it
                pass
    log.info('outputs written in %.1f s', time.perf_counter() - t0)
    return summary


def _per_frame(records, failures, what: str, fn) -> list:
    """Apply ``fn`` to each record; a record it fails on is moved to ``failures`` (logged), so one bad
    frame never stops the assembly of the others."""
    kept = []
    for rec in records:
        try:
            fn(rec)
        except OSError:
            raise                      # the file system, not the frame: the run cannot go on
        except Exception as e:         # noqa: BLE001 - anything a malformed record raises
            log.warning('frame %s: %s failed (%s: %s); left out of the outputs', rec['name'], what,
                        type(e).__name__, e)
            failures.append({'index': rec['index'], 'name': rec['name'],
                             'error': f'{what}: {type(e).__name__}: {e}'})
            continue
        kept.append(rec)
    return kept


def _assemble(job, cfg, source, refs, store, failures, info, run_info, out, stage, bar, clock,
              streamed) -> dict:
    """``bar``: the progress bar of the output phase, one step per selected frame loaded, written to
    KITTI, built into bag messages and written to the bag, per mesh and per figure."""
    from autolabel_ros.io import report, writers

    t0, c0 = time.perf_counter(), time.process_time()
    failures = list(failures)
    bar.total = 4 * len(refs) + report.figure_count(len(refs)) + 1
    bar.refresh()
    records, arrays, labels = [], {}, {}

    def load(ref):
        rec, arr = store.load(ref.index)
        labels[ref.index] = [label_from_dict(d, arr, k) for k, d in enumerate(rec['labels'])]
        arrays[ref.index] = arr
        records.append(rec)

    with clock('write.load'):
        for ref in refs:
            if store.has(ref.index):
                _per_frame([{'index': ref.index, 'name': ref.name}], failures, 'loading the saved frame',
                           lambda _r, ref=ref: load(ref))
            bar.update(1)

    with clock('write.fleet'):
        run_info['fleet'] = _fleet_length(cfg, records, labels, streamed)
    track_info = None
    tw = time.perf_counter(), time.process_time()
    if job.tracks and records:
        from autolabel_ros.offline import tracking

        tracked, track_info, _, pose_of, thin = tracking.track_drive(
            job.ego, source, refs, records, labels, job.progress, refitter=tracking.make_refitter(cfg))
        labels.update(tracked)
        atomic_write_text(stage / 'kitti' / 'label_02' / '0000.txt',
                          ''.join(line + '\n' for line in tracking.tracking_lines(records, labels)))
        try:
            tracking.tracks_figure(stage / 'report' / 'tracks_bev.png', tracked, pose_of, thin,
                                   f"{Path(job.input).name}: tracks (ego motion: {track_info['ego_source']})")
        except OSError:
            raise
        except Exception as e:   # noqa: BLE001 - a figure must not cost the labels
            log.warning('tracks figure failed (%s: %s)', type(e).__name__, e)
    occupancy_info = occupancy_s = None
    if records and _occupancy_wanted(job):
        from autolabel_ros.offline import occupancy

        if track_info is None:
            pose_of, ego_source = occupancy.ego_poses(job.ego, source, refs, records)
        occupancy_info, occupancy_s = occupancy.write_occupancy(
            stage, occupancy.occupancy_config(job), source, refs, records, labels, pose_of,
            'track id' if track_info is not None else 'label id', job.progress)
        occupancy_info['ego_source'] = track_info['ego_source'] if track_info is not None else ego_source
    if job.tracks or occupancy_info is not None:
        clock.add('write.tracks_occupancy', time.perf_counter() - tw[0], time.process_time() - tw[1])
    # KITTI label_2 + calib (io/kitti_policy.py: rejected labels below the accept threshold; an empty
    # file for a frame without any); with --tracks the tracked labels, boxes the tracker interpolated
    # left out
    from autolabel_ros.io.kitti_policy import kitti_predictions

    def kitti(rec):
        preds = [lab for lab in kitti_predictions(labels[rec['index']]) if np.all(np.isfinite(lab.box7))
                 and not lab.metrics.get('interpolated')]
        try:
            writers.write_kitti_frame_labels(stage / 'kitti', rec['name'], preds, _calib_of(rec),
                                             rec['width'], rec['height'])
        except Exception:
            for sub in ('label_2', 'calib'):    # no half of a frame in the outputs
                (stage / 'kitti' / sub / f"{rec['name']}.txt").unlink(missing_ok=True)
            raise
        bar.update(1)
    with clock('write.kitti'):
        records = _per_frame(records, failures, 'writing KITTI labels', kitti)
    # the report's figures draw on the other core while this one writes meshes and the bag
    bar.total += report.figure_count(len(records)) - report.figure_count(len(refs))
    with clock('write.figures_start'):
        figure_job = FigureJob(stage / 'report', records, {i: a.get('bev') for i, a in arrays.items()},
                               pool=streamed.take_figure_pool() if streamed is not None else None)
    prebuilt = streamed.annotations if streamed is not None and not job.tracks else None
    try:
        return _assemble_rest(job, source, refs, failures, info, run_info, out, stage, bar, (t0, c0),
                              records, labels, track_info, figure_job, occupancy_info, occupancy_s, clock,
                              prebuilt)
    finally:
        figure_job.close()


def _fleet_length(cfg, records, labels: dict, streamed) -> Optional[dict]:
    """The run's fleet length (fit/fleet.py, ``cfg.fit.fleet_length``) over every saved frame: the labels
    of the cars not seen side-on, changed in ``labels``; their frames' prebuilt bag messages are dropped
    (built again). Returns what it read (None when off or nothing was labelled)."""
    from autolabel_ros.fit import fleet
    from autolabel_ros.pipeline import prior_mean_size

    if not cfg.fit.fleet_length or not records:
        return None
    order = [rec['index'] for rec in records]
    frames, result = fleet.apply([labels[i] for i in order], float(prior_mean_size(cfg)[0]))
    for rec, new in zip(records, frames):
        i = rec['index']
        changed = [k for k, (a, b) in enumerate(zip(labels[i], new)) if a is not b]
        if not changed:
            continue
        labels[i] = new
        for k in changed:            # the record's copy too: the report's figures draw from it
            if k < len(rec.get('labels', [])):
                rec['labels'][k].update(center=new[k].center.tolist(), size=new[k].size.tolist())
        if streamed is not None and streamed.annotations is not None:
            streamed.annotations.drop(i)
    log.info(result.summary())
    return asdict(result)


def _assemble_rest(job, source, refs, failures, info, run_info, out, stage, bar, t0, records, labels,
                   track_info, figure_job, occupancy_info, occupancy_s, clock, prebuilt) -> dict:
    from autolabel_ros.io import report, writers
    from autolabel_ros.io.outdir import install_tree

    # meshes
    meshed = [(rec['name'], lab) for rec in records for lab in labels[rec['index']]
              if lab.accepted and lab.mesh is not None]
    bar.total += len(meshed)
    bar.refresh()
    with clock('write.meshes'):
        for name, lab in meshed:
            atomic_write_bytes(stage / 'meshes' / f'{name}_{lab.id}.ply', writers.mesh_to_ply_bytes(lab.mesh))
            bar.update(1)
    n_meshes = len(meshed)
    # the bar counts the loaded frames, the KITTI files and the bag frames (built, written) of every
    # selected frame: the KITTI steps of frames that failed are made up here
    bar.update(len(refs) - len(records))
    failures.sort(key=lambda f: f['index'])
    # OpenLABEL
    first = records[0] if records else None
    with clock('write.openlabel'):
        doc = writers.build_openlabel(
            [{'index': rec['index'], 'name': rec['name'], 'stamp_ns': rec['stamp_ns'],
              'labels': [lab for lab in labels[rec['index']] if lab.accepted]} for rec in records],
            K=first and first['K'], T_cam_lidar=first and first['T_cam_lidar'],
            width=first and first['width'], height=first and first['height'],
            lidar_frame=first['lidar_frame'] if first else 'lidar',
            camera_frame=first['camera_frame'] if first else 'camera', source=Path(job.input).name,
            tracked=bool(job.tracks))
        atomic_write_text(stage / 'openlabel.json', canonical_json(doc))
    # label bag
    with clock('write.bag'):
        bag_counts = write_label_bag(stage / 'labels.bag', job, source, refs, records, labels, failures,
                                     on_frame=lambda: bar.update(1), clock=clock, prebuilt=prebuilt)
    bar.update(1)
    # report
    outputs = {'labels_bag': 'labels.bag', 'bag_storage': job.storage, 'bag_messages': bag_counts,
               'kitti_label_files': len(records), 'meshes': n_meshes, 'openlabel': 'openlabel.json'}
    if track_info is not None:
        outputs['kitti_tracking'] = 'kitti/label_02/0000.txt'
        if (stage / 'report' / 'tracks_bev.png').is_file():
            outputs['tracks_figure'] = 'report/tracks_bev.png'
    if occupancy_info is not None:
        outputs['occupancy'] = 'occupancy/'
        if (stage / 'report' / 'occupancy_bev.png').is_file():
            outputs['occupancy_figure'] = 'report/occupancy_bev.png'
    summary = report.build_summary(records, failures, info, source.stats.as_dict(), len(refs), outputs)
    if occupancy_info is not None:
        summary['occupancy'] = {k: occupancy_info[k] for k in ('frames', 'voxel', 'shape', 'origin',
                                                               'instance', 'window', 'ego_source',
                                                               'voxels_by_class')}
    if track_info is not None:
        summary['tracks'] = track_info
    if run_info.get('fleet'):
        summary['fleet'] = run_info['fleet']
    with clock('write.figures_wait'):
        figures = figure_job.result(bar)
    if isinstance(figures, Exception):
        log.warning('report figures failed (%s: %s); the labels are written without them',
                    type(figures).__name__, figures)
        summary['outputs']['figures_error'] = f'{type(figures).__name__}: {figures}'
        figures = []
    summary['outputs']['figures'] = ['report/' + f for f in figures]
    summary['timing'] = report.timing_summary(records)
    if occupancy_s:
        summary['timing']['occupancy_s'] = report.percentiles(occupancy_s)
    # the output phase up to here (the summary and the move into place take milliseconds)
    clock.add('write', time.perf_counter() - t0[0], time.process_time() - t0[1])
    summary['run'] = dict(run_info, write_s=time.perf_counter() - t0[0], phases=clock.as_dict(),
                          usage=process_usage(), figures_child_cpu_s=figure_job.child_cpu_s)
    atomic_write_text(stage / 'report' / 'summary.json', canonical_json(summary))
    # move into place, replacing only the files this tool wrote before
    install_tree(stage, out, TOOL)
    return summary


def _figure_process_start():
    """The figure process leaves a Ctrl-C to the main one, which stops it (no second traceback), and
    imports what it draws with as soon as it starts."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from autolabel_ros.io.report import _plt
    _plt()


def _figures_in_child(*args):
    """The figures, and the figure process' CPU seconds since it started (its imports included)."""
    from autolabel_ros.io.report import write_figures

    figures = write_figures(*args)
    return figures, time.process_time()


def start_figure_pool():
    """A spawned process for :class:`FigureJob`, or None when the system has none to spare."""
    import multiprocessing as mp

    try:
        return mp.get_context('spawn').Pool(1, initializer=_figure_process_start)
    except OSError as e:    # no process to spare: drawn here instead
        log.info('figures drawn in this process (%s)', e)
        return None


class FigureJob:
    """The report's figures (``io/report.write_figures``), drawn in a spawned process when the machine
    has a core to spare and the run enough frames to pay for the process' start (~2 s of imports),
    else in this one when the result is asked for. Same bytes either way. ``pool``: a process started
    earlier by :func:`start_figure_pool` (its imports done while the frames were labelled); the job
    owns it from then on."""

    MIN_FRAMES = 6      # below this the figures take about as long as starting the process

    @classmethod
    def wanted(cls, n_frames: int) -> bool:
        return n_frames >= cls.MIN_FRAMES and (os.cpu_count() or 1) > 1

    def __init__(self, report_dir: Path, records: list, bevs: dict, spawn: Optional[bool] = None,
                 pool=None):
        self.args = (Path(report_dir), records, bevs)
        self.pool = self.pending = None
        self.child_cpu_s = None          # the figure process' CPU seconds, once it is done
        self.before = self._pngs()
        if pool is None and (self.wanted(len(records)) if spawn is None else spawn):
            pool = start_figure_pool()
        if pool is not None:
            self.pool = pool
            try:
                self.pending = self.pool.apply_async(_figures_in_child, self.args)
            except (OSError, ValueError) as e:    # the process is gone: drawn here instead
                log.info('figures drawn in this process (%s)', e)
                self.close()

    def _pngs(self) -> int:
        return sum(1 for _ in self.args[0].rglob('*.png')) if self.args[0].is_dir() else 0

    def result(self, bar):
        """The figure paths, or the exception that stopped them (an OSError is raised: the disk)."""
        from autolabel_ros.io import report

        try:
            if self.pending is None:
                return report.write_figures(*self.args, on_figure=lambda: bar.update(1))
            # the child reports nothing while it draws: the PNGs it has saved are its progress
            start = bar.n
            while not self.pending.ready():
                self.pending.wait(0.5)
                bar.n = start + self._pngs() - self.before
                bar.refresh()
            figures, self.child_cpu_s = self.pending.get()
            bar.n = start + len(figures)
            bar.refresh()
            return figures
        except OSError:
            raise
        except Exception as e:   # noqa: BLE001 - a figure must not cost the labels
            return e
        finally:
            self.close()

    def close(self):
        """Stop the child (a failed or interrupted output phase does not wait for its figures)."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


def write_label_bag(path: Path, job: BagJob, source, refs, records, labels, failures, on_frame=None,
                    clock=None, prebuilt: Optional[AnnotationCache] = None) -> dict:
    """The annotated bag: copied sensor topics, /tf_static, and per frame markers + 3D/2D detections.
    ``on_frame()`` is called twice per selected frame (a progress bar): when its messages are built,
    and when the bag is written past its stamp (copying the sensor topics is most of the time).
    ``prebuilt``: frames' annotation messages built as they were labelled (same bytes);
    ``clock`` gets the building of the others (``write.bag.annotations``)."""
    from autolabel_ros.io import messages as M
    from autolabel_ros.io.kitti_raw import CAMERA_FRAME, LIDAR_FRAME
    from autolabel_ros.io.label_bag import BagWriter
    from autolabel_ros.io.ros_types import get_typestore

    ts = get_typestore()
    fac = M.rosbags_factory(ts)
    ann = []   # (t, order, topic, msgtype, data)
    by_index = {rec['index']: rec for rec in records}
    failed = {f['index'] for f in failures}
    tb = time.perf_counter(), time.process_time()
    for ref in refs:
        if on_frame:
            on_frame()
        rec = by_index.get(ref.index)
        if rec is None:
            if ref.index in failed:     # no prompts (the DELETEALL clears the view)
                ann += annotation_messages(ref.stamp_ns, ref.extra.get('lidar_frame') or LIDAR_FRAME,
                                           ref.extra.get('camera_frame') or CAMERA_FRAME,
                                           labels.get(ref.index, []), [], ts, fac)
            continue
        msgs = prebuilt.get(ref.index) if prebuilt is not None else None
        ann += msgs if msgs is not None else record_annotations(rec, labels.get(ref.index, []), ts, fac)
    if clock is not None:
        clock.add('write.bag.annotations', time.perf_counter() - tb[0], time.process_time() - tb[1])
    with BagWriter(path, storage=job.storage, typestore=ts) as w:
        if isinstance(source, BagSource) and source.calib is None and source.tf_topics:
            tf_msgs = list(source.tf_static_messages())
        else:
            tf_msgs = []
        if not tf_msgs and records:
            r0 = records[0]
            msg = M.make_tf_static(np.array(r0['T_cam_lidar']), r0['camera_frame'], r0['lidar_frame'],
                                   r0['stamp_ns'], fac)
            tf_msgs = [('/tf_static', msg.__msgtype__, r0['stamp_ns'],
                        bytes(ts.serialize_cdr(msg, msg.__msgtype__)), None)]
        for topic, msgtype, t, data, conn in tf_msgs:
            w.write_raw(topic, msgtype, t, data, conn)
        sensors = source.sensor_messages(refs) if job.copy_sensors else iter(())
        anns = sorted(ann, key=lambda a: (a[0], a[1]))
        merged = heapq.merge(((m[2], 0, m) for m in sensors), ((a[0], 1, a) for a in anns),
                             key=lambda x: (x[0], x[1]))
        stamps = sorted(ref.stamp_ns for ref in refs)
        done = 0
        for t, kind, item in merged:
            while on_frame and done < len(stamps) and stamps[done] < t:
                on_frame()                # every message of the frames before t is written
                done += 1
            if kind == 0:
                topic, msgtype, t, data, conn = item
                w.write_raw(topic, msgtype, t, data, conn)
            else:
                t, _, topic, msgtype, data = item
                w.write_raw(topic, msgtype, t, data)
        for _ in range(len(stamps) - done if on_frame else 0):
            on_frame()
        counts = dict(sorted(w.counts.items()))
    return counts


def job_from_dict(d: dict) -> BagJob:
    return BagJob(**d)


def job_to_dict(job: BagJob) -> dict:
    return asdict(job)
