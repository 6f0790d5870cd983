"""Bad inputs to the command-line tools, as a table: input kind -> exit code, a fragment of the one
error line, and "nothing the user owned changed" (every file of the user hashed before and after).

Rows run ``main(argv)`` in-process (the fast config: box masks, a short fit) except the signal rows,
which need a process to stop. One tiny drive, bag and KITTI folder are built once for the module.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from fault_campaign import campaign, command, interrupted_run, leftovers, output_tree, stopped_as_expected
from test_bag_fixtures import H, K, PERIOD, T0, T_CAM_LIDAR, W, fast_config, scene, write_tiny_bag

from autolabel_ros.cli import bag as bag_cli
from autolabel_ros.cli import eval as eval_cli
from autolabel_ros.cli import kitti as kitti_cli
from autolabel_ros.cli import sim as sim_cli
from autolabel_ros.core.types import Prompt
from autolabel_ros.io import messages as M
from autolabel_ros.io.kitti import calib_from_K, read_velodyne, write_calib, write_kitti_frame
from autolabel_ros.io.label_bag import BagWriter
from autolabel_ros.io.outdir import MARKER
from autolabel_ros.io.ros_types import get_typestore

N_FRAMES = 3
SIM_PROMPTS = 'topic:/ground_truth/detections_2d'
OUTSIDE_BOX = (1000, 10, 1100, 50)      # right of the 320 x 120 image


# ----------------------------------------------------------------------------------------------
# inputs built once

def snapshot(root: Path) -> dict:
    """{relative path: sha256} of every file under root (what the user owns)."""
    root = Path(root)
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def _image_msg(fac, t, width, height, encoding='rgb8', pixels=None):
    if encoding == 'rgb8':
        return M.make_image(pixels, t, 'camera', fac)
    data = np.full((height, width), 1500, np.uint16).tobytes()        # a depth image in millimetres
    return fac.new('sensor_msgs/msg/Image', header=M.make_header(t, 'camera', fac), height=height,
                   width=width,
                   encoding=encoding, is_bigendian=0, step=2 * width, data=fac.uint8_seq(data))


def custom_bag(path: Path, n=N_FRAMES, extra_boxes=(), mutate=None, encoding='rgb8', info_size=(W, H),
               stamps=None) -> Path:
    """A drive like test_bag_fixtures' with extra prompt boxes per frame, a mutated detection list
    (raw fields: NaN, inverted sizes), another image encoding, another camera_info size or stamps."""
    ts = get_typestore()
    fac = M.rosbags_factory(ts)
    Kc = K.copy()
    if info_size != (W, H):    # a calibration of another camera (its principal point at its centre)
        Kc[0, 2], Kc[1, 2] = info_size[0] / 2, info_size[1] / 2
    with BagWriter(path, storage='mcap') as w:
        w.write('/tf_static', M.make_tf_static(np.linalg.inv(T_CAM_LIDAR), 'lidar', 'camera', T0, fac), T0)
        for i in range(n):
            t = (stamps[i] if stamps else T0 + i * PERIOD)
            img, pts, prompt = scene(i)
            info = M.make_camera_info(Kc, info_size[0], info_size[1], t, 'camera', fac)
            w.write('/camera/camera_info', info, T0 + i * PERIOD)
            w.write('/camera/image_raw', _image_msg(fac, t, W, H, encoding, img), T0 + i * PERIOD + 1)
            cloud = M.make_pointcloud2(pts, t + 3_000_000, 'lidar', fac)
            w.write('/lidar/points', cloud, T0 + i * PERIOD + 2)
            prompts = [prompt] + [Prompt(id=100 + k, box=b) for k, b in enumerate(extra_boxes)]
            msg = M.prompts_to_detection2d_array(prompts, t, 'camera', fac)
            if mutate:
                mutate(msg)
            w.write('/prompts', msg, T0 + i * PERIOD + 3)
    return path


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp('bad_inputs')
    w = {'dir': d, 'cfg': fast_config(d / 'fast.yaml'), 'bag': write_tiny_bag(d / 'drive.bag', n=N_FRAMES)}
    # a simulated drive as autolabel-sim writes it (kitti/training + bag), and a copy without the marker
    assert sim_cli.main(['--out', str(d / 'sim'), '--frames', '2', '--scale', '0.3', '--beams', '16',
                         '--no-clutter', '--cars', '3', '--quiet']) == 0
    shutil.copytree(d / 'sim', d / 'usersim')
    (d / 'usersim' / MARKER).unlink()
    # a KITTI object folder (2 frames) with label_2 boxes of the tiny scene
    kd = d / 'kitti'
    for i in range(2):
        img, pts, prompt = scene(i)
        write_kitti_frame(kd, f'{i:06d}', img, pts, calib_from_K(K, T_CAM_LIDAR))
        x1, y1, x2, y2 = prompt.box
        (kd / 'label_2' / f'{i:06d}.txt').write_text(
            f'Car 0.00 0 0.0 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} 1.5 1.8 4.2 1.0 1.0 10.0 0.0\n')
    w['kitti'] = kd
    return w


def kitti_copy(world, tmp: Path, edit: Callable[[Path], None]) -> Path:
    kd = tmp / 'kitti_in'
    shutil.copytree(world['kitti'], kd)
    edit(kd)
    return kd


# ----------------------------------------------------------------------------------------------
# the table

@dataclass
class Row:
    name: str
    tool: str                                   # bag | kitti | sim | eval | import
    setup: Callable                             # (world, tmp) -> (argv, [paths the user owns])
    rc: int
    fragment: str                               # in the stderr/stdout/log of the run
    check: Callable = None                      # (world, tmp, out_text) -> None, extra assertions


def _bag_args(world, out, *extra, bag=None, cfg=None, prompts='topic:/prompts'):
    return [str(bag or world['bag']), '--out', str(out), '--config', str(cfg or world['cfg']), '--prompts',
            prompts, '--quiet', *extra]


def _copy_of(world, tmp, name):
    shutil.copytree(world['dir'] / name, tmp / name)
    return tmp / name


def _yaml_tag_config(tmp):
    c = tmp / 'c.yaml'
    c.write_text('seed: !!python/object/apply:os.system ["true"]\n')
    return c


def _summary(out) -> dict:
    return json.loads((Path(out) / 'report' / 'summary.json').read_text())


def _file_at(tmp):
    f = tmp / 'a_file'
    f.write_text('user data\n')
    return f


def _nan_calib(kd):
    c = kd / 'calib' / '000000.txt'
    c.write_text(c.read_text().replace('R0_rect: 1.000000000000e+00', 'R0_rect: nan'))


def _zero_p2(kd):
    c = kd / 'calib' / '000000.txt'
    lines = [('P2: ' + ' '.join(['0'] * 12)) if ln.startswith('P2:') else ln
             for ln in c.read_text().splitlines()]
    c.write_text('\n'.join(lines) + '\n')


def _mutate_degenerate(msg):
    """Detection2DArray with a NaN, an inverted (negative size) and a zero-area box besides the car."""
    import copy
    base = msg.detections[0]
    for k, (sx, sy) in enumerate(((math.nan, 10.0), (-20.0, 10.0), (0.0, 10.0))):
        d = copy.deepcopy(base)
        d.id = str(200 + k)
        d.bbox.size_x, d.bbox.size_y = sx, sy
        msg.detections.append(d)


def _check_outside(world, tmp, text):
    s = _summary(tmp / 'out')
    assert s['frames']['labelled'] == N_FRAMES
    assert s['objects']['dropped_prompts'] == {'outside_image': N_FRAMES}
    assert all(f['dropped_prompts'] == {'outside_image': 1} for f in s['per_frame'])
    assert (tmp / 'out' / 'report' / 'bev_sheet.png').stat().st_size > 5000


def _check_degenerate(world, tmp, text):
    s = _summary(tmp / 'out')
    assert s['objects']['dropped_prompts'] == {'inverted': N_FRAMES, 'non_finite': N_FRAMES,
                                               'zero_area': N_FRAMES}
    assert s['objects']['labels'] == N_FRAMES      # the car of every frame is still labelled
    rec = json.loads((tmp / 'out' / '.frames' / '00000000.json').read_text())
    assert sorted(d['reason'] for d in rec['dropped_prompts']) == ['inverted', 'non_finite', 'zero_area']


def _check_cap(world, tmp, text):
    s = _summary(tmp / 'out')
    # 1 car + 6 boxes, cap 4 by score (the car has 0.9, the others 1.0): 3 dropped per frame
    assert s['objects']['dropped_prompts'] == {'over_cap': 3 * N_FRAMES}
    assert all(f['prompts'] == 4 for f in s['per_frame'])
    assert 'prompts labelled' in text      # progress inside the frame (chunks of 2)


def _bad_label_boxes(kd):
    """A second car line per frame: outside the image in 000000, inverted in 000001."""
    for fid, box in (('000000', '1000 10 1100 50'), ('000001', '60 20 30 50')):
        f = kd / 'label_2' / f'{fid}.txt'
        f.write_text(f.read_text() + f'Car 0.00 0 0.0 {box} 1.5 1.8 4.2 1.0 1.0 10.0 0.0\n')


def _check_label_boxes(world, tmp, text):
    s = _summary(tmp / 'out')
    assert s['objects']['dropped_prompts'] == {'inverted': 1, 'outside_image': 1}
    assert [f['dropped_prompts'] for f in s['per_frame']] == [{'outside_image': 1}, {'inverted': 1}]
    assert s['frames']['labelled'] == 2 and s['objects']['labels'] == 2


def _cap_config(world, tmp):
    cfg = tmp / 'cap.yaml'
    cfg.write_text(Path(world['cfg']).read_text() + 'max_prompts: 4\n')
    return cfg


def _user_outdir_with_overwrite(world, tmp):
    user = tmp / 'usersim'
    shutil.copytree(world['dir'] / 'usersim', user)
    argv = _bag_args(world, user, '--overwrite', '--max-frames', '1', bag=user / 'bag', prompts=SIM_PROMPTS)
    return argv, [user]


def _check_overwrite(world, tmp, text):
    out = tmp / 'usersim'
    assert (out / 'kitti' / 'label_2').is_dir() and (out / 'kitti' / 'training' / 'image_2').is_dir()
    # the second run over the same folder replaces the tool's files and nothing else
    labels = snapshot(out / 'kitti' / 'label_2')
    assert bag_cli.main(_bag_args(world, out, '--overwrite', '--max-frames', '1', bag=out / 'bag',
                                  prompts=SIM_PROMPTS)) == 0
    assert snapshot(out / 'kitti' / 'label_2') == labels      # its own files replaced by the same


BINARY = b'\xff\xfe\x00\x01' * 16       # never UTF-8


def _binary(path):
    path.write_bytes(BINARY)
    return path


def _users_occupancy(tmp):
    (tmp / 'mine' / 'occupancy').mkdir(parents=True)
    (tmp / 'mine' / 'occupancy' / 'notes.txt').write_text('my grids\n')
    return tmp / 'mine'


def _users_folder(tmp, rel, text='my data\n'):
    """A folder of the user's holding ``rel`` (no marker): where --overwrite writes beside the content."""
    (tmp / 'mine' / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp / 'mine' / rel).write_text(text)
    return tmp / 'mine'


def _refused_before_labelling(world, tmp, text):
    """A refusal found up front: nothing written in the user's folder, not even the marker."""
    assert not (tmp / 'mine' / '.frames' / 'manifest.json').exists(), text
    assert not (tmp / 'mine' / MARKER).exists(), text


def _no_folder_left(world, tmp, text):
    assert not (tmp / 'out').exists(), f'a run stopped by its input left {sorted((tmp / "out").rglob("*"))}'


def _empty_folder_kept(world, tmp, text):
    assert (tmp / 'empty').is_dir() and not any((tmp / 'empty').iterdir()), sorted((tmp / 'empty').iterdir())


def _broken_metadata(world, tmp):
    bag = shutil.copytree(world['bag'], tmp / 'drive.bag')
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: [\n')
    return bag


def _garbage(path):
    path.write_bytes(b'#ROSBAG V2.0\n garbage')
    return path


def _dup_stamps():
    return [T0, T0, T0 + 2 * PERIOD]


def _reversed_stamps():
    return [T0 + 2 * PERIOD, T0 + PERIOD, T0]


def _import_drive(tmp):
    drive = tmp / '2011_09_26_drive_0001_sync'
    for i in range(2):
        img, pts, _ = scene(i)
        (drive / 'image_02' / 'data').mkdir(parents=True, exist_ok=True)
        (drive / 'velodyne_points' / 'data').mkdir(parents=True, exist_ok=True)
        from PIL import Image
        Image.fromarray(img).save(drive / 'image_02' / 'data' / f'{i:010d}.png')
        pts.astype(np.float32).tofile(drive / 'velodyne_points' / 'data' / f'{i:010d}.bin')
    write_calib(drive / 'calib.txt', calib_from_K(K, T_CAM_LIDAR))
    return drive


ROWS = [
    # --- data loss: never delete or overwrite what the tool did not write
    Row('out_is_users_sim_folder_without_marker', 'bag',
        lambda w, t: (_bag_args(w, _copy_of(w, t, 'usersim'), bag=t / 'usersim' / 'bag'), [t / 'usersim']),
        2, 'was not written by autolabel-bag'),
    Row('out_is_autolabel_sim_output', 'bag',
        lambda w, t: (_bag_args(w, _copy_of(w, t, 'sim'), bag=t / 'sim' / 'bag'), [t / 'sim']),
        2, 'holds the output of autolabel-sim'),
    Row('overwrite_writes_beside_user_files', 'bag', _user_outdir_with_overwrite, 0, 'frames labelled',
        _check_overwrite),
    Row('users_folder_named_like_an_output_is_not_listed_as_one', 'bag',
        lambda w, t: (_bag_args(w, _users_occupancy(t), '--overwrite', '--max-frames', '1'), [t / 'mine']), 0,
        'outputs in', lambda w, t, text: 'occupancy/' not in next(
            ln for ln in text.splitlines() if ln.startswith('outputs in')) or pytest.fail(text)),
    # --overwrite writes beside the user's files, never over them: refused before the labelling
    *[Row(f'overwrite_refuses_users_{rel.replace("/", "_").replace(".", "_")}', 'bag',
          lambda w, t, rel=rel: (_bag_args(w, _users_folder(t, rel), '--overwrite'), [t / 'mine']), 2,
          f'{rel}: exists and was not written by autolabel-bag', _refused_before_labelling)
      for rel in ('openlabel.json', 'kitti/label_2/000000.txt', 'kitti/calib/000002.txt',
                  'labels.bag/metadata.yaml')],
    Row('overwrite_refuses_users_occupancy_json_with_occupancy', 'bag',
        lambda w, t: (_bag_args(w, _users_folder(t, 'occupancy/occupancy.json'), '--overwrite',
                                '--occupancy'), [t / 'mine']), 2,
        'occupancy/occupancy.json: exists and was not written by autolabel-bag', _refused_before_labelling),
    # the tool's hidden work folders: a user's folder of that name is never removed
    *[Row(f'overwrite_refuses_users_{name[1:]}_folder', 'bag',
          lambda w, t, name=name: (_bag_args(w, _users_folder(t, f'{name}/notes.txt'), '--overwrite'),
                                   [t / 'mine']), 2,
          f'{name}: autolabel-bag keeps its work in a folder of this name and did not create this one',
          _refused_before_labelling)
      for name in ('.frames', '.assemble')],
    Row('kitti_out_is_users_folder', 'kitti',
        lambda w, t: (['--data', str(w['kitti']), '--out', str(w['kitti'] / 'label_2')], [w['kitti']]),
        2, 'was not written by autolabel-kitti'),
    Row('sim_out_is_users_folder', 'sim',
        lambda w, t: (['--out', str(w['kitti']), '--frames', '1', '--quiet'], [w['kitti']]),
        2, 'was not written by autolabel-sim'),
    # --overwrite never replaces the ground truth the run reads (--out DATA/label_2)
    Row('kitti_overwrite_into_its_own_label_2', 'kitti',
        lambda w, t: (['--data', str(kitti_copy(w, t, lambda kd: None)),
                       '--out', str(t / 'kitti_in' / 'label_2'), '--overwrite', '--config', str(w['cfg']),
                       '--quiet'], [t / 'kitti_in']), 2,
        'label_2/000000.txt: exists and was not written by autolabel-kitti',
        lambda w, t, text: not (t / 'kitti_in' / 'label_2' / MARKER).exists() or pytest.fail(text)),
    Row('kitti_stats_is_users_file', 'kitti',
        lambda w, t: (['--data', str(w['kitti']), '--out', str(t / 'out'), '--config', str(w['cfg']),
                       '--quiet', '--stats', str(_file_at(t))], [t / 'a_file']), 2,
        'a_file: exists and is not a stats file of autolabel-kitti',
        lambda w, t, text: not (t / 'out').exists() or pytest.fail(text)),
    Row('sim_overwrite_refuses_users_label_file', 'sim',
        lambda w, t: (['--out', str(_users_folder(t, 'kitti/training/label_2/000001.txt')), '--frames', '2',
                       '--quiet', '--overwrite'], [t / 'mine']), 2,
        'kitti/training/label_2/000001.txt: exists and was not written by autolabel-sim',
        lambda w, t, text: not (t / 'mine' / MARKER).exists() or pytest.fail(text)),
    Row('kitti_masks_gt_without_instance_masks', 'kitti',
        lambda w, t: (['--data', str(w['kitti']), '--out', str(t / 'out'), '--masks', 'gt', '--quiet'],
                      [w['kitti']]), 2, 'instance_2/000000.png: oracle instance mask not found',
        lambda w, t, text: not (t / 'out').exists() or pytest.fail('--out created before the check')),
    Row('kitti_frame_named_twice_is_labelled_once', 'kitti',
        lambda w, t: (['--data', str(w['kitti']), '--out', str(t / 'out'), '--frames', '000001,000001',
                       '--config', str(w['cfg']), '--stats', str(t / 's.json'), '--quiet'], [w['kitti']]),
        0, 'in 1 frames',
        lambda w, t, text: len(json.loads((t / 's.json').read_text())['frames']) == 1 or pytest.fail(text)),
    Row('kitti_scan_missing', 'kitti',
        lambda w, t: (['--data', str(kitti_copy(w, t, lambda kd: (kd / 'velodyne' / '000001.bin').unlink())),
                       '--out', str(t / 'out'), '--quiet'], [t / 'kitti_in']),
        2, 'velodyne/000001.bin: velodyne file not found',
        lambda w, t, text: not (t / 'out').exists() or pytest.fail('frames labelled before the check')),
    Row('kitti_stats_is_a_folder', 'kitti',
        lambda w, t: (['--data', str(w['kitti']), '--out', str(t / 'out'), '--stats', str(w['kitti'])],
                      [w['kitti']]), 2, '--stats', lambda w, t, text: 'is a folder' in text),
    Row('kitti_stats_under_a_file', 'kitti',
        lambda w, t: (['--data', str(w['kitti']), '--out', str(t / 'out'), '--stats',
                       str(_file_at(t) / 'stats.json')], [t / 'a_file']), 2, 'lies under the file'),
    *[Row(f'sim_{flag[2:]}_{bad}', 'sim',
          lambda w, t, flag=flag, bad=bad: (['--out', str(t / 'out'), '--frames', '1', '--quiet', flag, bad],
                                            []),
          2, f'{flag} {bad}: must',
          lambda w, t, text: not (t / 'out').exists() or pytest.fail('--out created before the check'))
      for flag, bad in (('--cars', '-3'), ('--seed', '-1'), ('--azimuth-step', '5'))],
    # --- --out unusable (checked before any model loads)
    Row('out_is_a_file', 'bag', lambda w, t: (_bag_args(w, _file_at(t)), [t / 'a_file']), 2, 'is a file'),
    Row('out_under_a_file', 'bag', lambda w, t: (_bag_args(w, _file_at(t) / 'sub'), [t / 'a_file']), 2,
        'lies under the file'),
    Row('kitti_out_is_a_file', 'kitti',
        lambda w, t: (['--data', str(w['kitti']), '--out', str(_file_at(t))], [t / 'a_file']), 2,
        'is a file'),
    Row('import_out_is_a_file', 'import',
        lambda w, t: ([str(_import_drive(t)), '--out', str(_file_at(t))], [t / 'a_file']), 2, 'exists'),
    Row('import_out_under_a_file', 'import',
        lambda w, t: ([str(_import_drive(t)), '--out', str(_file_at(t) / 'x.bag')], [t / 'a_file']), 2,
        'is a file'),
    # --- options
    Row('max_frames_negative', 'bag', lambda w, t: (_bag_args(w, t / 'out', '--max-frames', '-1'), []), 2,
        '--max-frames -1: must be >= 1'),
    Row('max_frames_zero', 'bag', lambda w, t: (_bag_args(w, t / 'out', '--max-frames', '0'), []), 2,
        '--max-frames 0: must be >= 1'),
    Row('start_after_the_drive', 'bag', lambda w, t: (_bag_args(w, t / 'out', '--start', '100'), []), 2,
        f"no frame in the window --start 100 s (the input's {N_FRAMES} frames span 0.2 s)", _no_folder_left),
    Row('start_after_the_drive_in_an_empty_folder', 'bag',
        lambda w, t: ((t / 'empty').mkdir() or _bag_args(w, t / 'empty', '--start', '100'), []), 2,
        'no frame in the window --start 100 s', _empty_folder_kept),
    Row('ray_unreachable', 'bag', lambda w, t: (_bag_args(w, t / 'out', '--ray', '127.0.0.1:9'), []), 2,
        '--ray 127.0.0.1:9'),
    Row('yaml_tag_in_config', 'bag', lambda w, t: (_bag_args(w, t / 'out', cfg=_yaml_tag_config(t)), []),
        2, 'not valid YAML'),
    # --- calibration
    Row('calib_r0_rect_nan', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', '--calib',
                                str(kitti_copy(w, t, _nan_calib) / 'calib' / '000000.txt')),
                      [t / 'kitti_in']), 2, 'R0_rect has non-finite values'),
    Row('calib_p2_zeros', 'kitti',
        lambda w, t: (['--data', str(kitti_copy(w, t, _zero_p2)), '--out', str(t / 'out')], [t / 'kitti_in']),
        2, '000000.txt: P2 is not a camera projection'),
    Row('image_size_differs_from_calibration_kitti', 'kitti',
        lambda w, t: (['--data', str(kitti_copy(w, t, lambda kd: __import__('PIL.Image').Image.new(
            'RGB', (100, 30)).save(kd / 'image_2' / '000000.png'))), '--out', str(t / 'out'),
            '--config', str(w['cfg']), '--quiet'], [t / 'kitti_in']),
        2, 'image 100x30 does not match the calibration'),
    Row('image_size_differs_from_camera_info', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=custom_bag(t / 'b.bag', info_size=(1242, 375))), []), 1,
        'camera_info on /camera/camera_info is 1242x375 but the image is 320x120'),
    Row('depth_16uc1_as_camera', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=custom_bag(t / 'b.bag', encoding='16UC1')), []), 1,
        'depth image, not a camera image'),
    # --- prompts
    Row('prompt_box_outside_image', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=custom_bag(t / 'b.bag', extra_boxes=[OUTSIDE_BOX])), []),
        0, '1 of 2 prompts dropped (1 outside_image', _check_outside),
    Row('prompt_boxes_nan_inverted_zero', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=custom_bag(t / 'b.bag', mutate=_mutate_degenerate)), []),
        0, '3 of 4 prompts dropped (1 inverted, 1 non_finite, 1 zero_area', _check_degenerate),
    Row('many_prompts_capped_and_chunked', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', '--prompt-chunk', '2', cfg=_cap_config(w, t),
                                bag=custom_bag(t / 'b.bag', extra_boxes=[(10 + 20 * k, 20, 30 + 20 * k, 60)
                                                                         for k in range(6)])), []),
        0, 'over_cap', _check_cap),
    Row('kitti_label_boxes_outside_and_inverted', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', prompts='gt', bag=kitti_copy(w, t, _bad_label_boxes)),
                      [t / 'kitti_in']),
        0, '1 of 2 prompts dropped (1 outside_image', _check_label_boxes),
    # --- labels, scans
    Row('nan_in_ground_truth_label', 'eval',
        lambda w, t: ([str(kitti_copy(w, t, lambda kd: (kd / 'label_2' / '000001.txt').write_text(
            'Car 0.00 0 0.0 10 20 30 nan 1.5 1.8 4.2 1.0 1.0 10.0 0.0\n')) / 'label_2'),
                       str(w['kitti'] / 'label_2')],
                      [t / 'kitti_in']), 2, '000001.txt:1: NaN or inf'),
    Row('malformed_label_line', 'eval',
        lambda w, t: ([str(kitti_copy(w, t, lambda kd: (kd / 'label_2' / '000001.txt').write_text(
            'Car 0.00 0 0.0 10 20\n')) / 'label_2'), str(w['kitti'] / 'label_2')], [t / 'kitti_in']),
        2, '000001.txt:1: expected 15 or 16 columns'),
    # binary files where text is expected (a scan or image saved under the wrong name): not a traceback
    Row('binary_label_file', 'eval',
        lambda w, t: ([str(kitti_copy(w, t, lambda kd: (kd / 'label_2' / '000001.txt').write_bytes(BINARY))
                           / 'label_2'), str(w['kitti'] / 'label_2')], [t / 'kitti_in']),
        2, '000001.txt: not a text file'),
    Row('binary_calib_file', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', '--calib', str(_binary(t / 'calib.txt'))), [t / 'calib.txt']),
        2, 'calib.txt: not a text file'),
    Row('binary_config_file', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', cfg=_binary(t / 'c.yaml')), [t / 'c.yaml']), 2,
        'c.yaml: not a text file'),
    Row('truncated_velodyne_bin', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', prompts='gt', bag=kitti_copy(
            w, t, lambda kd: (kd / 'velodyne' / '000001.bin').write_bytes(b'\0' * 30))), [t / 'kitti_in']),
        0, 'not a multiple of 16'),
    # --- bags
    Row('corrupt_bag', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=_garbage(t / 'bad.bag')), []), 2, 'bad.bag'),
    Row('corrupt_bag_metadata', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=_broken_metadata(w, t)), []), 2, 'Could not load YAML',
        lambda w, t, text: 'line 2' in next(ln for ln in text.splitlines() if 'Could not load YAML' in ln)
        or pytest.fail(text)),
    Row('missing_topic', 'bag', lambda w, t: (_bag_args(w, t / 'out', '--image-topic', '/nope'), []), 2,
        "'/nope' not in the bag", _no_folder_left),
    Row('missing_tf', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=write_tiny_bag(t / 'notf.bag', n=2, with_tf=False)), []), 2,
        '--calib'),
    Row('unsupported_encoding_and_corrupt_message', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=write_tiny_bag(t / 'b.bag', n=4, corrupt_message_at=1,
                                                                  bad_encoding_at=3)), []),
        0, '2/3 frames labelled (1 failed)'),
    Row('duplicate_stamps', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=custom_bag(t / 'b.bag', stamps=_dup_stamps())), []), 0,
        '2/2 frames labelled'),
    Row('reversed_stamps', 'bag',
        lambda w, t: (_bag_args(w, t / 'out', bag=custom_bag(t / 'b.bag', stamps=_reversed_stamps())), []), 0,
        '3/3 frames labelled'),
]


def _run_cli(tool, argv):
    main = {'bag': bag_cli.main, 'kitti': kitti_cli.main, 'sim': sim_cli.main, 'eval': eval_cli.main,
            'import': lambda a: bag_cli.main(['import-kitti-raw', *a])}[tool]
    try:
        return main(argv)
    except SystemExit as e:    # argparse
        return e.code


@pytest.mark.parametrize('row', ROWS, ids=[r.name for r in ROWS])
def test_bad_input(row, world, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    argv, owned = row.setup(world, tmp_path)
    before = {str(p): snapshot(p) for p in owned}
    t0 = time.perf_counter()
    rc = _run_cli(row.tool, argv)
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    text = out + err + caplog.text
    assert rc == row.rc, text[-3000:]
    assert row.fragment in text, text[-3000:]
    assert 'Traceback' not in err
    if rc == 2:   # one error line, naming the problem
        error_lines = [ln for ln in err.splitlines() if re.match(r'autolabel-[a-z -]+: (\w+ )?error: ', ln)]
        assert len(error_lines) == 1, err
        assert elapsed < 20, f'{row.name}: the error took {elapsed:.1f} s (checked before the models?)'
    if row.check:
        row.check(world, tmp_path, text)
    # every file the user had is still there, unchanged (the tool may add its own beside them)
    after = {k: {f: snapshot(k).get(f) for f in files} for k, files in before.items()}
    assert after == before, f'{row.name}: files the user owned changed'


# ----------------------------------------------------------------------------------------------
# file systems: read-only and full (a small tmpfs; skipped where mounting is not permitted)

@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    mounted = []

    def mount(size_kb: int, ro: bool = False) -> Path:
        opts = f'size={size_kb}k' + (',ro' if ro else '')
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', opts, 'tmpfs', str(mnt)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            pytest.skip(f'cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); needs root')
        mounted.append(mnt)
        return mnt

    yield mount
    for m in mounted:
        subprocess.run(['umount', str(m)], check=False)


@pytest.mark.parametrize('tool', ['bag', 'kitti', 'import'])
def test_read_only_output_is_one_line_before_models(tool, world, tmpfs, tmp_path, capsys):
    ro = tmpfs(64, ro=True)
    argv = {'bag': _bag_args(world, ro / 'out'),
            'kitti': ['--data', str(world['kitti']), '--out', str(ro / 'out')],
            'import': [str(_import_drive(tmp_path)), '--out', str(ro / 'x.bag')]}[tool]
    t0 = time.perf_counter()
    rc = _run_cli(tool, argv)
    err = capsys.readouterr().err
    assert rc == 2 and 'Read-only file system' in err and 'Traceback' not in err, err
    assert time.perf_counter() - t0 < 20


def test_disk_full_keeps_finished_frames_and_no_temporaries(world, tmpfs, tmp_path, capsys):
    """Outputs of the tiny drive need ~1.4 MB; 600 kB hold the saved frames but not the label bag."""
    mnt = tmpfs(600)
    out = mnt / 'out'
    rc = bag_cli.main(_bag_args(world, out))
    err = capsys.readouterr().err
    assert rc == 2 and 'No space left on device' in err and 'Traceback' not in err, err
    saved = len(list((out / '.frames').glob('0*.json')))
    assert saved >= 1 and leftovers(out) == [] and not (out / 'labels.bag').exists()
    assert f'{saved} finished frames are kept' in err
    # with room again, the same command resumes (0 frames relabelled) and gives the outputs
    subprocess.run(['mount', '-o', 'remount,size=20m', str(mnt)], check=True)
    assert bag_cli.main(_bag_args(world, out)) == 0
    assert _summary(out)['run']['resumed_frames'] == saved and leftovers(out) == []


# ----------------------------------------------------------------------------------------------
# smaller rows that are not command lines

def test_nan_and_inf_in_a_velodyne_scan_are_dropped_quietly(tmp_path):
    pts = np.array([[1, 2, 3, 0.5], [np.nan, 0, 0, 0], [4, np.inf, 1, 0], [5, 6, 7, 0.1]], np.float32)
    pts.tofile(tmp_path / 's.bin')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        got = read_velodyne(tmp_path / 's.bin')
    np.testing.assert_array_equal(got, pts[[0, 3]])


def test_report_survives_a_label_without_centre(tmp_path):
    """The stuck run: a prompt outside the image saved as a label whose centre is null."""
    from autolabel_ros.io.report import write_figures
    rec = {'index': 0, 'name': '000000', 'prompts': [{}], 'timings': {'frame_s': 1.0},
           'labels': [{'center': [None, None, None], 'size': [4, 2, 1.5], 'yaw': 0.0, 'accepted': False,
                       'score': 0.0, 'id': 3, 'reasons': ['outside_image']}]}
    files = write_figures(tmp_path, [rec], {0: np.zeros((5, 2), np.float16)})
    assert 'bev_sheet.png' in files and (tmp_path / 'bev_sheet.png').stat().st_size > 5000


# ----------------------------------------------------------------------------------------------
# signals: SIGINT and kill -9 at random moments, then resume to identical outputs

def _resume_in_process(bag, cfg, out):
    """The same command as the interrupted process ran, in this process (no model reloading)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        rc = bag_cli.main(command(bag, cfg, out)[3:])
    return rc, err.getvalue()


@pytest.fixture(scope='module')
def reference_run(world, tmp_path_factory):
    out = tmp_path_factory.mktemp('reference') / 'out'
    rc, err = _resume_in_process(world['bag'], world['cfg'], out)
    assert rc == 0, err
    return output_tree(out)


def test_sigint_then_resume_gives_identical_outputs(world, reference_run, tmp_path):
    r = interrupted_run(world['bag'], world['cfg'], tmp_path / 'out', seed=1, sig=signal.SIGINT,
                        phase='labelling')
    assert stopped_as_expected(r), r
    if r['sent']:
        assert 'interrupted; finished frames are kept' in r['stderr'], r['stderr']
    assert _resume_in_process(world['bag'], world['cfg'], tmp_path / 'out')[0] == 0
    tree = output_tree(tmp_path / 'out')
    assert sorted(tree) == sorted(reference_run)
    assert [k for k in tree if tree[k] != reference_run[k]] == []
    assert leftovers(tmp_path / 'out') == []


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='workers are forked on Linux only')
def test_ctrl_c_with_forked_workers_then_resume_gives_identical_outputs(world, reference_run, tmp_path):
    """Ctrl-C at a terminal reaches the whole process group: the tool and its two workers, forked from
    it after it loaded the models. Exit 130 with the one line, no traceback, no worker left running;
    the same command resumes to the same outputs."""
    from fault_campaign import _default_sigint, _env

    out = tmp_path / 'out'
    proc = subprocess.Popen(command(world['bag'], world['cfg'], out, ['--workers', '2', '--threads', '1']),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=_default_sigint, start_new_session=True)
    try:
        end = time.monotonic() + 300
        while not any((out / '.frames').glob('[0-9]*.json')) and proc.poll() is None \
                and time.monotonic() < end:
            time.sleep(0.005)
        workers = _children(proc.pid)
        sent = proc.poll() is None
        if sent:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert sent, 'the run ended before its first frame was saved'
    assert len(workers) >= 2, workers          # the two workers (and the figure process)
    assert proc.returncode == 130 and 'interrupted; finished frames are kept' in err, err
    assert 'Traceback' not in err, err
    time.sleep(0.5)
    assert [p for p in workers if Path(f'/proc/{p}').exists()] == []
    assert _resume_in_process(world['bag'], world['cfg'], out)[0] == 0
    tree = output_tree(out)
    assert [k for k in reference_run if tree.get(k) != reference_run[k]] == []


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f'/proc/{pid}/task/{pid}/children').read_text().split()]
    except OSError:
        return []


def test_kill_9_at_random_moments_then_resume_gives_identical_outputs(world, reference_run, tmp_path):
    """Seeds 1 and 2: kill -9 while labelling and while the outputs are written (the 10-seed campaign
    with SIGINT too is ``python test/fault_campaign.py``)."""
    results = campaign(world['bag'], world['cfg'], tmp_path, [1, 2], reference_run, signal.SIGKILL,
                       resume=_resume_in_process)
    assert [r['phase'] for r in results] == ['labelling', 'output']
    for r in results:
        assert stopped_as_expected(r), r
        assert r['resume_rc'] == 0, r['resume_stderr']
        assert r['differing'] == [] and r['leftovers'] == [], r


def test_install_tree_replaces_only_the_tools_own_files(tmp_path):
    from autolabel_ros.io.outdir import install_tree, own_files, prepare_output_dir
    out = prepare_output_dir(tmp_path / 'out', 'autolabel-bag')
    for run, names in ((1, ['kitti/label_2/000000.txt', 'kitti/label_2/000001.txt', 'meshes/000001_0.ply']),
                       (2, ['kitti/label_2/000000.txt'])):
        stage = out / '.assemble'
        for n in names:
            (stage / n).parent.mkdir(parents=True, exist_ok=True)
            (stage / n).write_text(f'run {run}\n')
        if run == 1:
            install_tree(stage, out, 'autolabel-bag')
            (out / 'kitti' / 'label_2' / 'mine.txt').write_text('the user wrote this\n')
        else:
            assert install_tree(stage, out, 'autolabel-bag') == names
    assert (out / 'kitti' / 'label_2' / '000000.txt').read_text() == 'run 2\n'
    assert not (out / 'kitti' / 'label_2' / '000001.txt').exists() and not (out / 'meshes').exists()
    assert (out / 'kitti' / 'label_2' / 'mine.txt').read_text() == 'the user wrote this\n'
    assert own_files(out) == {'kitti/label_2/000000.txt'} and not (out / '.assemble').exists()


def test_users_file_at_a_mesh_path_stops_the_move_into_place(world, reference_run, tmp_path, capsys):
    """A mesh's name depends on the labels, so a user's file there is found only when the outputs
    move into place: one error line naming it, nothing replaced, the staged outputs and the frames
    kept; once the file is moved away the same command resumes to the outputs of a clean run."""
    mesh = next(k for k in reference_run if k.startswith('meshes/'))
    out = _users_folder(tmp_path, mesh, 'my mesh\n')
    assert bag_cli.main(_bag_args(world, out, '--overwrite')) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith('autolabel-bag: error: ')]
    assert len(lines) == 1 and lines[0].startswith(f'autolabel-bag: error: {out / mesh}: exists and was not '
                                                   'written by autolabel-bag'), err
    assert f'{out / ".assemble"}' in lines[0] and f'{out / ".frames"}' in lines[0], err
    assert (out / mesh).read_text() == 'my mesh\n' and not (out / 'openlabel.json').exists()
    assert (out / '.assemble' / 'openlabel.json').is_file() and (out / '.assemble' / mesh).is_file()
    (out / mesh).rename(tmp_path / 'my.ply')
    assert bag_cli.main(_bag_args(world, out, '--overwrite')) == 0
    assert output_tree(out) == reference_run and not (out / '.assemble').exists()


def test_rerun_on_an_output_from_before_the_marker_replaces_its_outputs(world, reference_run, tmp_path):
    """A folder written before the marker existed (recognised by its frame store): its outputs are the
    tool's, so a rerun replaces them (a file of another name there is still not the tool's)."""
    out = tmp_path / 'old'
    assert bag_cli.main(_bag_args(world, out, '--max-frames', '2')) == 0
    (out / MARKER).unlink()
    (out / 'report' / 'notes.txt').write_text('mine\n')
    assert bag_cli.main(_bag_args(world, out)) == 0
    assert (out / 'report' / 'notes.txt').read_text() == 'mine\n'
    (out / 'report' / 'notes.txt').unlink()
    assert output_tree(out) == reference_run


def test_prompt_screening_reasons_and_cap():
    from autolabel_ros.core.prompts import box_problem, screen_prompts
    boxes = ([0, 0, np.nan, 5], [10, 0, 5, 5], [3, 3, 3, 9], [100, 0, 150, 9], [-20, -20, 0.5, 10],
             [90, 40, 120, 60])
    assert [box_problem(b, 100, 50) for b in boxes] == \
        ['non_finite', 'inverted', 'zero_area', 'outside_image', 'outside_image', None]
    ps = [Prompt(id=i, box=[10 * i, 0, 10 * i + 8, 8], score=s) for i, s in enumerate([0.5, 0.9, 0.5, 0.7])]
    ps.append(Prompt(id=9, box=[500, 0, 510, 8]))
    kept, dropped = screen_prompts(ps, 100, 50, max_prompts=2)
    assert [p.id for p in kept] == [1, 3]              # highest scores, input order kept
    assert [(d.id, d.reason) for d in dropped] == [(0, 'over_cap'), (2, 'over_cap'), (9, 'outside_image')]


@pytest.mark.parametrize('module', ['sim', 'kitti', 'eval', 'bag', 'bag import-kitti-raw', 'build_prior',
                                    'train_css', 'curriculum', 'demo'])
def test_help_describes_the_command_in_whole_plain_sentences(module, capsys):
    """The description under ``usage:`` is the docstring's first paragraph: complete (it was cut at the
    docstring's first line break) and without reST markup (``x``, :func:)."""
    import importlib
    with pytest.raises(SystemExit) as e:
        module, *sub = module.split()
        importlib.import_module(f'autolabel_ros.cli.{module}').main(sub + ['--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    text = out.split('\n\n')[1]          # usage, description, options
    assert text.rstrip().endswith('.') and len(text) > 30, text
    assert '``' not in text and ':func:' not in text and not text.startswith('autolabel-'), text
    # every option says what it does: text beside it, or on the deeper-indented line below it
    lines = out.split('options:')[1].splitlines()
    bare = [ln.strip() for i, ln in enumerate(lines) if ln.startswith('  -')
            and len(re.split(r'\s{2,}', ln.strip())) == 1
            and not (i + 1 < len(lines) and re.match(r'\s{10,}[^\s-]', lines[i + 1]))]
    assert not bare, f'options without help: {bare}'
