"""Drives: ego motion (/tf, OXTS, ICP) against the simulator's pose, association, track refinement."""
from __future__ import annotations

import numpy as np
import pytest

from autolabel_ros.core.types import Label3D, wrap_angle
from autolabel_ros.track.sequence import track_sequence

DT_NS = 100_000_000


# ------------------------------------------------------------------------------ synthetic sequences
def _cars():
    """(id, x0, y0, yaw, speed): two cars each way on the lanes, one parked, one far and slow."""
    return [(1, 20.0, -3.5, 0.0, 9.0), (2, 35.0, -3.5, 0.0, 9.5), (3, 60.0, 3.5, np.pi, 12.0),
            (4, 30.0, 6.5, np.pi, 0.0), (5, 50.0, 0.0, 0.0, 4.0)]


def _sequence(n=20, ego_speed=8.0, seed=0, flip=(), drop=(), size_noise=0.15):
    """Per frame the cars' labels in the LiDAR frame (with noise), the stamps, the ego poses and the
    truth per (frame, car id): world (x, y, yaw) and length."""
    rng = np.random.default_rng(seed)
    frames, poses, truth = [], [], {}
    for f in range(n):
        t = f * 0.1
        T = np.eye(4)
        T[0, 3] = ego_speed * t
        poses.append(T)
        labs = []
        for cid, x0, y0, yaw, v in _cars():
            x, y = x0 + v * t * np.cos(yaw), y0 + v * t * np.sin(yaw)
            truth[f, cid] = (x, y, yaw, 4.0 + 0.1 * cid)
            if (f, cid) in drop:
                continue
            fy = yaw + (np.pi if (f, cid) in flip else 0.0) + rng.normal(0, 0.03)
            size = np.array([4.0 + 0.1 * cid, 1.7, 1.5]) + rng.normal(0, size_noise, 3)
            c = np.array([x - T[0, 3] + rng.normal(0, 0.15), y + rng.normal(0, 0.15), -0.9])
            labs.append(Label3D(center=c, size=size, yaw=fy, score=0.9, id=100 * f + cid,
                                metrics={'n_points': 300, 'car': cid}))
        frames.append(labs)
    return frames, [f * DT_NS for f in range(n)], poses, truth


def _ids_by_car(res):
    by_car = {}
    for labs in res.labels:
        for lab in labs:
            if not lab.metrics.get('interpolated'):
                by_car.setdefault(lab.metrics['car'], set()).add(lab.id)
    return by_car


def test_association_keeps_one_id_per_car():
    frames, stamps, poses, _ = _sequence()
    res = track_sequence(frames, stamps, poses)
    by_car = _ids_by_car(res)
    assert all(len(ids) == 1 for ids in by_car.values()), by_car          # no ID switch, no fragment
    assert len({next(iter(v)) for v in by_car.values()}) == len(_cars())   # no two cars share a track
    assert len(res.tracks) == len(_cars())
    # every input label gives one output label, ids = track ids
    assert sum(map(len, res.labels)) == sum(map(len, frames))


def test_heading_from_motion_fixes_flipped_labels_and_size_is_one_per_track():
    flips = {(3, 1), (4, 1), (10, 3), (15, 5)}
    frames, stamps, poses, truth = _sequence(flip=flips)
    res = track_sequence(frames, stamps, poses)
    errs, lengths = [], {}
    for f, labs in enumerate(res.labels):
        for lab in labs:
            cid = lab.metrics['car']
            yaw_w = lab.yaw                        # the ego does not turn: world yaw = LiDAR yaw
            errs.append(abs(float(wrap_angle(yaw_w - truth[f, cid][2]))))
            lengths.setdefault(cid, []).append(lab.size[0])
            if (f, cid) in flips:
                assert abs(float(wrap_angle(lab.metrics['frame_yaw'] - truth[f, cid][2]))) > np.pi / 2
    assert max(errs) < np.radians(5)               # the flipped frames agree with the travel direction
    for cid, ls in lengths.items():
        assert np.std(ls) < 1e-9                   # one size per track
        assert abs(ls[0] - (4.0 + 0.1 * cid)) < 0.15   # the median of 20 noisy sizes (noise 0.15 m)
    # the per-frame lengths scatter by the noise: the tracked ones do not
    per_frame = [lab.size[0] for labs in frames for lab in labs if lab.metrics['car'] == 1]
    assert np.std(per_frame) > 0.08


def test_parked_car_heading_is_the_vote_of_its_frames():
    flips = {(f, 4) for f in (2, 7, 11, 13, 17)}        # 5 of 20 frames backwards
    frames, stamps, poses, truth = _sequence(flip=flips)
    res = track_sequence(frames, stamps, poses)
    yaws = [lab.yaw for labs in res.labels for lab in labs if lab.metrics['car'] == 4]
    assert all(abs(float(wrap_angle(y - np.pi))) < np.radians(3) for y in yaws)
    centers = [lab.center[0] + poses[f][0, 3] for f, labs in enumerate(res.labels) for lab in labs
               if lab.metrics['car'] == 4]
    assert np.ptp(centers) < 1e-6                  # a static car keeps one world position
    assert abs(centers[0] - 30.0) < 0.15


def test_a_parked_cars_front_is_voted_by_how_decided_its_frames_were():
    """A far parked car whose frames mostly chose backwards by a hair (flip margin 0.005) while a
    few chose forwards clearly (0.1): the margin-weighted vote says forwards; the weight-only vote
    (vote_flip_cap None) said backwards."""
    from autolabel_ros.track.refine import RefineSettings
    from autolabel_ros.track.sequence import TrackSettings

    wrong = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15)           # 12 of 20 frames backwards
    frames, stamps, poses, _ = _sequence(flip={(f, 4) for f in wrong})
    for f, labs in enumerate(frames):
        for lab in labs:
            if lab.metrics['car'] == 4:
                lab.metrics['flip_margin'] = 0.005 if f in wrong else 0.1

    def yaws(settings):
        res = track_sequence(frames, stamps, poses, settings=settings)
        return [lab.yaw for labs in res.labels for lab in labs if lab.metrics['car'] == 4]

    assert all(abs(float(wrap_angle(y - np.pi))) < np.radians(3) for y in yaws(None))
    old = TrackSettings(refine=RefineSettings(vote_flip_cap=None))
    assert all(abs(float(wrap_angle(y))) < np.radians(3) for y in yaws(old))


def test_the_track_refit_decides_a_split_vote_only_when_its_headings_differ_enough():
    from types import SimpleNamespace

    from autolabel_ros.track.refine import RefineSettings, refit_decisive

    s = RefineSettings()
    close = {'forward': SimpleNamespace(energy=0.0199), 'backward': SimpleNamespace(energy=0.0183)}
    clear = {'forward': SimpleNamespace(energy=0.021), 'backward': SimpleNamespace(energy=0.0172)}
    assert not refit_decisive(close, s.refit_split)        # 9 % apart: the vote stands
    assert refit_decisive(clear, s.refit_split)            # 22 % apart: the refit decides
    assert not refit_decisive(clear, s.refit_overrule)     # ... but overrules no decided vote
    assert refit_decisive({'backward': clear['backward']}, 0.0)
    assert not refit_decisive({'backward': clear['backward']}, s.refit_split)


def test_hidden_frames_get_interpolated_boxes():
    drop = {(f, 2) for f in (8, 9, 10)}
    frames, stamps, poses, truth = _sequence(drop=drop)
    res = track_sequence(frames, stamps, poses)
    interp = [(f, lab) for f, labs in enumerate(res.labels) for lab in labs
              if lab.metrics.get('interpolated')]
    assert sorted(f for f, _ in interp) == [8, 9, 10]
    assert len({lab.id for _, lab in interp}) == 1
    assert len(_ids_by_car(res)[2]) == 1          # the car keeps its id across the gap
    for f, lab in interp:
        x, y, _, _ = truth[f, 2]
        assert np.hypot(lab.center[0] + poses[f][0, 3] - x, lab.center[1] - y) < 0.3


def test_mismatched_inputs_are_refused():
    frames, stamps, poses, _ = _sequence(n=3)
    with pytest.raises(ValueError, match='3 frames of labels, 2 stamps'):
        track_sequence(frames, stamps[:2], poses[:2])


def _parked_frames(cars, n=20):
    """A static ego at the origin; ``cars``: (car id, x, y, frames it is labelled in, centre offset per
    frame or None, score, accepted). Labels in the LiDAR frame (= world)."""
    frames = [[] for _ in range(n)]
    for cid, x, y, seen, offset, score, accepted in cars:
        for f in seen:
            d = np.zeros(2) if offset is None else offset(f)
            frames[f].append(Label3D(center=np.array([x + d[0], y + d[1], -0.9]),
                                     size=np.array([4.2, 1.8, 1.5]), yaw=0.0, score=score, accepted=accepted,
                                     id=100 * f + cid,
                                     metrics={'n_points': 20, 'car': cid}))
    return frames, [f * DT_NS for f in range(n)], [np.eye(4) for _ in range(n)]


def test_far_parked_car_keeps_its_place_when_half_its_frames_have_a_wrong_depth():
    # a parked car 46 m away: 9 frames place it right, 11 frames 1.7-3.9 m too far along the viewing
    # ray (as a far car's few LiDAR points let the fit slide); a per-coordinate median lands among the
    # wrong ones, the best group of agreeing frames is the car
    rng = np.random.default_rng(3)
    ray = np.array([45.0, 8.0]) / np.hypot(45.0, 8.0)
    good = {0, 2, 5, 7, 9, 12, 15, 17, 19}
    depth = dict(zip(sorted(set(range(20)) - good), rng.uniform(1.7, 3.9, 11)))
    frames, stamps, poses = _parked_frames(
        [(1, 45.0, 8.0, range(20), lambda f: ray * depth.get(f, 0.0) + rng.normal(0, 0.05, 2), 0.8, True)])
    per_frame = np.array([lab.center[:2] for labs in frames for lab in labs])
    assert np.linalg.norm(np.median(per_frame, axis=0) - [45.0, 8.0]) > 1.0
    res = track_sequence(frames, stamps, poses)
    assert len(res.tracks) == 1
    centres = np.array([lab.center[:2] for labs in res.labels for lab in labs])
    assert len(centres) == 20
    assert np.max(np.linalg.norm(centres - [45.0, 8.0], axis=1)) < 0.1


def _box_points(x, y, n, rng):
    """``n`` points inside a 4.2 x 1.8 x 1.5 car at (x, y) (bottom at z = -1.65), above its lowest 0.35 m."""
    return np.column_stack([rng.uniform(x - 2.1, x + 2.1, n), rng.uniform(y - 0.9, y + 0.9, n),
                            rng.uniform(-1.3, -0.15, n)])


def test_two_parked_cars_in_one_track_are_split_by_the_scans():
    # two far cars parked side by side 2.5 m apart; the prompts see the first for 10 frames, then the
    # second (the first hidden in the image); doubtful labels (rejected) join one track; the scans of
    # the whole track fill both boxes: two cars, two tracks, each at its place
    rng = np.random.default_rng(4)
    frames, stamps, poses = _parked_frames([(1, 60.0, 8.0, range(10), None, 0.5, False),
                                            (2, 60.0, 10.5, range(10, 20), None, 0.5, False)])
    points = [np.concatenate([_box_points(60.0, 8.0, 40, rng), _box_points(60.0, 10.5, 40, rng)])
              for _ in range(20)]
    merged = track_sequence(frames, stamps, poses)            # without the scans: one track
    assert len(merged.tracks) == 1
    res = track_sequence(frames, stamps, poses, points)
    assert len(res.tracks) == 2
    by_car = _ids_by_car(res)
    assert len(by_car[1]) == len(by_car[2]) == 1 and by_car[1] != by_car[2]
    for labs in res.labels:
        for lab in labs:
            truth = [60.0, 8.0] if lab.metrics['car'] == 1 else [60.0, 10.5]
            assert np.linalg.norm(lab.center[:2] - truth) < 0.05


def test_a_doubtful_label_moves_its_track_less():
    from autolabel_ros.track.tracker import Detection, TrackerSettings, label_noise

    s = TrackerSettings()
    sure = Detection(frame=0, index=0, center=np.zeros(3), size=np.ones(3), yaw=0.0, score=0.9, r=0.5)
    doubt = Detection(frame=0, index=0, center=np.zeros(3), size=np.ones(3), yaw=0.0, score=0.5,
                      accepted=False, r=0.5)
    assert label_noise(sure, s) == pytest.approx(0.5 / np.sqrt(0.9))
    assert label_noise(doubt, s) == pytest.approx(0.5 / np.sqrt(0.15))


def _blind(frames, cid, seen, shift, score=0.15, accepted=False):
    """Car ``cid``'s labels in frames ``seen`` placed from the image alone: ``shift`` metres too far
    along x, no LiDAR point in the box (by default rejected with a low score, as the per-frame fit
    leaves most such labels)."""
    for f in seen:
        for lab in frames[f]:
            if lab.metrics['car'] == cid:
                lab.center = lab.center + np.array([shift, 0.0, 0.0])
                lab.metrics['n_points'], lab.score, lab.accepted = 0, score, accepted


def test_frames_without_lidar_points_take_the_tracks_motion():
    # car 2 drives at 9.5 m/s, far: every label rejected, 10 LiDAR points a frame; in 4 frames
    # mid-track and the last 3 its boxes hold no point and lie 2.5 m too far (placed from the image
    # alone): the filter interpolates / extrapolates them from the scanned frames (left to the
    # weights, they pull the track 0.5 m off)
    frames, stamps, poses, truth = _sequence()
    for labs in frames:
        for lab in labs:
            if lab.metrics['car'] == 2:
                lab.metrics['n_points'], lab.score, lab.accepted = 10, 0.5, False
    blind = [8, 9, 10, 11, 17, 18, 19]
    _blind(frames, 2, blind, 2.5, score=0.5)
    res = track_sequence(frames, stamps, poses)
    for f, labs in enumerate(res.labels):
        lab = next(lab for lab in labs if lab.metrics['car'] == 2)
        assert lab.metrics['from_track'] == int(f in blind)
        x, y, _, _ = truth[f, 2]
        assert np.hypot(lab.center[0] + poses[f][0, 3] - x, lab.center[1] - y) < 0.25, f
        assert lab.metrics['no_lidar_track'] == 0


def test_a_track_no_scan_ever_confirmed_ranks_below_the_others():
    frames, stamps, poses, truth = _sequence()
    _blind(frames, 3, range(20), 0.0)                  # car 3: no LiDAR point in any frame
    res = track_sequence(frames, stamps, poses)
    for labs in res.labels:
        for lab in labs:
            unseen = lab.metrics['car'] == 3
            assert lab.metrics['no_lidar_track'] == int(unseen)
            assert lab.metrics['from_track'] == 0       # nothing better placed them: their own boxes
            if unseen:
                assert lab.score == pytest.approx(0.5 * 0.15)
            else:
                assert lab.score == pytest.approx(0.9)


# ------------------------------------------------------------------------------ ego motion
def test_oxts_round_trip():
    from autolabel_ros.core.geometry import rot_z
    from autolabel_ros.io.oxts import oxts_poses, pose_to_oxts

    poses = []
    for k in range(5):
        T = np.eye(4)
        T[:3, :3] = rot_z(0.05 * k)
        T[:3, 3] = [7.0 * k, 0.5 * k * k, 0.02 * k]
        poses.append(T)
    back = oxts_poses([pose_to_oxts(T, 49.011, 8.4165) for T in poses])
    for a, b in zip(poses, back):
        assert np.allclose(a, b, atol=1e-6)


@pytest.fixture(scope='module')
def sim_drive(tmp_path_factory):
    """Six frames of a simulated drive (32 beams, tiny camera), its bag and KITTI export."""
    from autolabel_ros.sim.drive import Simulator
    from autolabel_ros.sim.sensors import Camera, Lidar
    from autolabel_ros.sim.writers import BagWriter, write_kitti

    root = tmp_path_factory.mktemp('drive')
    sim = Simulator(700000, n_frames=6, camera=Camera.kitti(0.1), lidar=Lidar(beams=32))
    frames = [sim.frame(i) for i in range(6)]
    with BagWriter(root / 'bag') as bag:
        for sf in frames:
            bag.write(sf)
            write_kitti(root / 'kitti', sf, oxts=True)
    return root, frames


def test_ego_motion_from_the_bags_tf(sim_drive):
    from autolabel_ros.io.bags import BagSource
    from autolabel_ros.track.ego import drift, poses_from_tf

    root, frames = sim_drive
    with BagSource(root / 'bag') as src:
        refs = src.index()
        em = poses_from_tf(src.tf, [r.stamp_ns for r in refs], 'lidar')
    assert em.source == 'tf' and em.notes['fixed_frame'] == 'odom'
    d = drift(em.poses, [sf.T_world_lidar for sf in frames])
    assert d['path_m'] > 3.0 and d['max_m'] < 1e-6


def test_ego_motion_from_oxts(sim_drive):
    from autolabel_ros.io.kitti import read_calib
    from autolabel_ros.io.oxts import read_oxts
    from autolabel_ros.track.ego import drift, poses_from_oxts

    root, frames = sim_drive
    packets = [read_oxts(root / 'kitti' / 'oxts' / 'data' / f'{sf.frame.frame_id}.txt') for sf in frames]
    calib = read_calib(root / 'kitti' / 'calib' / '000000.txt')
    em = poses_from_oxts(packets, calib.Tr_imu_to_velo)
    assert drift(em.poses, [sf.T_world_lidar for sf in frames])['max_m'] < 1e-3


def test_ego_motion_from_icp_drifts_little(sim_drive):
    from autolabel_ros.track.ego import drift, poses_from_icp

    _, frames = sim_drive
    em = poses_from_icp([sf.frame.points for sf in frames])
    d = drift(em.poses, [sf.T_world_lidar for sf in frames])
    # measured: 0.5 % of the travel over 20 frames with 64 beams (benchmarks/tracks.py)
    assert d['path_m'] > 3.0
    assert d['final_m'] < 0.1 and d['final_pct'] < 3.0 and d['final_yaw_deg'] < 0.5


def test_kitti_tracking_lines_round_trip(tmp_path, sim_drive):
    from autolabel_ros.io.kitti_tracking import read_tracking_file, write_tracking_file
    from autolabel_ros.sim.writers import tracking_gt_lines

    _, frames = sim_drive
    lines = [line for sf in frames for line in tracking_gt_lines(sf)]
    write_tracking_file(tmp_path / '0000.txt', lines)
    rows = read_tracking_file(tmp_path / '0000.txt')
    assert len(rows) == sum(len(sf.gt) for sf in frames) > 0
    for (f, tid, obj), (fr, g) in zip(rows, [(sf, g) for sf in frames for g in sf.gt]):
        assert f == fr.index and tid == g.id and obj.score is None
        assert np.isclose(obj.hwl[2], g.size[0], atol=1e-5)


def test_openlabel_objects_span_their_tracks():
    from autolabel_ros.io.writers import build_openlabel

    frames, stamps, poses, _ = _sequence(n=6, drop={(f, 2) for f in (2, 3)})
    res = track_sequence(frames, stamps, poses)
    doc = build_openlabel([{'index': f, 'name': f'{f:06d}', 'stamp_ns': stamps[f], 'labels': labs}
                           for f, labs in enumerate(res.labels)], tracked=True)['openlabel']
    assert len(doc['objects']) == len(_cars())
    for obj in doc['objects'].values():
        assert obj['frame_intervals'] == [{'frame_start': 0, 'frame_end': 5}]
    flags = [o['object_data']['boolean'][0]['val'] for fr in doc['frames'].values()
             for o in fr['objects'].values()]
    assert sum(flags) == 2


def test_bag_tool_refuses_an_ego_source_the_input_lacks(tmp_path, sim_drive, capsys):
    from autolabel_ros.cli.bag import main
    from autolabel_ros.sim.writers import write_kitti

    _, frames = sim_drive
    write_kitti(tmp_path / 'kitti', frames[0])            # no oxts/
    for argv, msg in ((['--ego', 'tf'], '--ego tf: only used with --tracks'),
                      (['--tracks', '--ego', 'oxts'], 'has no KITTI OXTS packets'),
                      (['--tracks', '--ego', 'tf'], 'has no dynamic /tf')):
        rc = main([str(tmp_path / 'kitti'), '--out', str(tmp_path / 'out'), '--prompts', 'gt', '--quiet',
                   *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and msg in err[0], (argv, err)
