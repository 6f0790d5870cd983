"""fit/fleet.py: the fleet's car length read from a run's side-on cars and given to the cars seen end-on."""
import numpy as np
import pytest

from autolabel_ros.core.types import Label3D, Mesh
from autolabel_ros.fit import fleet

PRIOR = 3.9


def car(x, y, yaw, length, accepted=True, points=80, hidden=0.0, mesh=False, cls='Car'):
    lab = Label3D(center=[x, y, 0.8], size=[length, 1.7, 1.5], yaw=yaw, cls=cls, accepted=accepted,
                  metrics={'n_points': points, 'occluded_share': hidden})
    if mesh:      # the box's corners as the mesh's vertices
        c, s = np.cos(yaw), np.sin(yaw)
        u = np.array([[a * length / 2, b * 0.85, z] for a in (-1, 1) for b in (-1, 1) for z in (-0.75, 0.75)])
        lab.mesh = Mesh(vertices=lab.center + u @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]),
                        faces=np.array([[0, 1, 2]]))
    return lab


def test_side_on_cars_set_the_factor_and_the_prior_counts_as_five_cars():
    # side-on: heading across the line of sight (a car 20 m ahead, heading along y)
    side = [car(20.0, 0.0, np.pi / 2, 4.6) for _ in range(5)]
    f = fleet.estimate(side, PRIOR)
    assert f.side_on == 5
    assert f.factor == pytest.approx(np.exp(5 * np.log(4.6 / PRIOR) / 10))
    assert f.fleet_length == pytest.approx(PRIOR * f.factor)
    # end-on, rejected, sparse, hidden and non-car labels tell nothing
    others = [car(20.0, 0.0, 0.0, 5.0), car(20.0, 0.0, np.pi / 2, 5.0, accepted=False),
              car(20.0, 0.0, np.pi / 2, 5.0, points=10), car(20.0, 0.0, np.pi / 2, 5.0, hidden=0.5),
              car(20.0, 0.0, np.pi / 2, 9.0, cls='truck')]
    assert fleet.estimate(others, PRIOR).side_on == 0 and fleet.estimate(others, PRIOR).factor == 1.0
    assert fleet.estimate(side + others, PRIOR).factor == pytest.approx(f.factor)


@pytest.mark.parametrize('x, yaw', [(20.0, 0.0), (20.0, np.pi), (-15.0, 0.0), (-15.0, np.pi)])
def test_a_stretched_car_keeps_its_near_end_heading_and_width(x, yaw):
    lab = car(x, 0.0, yaw, 4.0, mesh=True)
    out = fleet.stretch(lab, 1.1)
    assert out.size[0] == pytest.approx(4.4) and out.size[1:] == pytest.approx(lab.size[1:])
    assert out.yaw == lab.yaw and out.score == lab.score and out.accepted == lab.accepted
    # the near face (towards the sensor at the origin) stays, the far one goes 0.4 m further out
    near = lambda b: min(abs(b.center[0] - b.size[0] / 2), abs(b.center[0] + b.size[0] / 2))  # noqa: E731
    far = lambda b: max(abs(b.center[0] - b.size[0] / 2), abs(b.center[0] + b.size[0] / 2))   # noqa: E731
    assert near(out) == pytest.approx(near(lab)) and far(out) == pytest.approx(far(lab) + 0.4)
    # the mesh is stretched alike: its extent along the car is the new box's
    xs = out.mesh.vertices[:, 0]
    assert [xs.min(), xs.max()] == pytest.approx([out.center[0] - 2.2, out.center[0] + 2.2])
    assert out.metrics['fleet_factor'] == 1.1 and 'fleet_factor' not in lab.metrics


def test_apply_gives_the_fleet_length_to_the_cars_not_seen_side_on_only():
    side = [car(20.0 + 6.0 * k, 0.0, np.pi / 2, 4.7) for k in range(10)]
    ahead = car(30.0, 0.0, 0.0, 3.9, accepted=False)          # end-on, rejected: stretched all the same
    truck = car(30.0, 5.0, 0.0, 8.0, cls='truck')
    frames, f = fleet.apply([side[:5], side[5:] + [ahead, truck], []], PRIOR)
    assert f.side_on == 10 and f.stretched == 1
    assert f.factor == pytest.approx(np.exp(10 * np.log(4.7 / PRIOR) / 15))
    assert [len(x) for x in frames] == [5, 7, 0]
    assert all(a is b for a, b in zip(frames[0], side[:5]))      # side-on labels are untouched
    assert frames[1][5].size[0] == pytest.approx(3.9 * f.factor) and frames[1][6] is truck
    assert 'fleet length' in f.summary()
    # nobody side-on: nothing changes
    frames, f = fleet.apply([[ahead]], PRIOR)
    assert f.factor == 1.0 and f.stretched == 0 and frames[0][0] is ahead


# LiDAR (x fwd, y left, z up) -> camera (x right, y down, z fwd), camera 0.3 m above the LiDAR
T_CAM_LIDAR = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0.3], [1, 0, 0, 0], [0, 0, 0, 1]])
K = np.array([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]])


def test_the_kitti_folder_tool_writes_again_the_frames_the_fleet_length_changes(tmp_path):
    from autolabel_ros.io.kitti import calib_from_K, label3d_to_kitti, read_label_file, write_label_file
    from autolabel_ros.kitti_labeling import finish_run
    from autolabel_ros.pipeline import Autolabeler

    al = Autolabeler()
    prior = float(al.sdf.mean_size[0])
    calib = calib_from_K(K, T_CAM_LIDAR)
    side = [car(15.0 + 5 * k, 0.0, np.pi / 2, 4.7) for k in range(6)]
    ahead = car(25.0, 1.0, 0.05, prior)
    run = [('000000', side, calib, 1242, 375), ('000001', [ahead], calib, 1242, 375)]
    for fid, labels, *_ in run:          # as label_frames wrote them while it labelled
        write_label_file(tmp_path / f'{fid}.txt', [label3d_to_kitti(lab, calib, 1242, 375) for lab in labels])
    before = (tmp_path / '000000.txt').read_text()
    info = finish_run(tmp_path, run, al)
    assert info['side_on'] == 6 and info['stretched'] == 1
    factor = np.exp(6 * np.log(4.7 / prior) / 11)
    assert info['factor'] == pytest.approx(factor)
    assert (tmp_path / '000000.txt').read_text() == before
    (obj,) = read_label_file(tmp_path / '000001.txt')
    assert obj.hwl[2] == pytest.approx(prior * factor, abs=0.01)
    # off: nothing read, nothing written
    al.cfg.fit.fleet_length = False
    assert finish_run(tmp_path, run, al) is None


def test_the_bag_tool_gives_the_fleet_length_at_its_assembly(tmp_path):
    from autolabel_ros.config import load_config
    from autolabel_ros.offline.job import _fleet_length

    side = [car(15.0 + 5 * k, 0.0, np.pi / 2, 4.7) for k in range(6)]
    ahead = car(25.0, 1.0, 0.05, 3.9)
    labels = {0: side, 3: [ahead]}
    records = [{'index': 0, 'labels': [{'center': [0.0] * 3, 'size': [4.7, 1.7, 1.5]}] * 6},
               {'index': 3, 'labels': [{'center': ahead.center.tolist(), 'size': ahead.size.tolist()}]}]
    info = _fleet_length(load_config(None), records, labels, None)
    assert info['side_on'] == 6 and info['stretched'] == 1
    assert labels[0] is side and labels[3][0] is not ahead
    assert labels[3][0].size[0] == pytest.approx(3.9 * info['factor'])
    # the saved record as the report's figures read it
    assert records[1]['labels'][0]['size'][0] == pytest.approx(3.9 * info['factor'])
    assert records[1]['labels'][0]['center'] == pytest.approx(labels[3][0].center.tolist())
    cfg = tmp_path / 'off.yaml'
    cfg.write_text('fit:\n  fleet_length: false\n')
    labels = {0: side, 3: [ahead]}
    assert _fleet_length(load_config(str(cfg)), records, labels, None) is None
    assert labels[3][0] is ahead


def test_the_running_fleet_of_the_node_learns_from_the_frames_so_far():
    run = fleet.RunningFleet(PRIOR)
    ahead = car(25.0, 1.0, 0.05, PRIOR)
    # the first frame: nobody side-on yet, the prior's car
    assert run.apply([ahead])[0] is ahead and run.factor() == 1.0
    # a frame with two side-on cars: they count already for this frame's end-on car
    out = run.apply([car(20.0, 0.0, np.pi / 2, 4.7), car(30.0, 0.0, np.pi / 2, 4.7), ahead])
    f2 = np.exp(2 * np.log(4.7 / PRIOR) / 7)
    assert run.factor() == pytest.approx(f2) and out[2].size[0] == pytest.approx(PRIOR * f2)
    assert out[0].size[0] == 4.7                      # side-on cars keep their own length
    # more side-on cars move it further towards their length
    run.apply([car(20.0, 0.0, np.pi / 2, 4.7)] * 3)
    assert f2 < run.factor() < 4.7 / PRIOR
    assert run.summary() == f'fleet length {PRIOR * run.factor():.2f} m from 5 side-on car(s) so far'
    # the whole run's estimate, over the same labels, is the running one at its end
    assert fleet.estimate([car(20.0, 0.0, np.pi / 2, 4.7)] * 5, PRIOR).factor == pytest.approx(run.factor())
