"""The whole offline job with the real pipeline (box masks and a short fit keep it fast): outputs,
kill-and-resume identity, a corrupt frame skipped, workers=2 and Ray giving the same bytes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from fault_campaign import output_tree
from test_bag_fixtures import PERIOD, T0, car_box, fast_config, write_tiny_bag

from autolabel_ros.offline.job import BagJob, run_job

N_FRAMES = 5            # frame 1: undecodable image message, frame 3: unknown image encoding


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp('job')
    bag = write_tiny_bag(d / 'drive.bag', n=N_FRAMES, corrupt_message_at=1, bad_encoding_at=3)
    return bag, fast_config(d / 'fast.yaml')


def _job(inputs, out, **kw):
    bag, cfg = inputs
    return BagJob(input=str(bag), out=str(out), config=str(cfg), prompts='topic:/prompts', progress=False,
                  **kw)


@pytest.fixture(scope='module')
def reference(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp('ref')
    summary = run_job(_job(inputs, out))
    return out, summary, output_tree(out)


def test_outputs_complete_and_readable(reference):
    from rosbags.rosbag2 import Reader

    from autolabel_ros.io.ros_types import get_typestore

    out, summary, _ = reference
    fr = summary['frames']
    assert (fr['selected'], fr['labelled'], fr['failed']) == (4, 3, 1)
    assert 'yuv422_weird' in fr['failed_frames'][0]['error']
    assert summary['pairing']['corrupt_messages'] == 1 and summary['pairing']['unmatched_clouds'] == 1
    assert summary['objects']['labels'] == 3
    assert set(summary['timing']) >= {'frame_s', 'fit_s'} and summary['timing']['frame_s']['n'] == 3
    # frames are numbered by pair: bag frames 0, 2, 4 are pairs 000000, 000001, 000003 (000002 failed)
    for name in ['000000', '000001', '000003']:
        line = (out / 'kitti' / 'label_2' / f'{name}.txt').read_text().split('\n')[0].split()
        assert (out / 'kitti' / 'calib' / f'{name}.txt').is_file()
        if line:
            assert line[0] == 'Car' and len(line) == 16
    # every accepted label: a mesh that trimesh opens
    for p in (out / 'meshes').glob('*.ply'):
        m = trimesh.load(p, process=False)
        assert len(m.faces) > 100
    # OpenLABEL cuboids in the lidar frame
    doc = json.loads((out / 'openlabel.json').read_text())['openlabel']
    assert doc['metadata']['schema_version'] == '1.0.0'
    for frame in doc['frames'].values():
        for obj in frame['objects'].values():
            val = obj['object_data']['cuboid'][0]['val']
            assert len(val) == 10
    # the label bag: rosbag2 v8 MCAP, sensors copied, one MarkerArray per frame (also the failed one)
    meta = (out / 'labels.bag' / 'metadata.yaml').read_text()
    assert 'version: 8' in meta and 'storage_identifier: mcap' in meta
    stamps = {}
    ts = get_typestore()
    # rosbags' AnyReader takes any path ending in .bag for ROS 1: open the rosbag2 folder with its Reader
    with Reader(out / 'labels.bag') as r:
        topics = {c.topic: c.msgtype for c in r.connections}
        assert topics['/autolabel/markers'] == 'visualization_msgs/msg/MarkerArray'
        assert topics['/autolabel/detections_3d'] == 'vision_msgs/msg/Detection3DArray'
        assert {'/camera/image_raw', '/lidar/points', '/tf_static', '/autolabel/detections_2d'} <= set(topics)
        markers = [c for c in r.connections if c.topic == '/autolabel/markers']
        for c, t, raw in r.messages(connections=markers):
            msg = ts.deserialize_cdr(raw, c.msgtype)
            stamps[t] = msg
    expected = [T0 + i * PERIOD for i in (0, 2, 3, 4)]
    assert sorted(stamps) == expected
    assert stamps[T0].markers[0].action == 3 and stamps[T0].markers[0].ns == ''   # DELETEALL first, all ns
    assert len(stamps[T0 + 3 * PERIOD].markers) == 1          # the failed frame: DELETEALL only
    c, _, _ = car_box(0)
    cube = [m for m in stamps[T0].markers if m.ns.endswith('box')][0]
    assert np.hypot(cube.pose.position.x - c[0], cube.pose.position.y - c[1]) < 1.0
    for f in ('bev_sheet.png', 'confidence.png', 'timing.png'):
        assert (out / 'report' / f).stat().st_size > 5000


def test_interrupted_then_resumed_run_is_byte_identical(inputs, reference, tmp_path):
    out = tmp_path / 'resumed'

    def stop_after_one(n):
        if n == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(_job(inputs, out), on_frame=stop_after_one)
    assert len(list((out / '.frames').glob('0*.json'))) == 1 and not (out / 'openlabel.json').exists()
    summary = run_job(_job(inputs, out))
    assert summary['run']['resumed_frames'] == 1 and summary['run']['labelled_this_run'] == 2
    tree, ref = output_tree(out), reference[2]
    assert sorted(tree) == sorted(ref)
    assert [k for k in ref if tree[k] != ref[k]] == []
    # --no-resume discards the saved frames; a window; annotations only, in sqlite3
    summary = run_job(_job(inputs, out, resume=False, copy_sensors=False, start=0.0, end=0.05,
                           storage='sqlite3'))
    assert summary['run']['resumed_frames'] == 0 and summary['frames']['selected'] == 1
    assert set(summary['outputs']['bag_messages']) == {'/tf_static', '/autolabel/markers',
                                                       '/autolabel/detections_3d', '/autolabel/detections_2d'}
    assert 'storage_identifier: sqlite3' in (out / 'labels.bag' / 'metadata.yaml').read_text()
    assert sorted(p.name for p in (out / 'kitti' / 'label_2').iterdir()) == ['000000.txt']


@pytest.mark.parametrize('threads', [1, 2])
def test_two_worker_processes_give_the_same_outputs(inputs, reference, tmp_path, threads, monkeypatch):
    """One thread per worker (as many workers as cores) and BLAS capped to one thread (what
    autolabel-bag sets at its start): on Linux the workers are forked from this process after it
    loaded the models, which it reports as the run's one model load; two threads: spawned, each
    loading its own (offline/parallel.fork_start)."""
    import sys

    from autolabel_ros.config import load_config, to_dict
    from autolabel_ros.offline.parallel import fork_start

    cfg = to_dict(load_config(inputs[1]))
    monkeypatch.delenv('OPENBLAS_NUM_THREADS', raising=False)
    assert not fork_start(cfg, 1)              # BLAS not capped: its pool would be inherited
    monkeypatch.setenv('OPENBLAS_NUM_THREADS', '1')
    forked = fork_start(cfg, threads)
    assert forked == (threads == 1 and sys.platform.startswith('linux'))
    summary = run_job(_job(inputs, tmp_path / 'w2', workers=2, threads=threads))
    tree, ref = output_tree(tmp_path / 'w2'), reference[2]
    assert [k for k in ref if tree.get(k) != ref[k]] == []
    w = summary['run']['workers_side']
    n_workers = len(summary['run']['schedule']['workers'])
    assert w['model_loads'] == (1 if forked else n_workers) and len(w['models_s']) == w['model_loads']
    # forked: frames read while the models loaded (offline/readahead.py: here up to the box
    # segmenter's build, torch being imported already), reported once
    assert ('read_ahead_frames' in summary['timing']) == forked
    if forked:
        assert summary['timing']['read_ahead_frames']['n'] == 1
        assert 0 <= summary['timing']['read_ahead_frames']['max'] <= 3
    # the schedule: the 3 frames ran on the worker processes (not here), inside the labelling
    sched = summary['run']['schedule']
    assert sum(w['frames'] for w in sched['workers']) == 3 and 1 <= len(sched['workers']) <= 2
    assert 0 < sched['span_s'] <= summary['run']['phases']['label']['wall_s']
    assert 0.0 <= sched['idle_share'] < 1.0


def test_ray_local_two_cpus_gives_the_same_outputs(inputs, reference, tmp_path):
    pytest.importorskip('ray')
    summary = run_job(_job(inputs, tmp_path / 'ray', workers=2, ray='local'))
    assert summary['run']['ray'] == 'local'
    tree, ref = output_tree(tmp_path / 'ray'), reference[2]
    assert [k for k in ref if tree.get(k) != ref[k]] == []


def test_the_writing_bar_counts_every_output_step(inputs, reference, tmp_path, capsys):
    """Resumed with every frame saved, the run only writes its outputs; its progress bar ends exactly at
    its total: every step of the output phase (frames loaded, KITTI files, meshes, bag messages built
    and written, figures) is counted once."""
    import re
    import shutil
    from dataclasses import replace

    out = tmp_path / 'out'
    shutil.copytree(reference[0], out)
    summary = run_job(replace(_job(inputs, out), progress=True))
    selected = summary['frames']['selected']
    assert summary['run']['resumed_frames'] >= 3 and selected >= 4
    lines = [s for s in re.split(r'[\r\n]', capsys.readouterr().err) if s.startswith('writing')]
    n, total = map(int, re.search(r'(\d+)/(\d+)', lines[-1]).groups())
    meshes = summary['outputs']['meshes']
    assert meshes > 0
    assert n == total == 4 * selected + meshes + len(summary['outputs']['figures']) + 1
    # every frame's bag messages built at assembly here, as they were labelled in the reference: same bytes
    assert summary['run']['labelled_this_run'] == 0
    tree, ref = output_tree(out), reference[2]
    assert [k for k in ref if tree.get(k) != ref[k]] == []


def test_the_summary_says_where_the_time_went(reference):
    """``run`` in the summary: wall and CPU seconds per phase of the main process, the workers' side
    (model loading, CPU on frames, memory, bytes per frame), the CPU of the process and its children."""
    run = reference[1]['run']
    ph = run['phases']
    assert {'start', 'label', 'label.read', 'label.save', 'label.stream', 'write', 'write.load',
            'write.kitti', 'write.bag', 'write.figures_wait'} <= set(ph)
    for v in ph.values():
        assert v['wall_s'] >= 0 and v['cpu_s'] >= 0
    # sub-phases lie inside their phase
    assert ph['label.read']['wall_s'] + ph['label.save']['wall_s'] + ph['label.stream']['wall_s'] \
        <= ph['label']['wall_s']
    assert ph['write.bag']['wall_s'] <= ph['write']['wall_s'] <= run['write_s'] + 1e-6
    w = run['workers_side']
    assert w['frames'] == 3 and w['model_loads'] == 1 and len(w['models_s']) == 1
    # in-process: the frames' CPU is the main process' (labelling and model loading inside 'label')
    assert 0 < w['frame_cpu_s'] + w['models_cpu_s'][0] <= ph['label']['cpu_s'] + 1e-6
    assert w['rss_mb'] > 100 and w['task_mb'] > 0.05 and w['result_mb'] > 0
    assert run['usage']['main_cpu_s'] >= ph['label']['cpu_s']
    # the schedule: one worker (this process) busy with its 3 frames, nothing after its last one
    (me,) = run['schedule']['workers']
    assert me['frames'] == 3 and me['tail_s'] == 0.0 and me['start_cpu_s'] > 0
    assert 0 < me['busy_s'] <= run['schedule']['span_s'] <= ph['label']['wall_s']
    assert me['start_s'] + me['busy_s'] + me['gap_s'] == pytest.approx(run['schedule']['span_s'])
    # the records saved carry no schedule entry (their bytes do not depend on when a frame ran)
    assert all('span' not in json.loads(p.read_text()) for p in (reference[0] / '.frames').glob('0*.json'))


def test_two_workers_build_the_bag_messages_in_the_tail(reference):
    """With more than one worker a frame's label-bag messages wait for the tail (fewer frames left
    than workers), where a thread builds them; what it has not built when the labelling ends is left
    to the assembly. Same messages as built at once."""
    import json
    import time
    from dataclasses import replace

    from autolabel_ros.offline.annotations import AnnotationCache
    from autolabel_ros.offline.job import StreamedOutputs
    from autolabel_ros.offline.phases import PhaseClock

    out = reference[0]
    frames = []
    for p in sorted((out / '.frames').glob('0*.json')):
        with np.load(p.with_suffix('.npz')) as z:
            frames.append((json.loads(p.read_text()), {k: z[k] for k in z.files}, p.read_text()))
    assert len(frames) == 3
    job = BagJob(input=str(out), out=str(out), progress=False)
    at_once = AnnotationCache()
    for rec, arr, text in frames:
        at_once.add(rec, arr, text)

    streamed = StreamedOutputs(replace(job, workers=2), 3, PhaseClock())
    streamed.on_saved(*frames[0], idle=False)
    assert streamed.annotations.get(frames[0][0]['index']) is None     # waits: the workers are busy
    streamed.on_saved(*frames[1], idle=True)
    streamed.on_saved(*frames[2], idle=True)
    end = time.monotonic() + 60
    while any(streamed.annotations.get(r['index']) is None for r, _, _ in frames) and time.monotonic() < end:
        time.sleep(0.01)                                               # the tail's thread builds them
    streamed.labelling_done()
    for rec, _, _ in frames:
        assert streamed.annotations.get(rec['index']) == at_once.get(rec['index'])
    streamed.close()

    one = StreamedOutputs(replace(job, workers=1), 3, PhaseClock())
    one.on_saved(*frames[0])
    assert one.annotations.get(frames[0][0]['index']) == at_once.get(frames[0][0]['index'])
    one.close()
