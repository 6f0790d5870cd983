"""Label outputs of the offline tool: ASAM OpenLABEL 1.0 JSON, PLY meshes, KITTI label_2 + calib.

All writers are deterministic (sorted keys, fixed float formatting by ``json``, no clock times), so
the same labels always give the same bytes; that is what makes a resumed run identical to an
uninterrupted one. The label bag lives in :mod:`autolabel_ros.io.label_bag`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from autolabel_ros.core.types import Label3D, Mesh

OPENLABEL_VERSION = '1.0.0'


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(qx, qy, qz, qw) of a rotation by ``yaw`` about +z."""
    return 0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2))


def openlabel_cuboid(label: Label3D) -> list[float]:
    """OpenLABEL cuboid ``val``: x, y, z (centre), qx, qy, qz, qw, sx, sy, sz (= l, w, h)."""
    return [float(v) for v in label.center] + list(yaw_quaternion(label.yaw)) + [float(v) for v in label.size]


def build_openlabel(frames: Sequence[dict], K=None, T_cam_lidar=None, width=None, height=None,
                    lidar_frame: str = 'lidar', camera_frame: str = 'camera', source: str = '',
                    tracked: bool = False) -> dict:
    """OpenLABEL 1.0 document for per-frame labels.

    ``frames``: dicts with ``index`` (OpenLABEL frame number), ``name``, ``stamp_ns`` and ``labels``
    (list of Label3D, accepted ones). Untracked, each label is one object whose ``frame_intervals`` is
    its frame; its uid is ``<frame name>_<label id>``. ``tracked``: ``label.id`` is a track id, one
    object per track (uid ``track_<id>``) whose ``frame_intervals`` are the runs of frames it has a
    box in; boxes the tracker interpolated carry ``boolean interpolated = true``. Cuboids live in the
    ``lidar`` coordinate system (x forward, y left, z up); ``camera`` is its child with the extrinsic.
    """
    objects, ol_frames = {}, {}
    seen: dict[str, list[int]] = {}
    for fr in frames:
        n = int(fr['index'])
        fobjs = {}
        for lab in fr['labels']:
            uid = f'track_{int(lab.id)}' if tracked else f"{fr['name']}_{int(lab.id)}"
            objects[uid] = {'name': uid, 'type': lab.cls,
                            'frame_intervals': [{'frame_start': n, 'frame_end': n}]}
            seen.setdefault(uid, []).append(n)
            fobjs[uid] = {'object_data': {
                'cuboid': [{'name': 'shape3D', 'val': openlabel_cuboid(lab), 'coordinate_system': 'lidar'}],
                'num': [{'name': 'confidence', 'val': float(lab.score)}],
            }}
            if tracked:
                fobjs[uid]['object_data']['boolean'] = [
                    {'name': 'interpolated', 'val': bool(lab.metrics.get('interpolated', 0))}]
            if lab.box2d is not None:
                x1, y1, x2, y2 = (float(v) for v in lab.box2d)
                fobjs[uid]['object_data']['bbox'] = [{'name': 'prompt2D', 'stream': 'camera',
                                                       'val': [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1,
                                                               y2 - y1]}]
        ol_frames[str(n)] = {'objects': fobjs,
                             'frame_properties': {'timestamp': int(fr['stamp_ns']) / 1e9,
                                                  'streams': {'camera': {'stream_properties': {'sync': {
                                                      'frame_stream': n}}}}}}
    for uid, ns in seen.items():
        objects[uid]['frame_intervals'] = _intervals(sorted(set(ns)))
    nums = sorted(int(fr['index']) for fr in frames)
    cs = {'lidar': {'type': 'sensor_cs', 'parent': '', 'children': ['camera'],
                    'description': f'LiDAR frame {lidar_frame!r}: x forward, y left, z up'}}
    if T_cam_lidar is not None:
        T_lidar_cam = np.linalg.inv(np.asarray(T_cam_lidar, dtype=np.float64))
        cs['camera'] = {'type': 'sensor_cs', 'parent': 'lidar', 'children': [],
                        'description': f'camera optical frame {camera_frame!r}: x right, y down, z forward',
                        'pose_wrt_parent': {'matrix4x4': [float(v) for v in T_lidar_cam.reshape(-1)]}}
    streams = {'lidar': {'type': 'lidar', 'description': 'point cloud'}}
    if K is not None:
        P = np.hstack([np.asarray(K, dtype=np.float64).reshape(3, 3), np.zeros((3, 1))])
        streams['camera'] = {'type': 'camera', 'description': 'image',
                             'stream_properties': {'intrinsics_pinhole': {
                                 'camera_matrix_3x4': [float(v) for v in P.reshape(-1)],
                                 'distortion_coeffs_1xN': [], 'width_px': int(width or 0),
                                 'height_px': int(height or 0)}}}
    doc = {'openlabel': {
        'metadata': {'schema_version': OPENLABEL_VERSION, 'annotator': 'autolabel_ros',
                     'comment': f'automatic 3D labels of {source}' if source else 'automatic 3D labels'},
        'coordinate_systems': cs,
        'streams': streams,
        'objects': objects,
        'frames': ol_frames,
        'frame_intervals': _intervals(nums),
    }}
    return doc


def _intervals(nums: list[int]) -> list[dict]:
    """Consecutive runs of frame numbers as OpenLABEL frame intervals."""
    out = []
    for n in nums:
        if out and n == out[-1]['frame_end'] + 1:
            out[-1]['frame_end'] = n
        else:
            out.append({'frame_start': n, 'frame_end': n})
    return out


PLY_COMMENT = 'https://github.com/mikedh/trimesh'   # the header trimesh writes, kept so files stay the same


def mesh_to_ply_bytes(mesh: Mesh) -> bytes:
    """Binary little-endian PLY of a mesh as fitted (float32 vertices, uchar-counted int32 faces):
    the bytes trimesh's exporter writes, packed with numpy (importing trimesh for it cost more than
    writing all of a run's meshes)."""
    v = np.asarray(mesh.vertices, dtype='<f4').reshape(-1, 3)
    f = np.asarray(mesh.faces).reshape(-1, 3)
    faces = np.empty(len(f), dtype=[('n', 'u1'), ('i', '<i4', (3,))])
    faces['n'] = 3
    faces['i'] = f
    header = ('ply\nformat binary_little_endian 1.0\n'
              f'comment {PLY_COMMENT}\n'
              f'element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n'
              f'element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n')
    return header.encode('ascii') + v.tobytes() + faces.tobytes()


def kitti_label_lines(labels: Sequence[Label3D], calib, width: int, height: int) -> list:
    """KittiObjects of the labels (camera-rect frame, with score) for label_2."""
    from autolabel_ros.io.kitti import label3d_to_kitti

    return [label3d_to_kitti(lab, calib, width, height) for lab in labels]


def write_kitti_frame_labels(root: Path, name: str, labels: Sequence[Label3D], calib, width: int,
                             height: int) -> None:
    """``root/label_2/<name>.txt`` (empty when no labels, so evaluators see the frame) and
    ``root/calib/<name>.txt``."""
    from autolabel_ros.io.kitti import write_calib, write_label_file

    root = Path(root)
    (root / 'label_2').mkdir(parents=True, exist_ok=True)
    (root / 'calib').mkdir(parents=True, exist_ok=True)
    write_label_file(root / 'label_2' / f'{name}.txt', kitti_label_lines(labels, calib, width, height))
    write_calib(root / 'calib' / f'{name}.txt', calib)
