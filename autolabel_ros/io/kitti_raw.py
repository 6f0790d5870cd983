"""KITTI folders as inputs of the bag tool, and the KITTI raw -> rosbag2 import.

Two folder layouts are read directly (same interface as :class:`autolabel_ros.io.bags.BagSource`):

- **KITTI raw drive**: ``image_02/data/*.png``, ``velodyne_points/data/*.bin`` and a calib file in the
  object-benchmark format (``calib.txt`` in the drive folder or its parent, or ``--calib``). Stamps come
  from ``image_02/timestamps.txt`` when present; otherwise (the shared excerpt has none) they are
  synthesized at 10 Hz from midnight UTC of the date in the folder name (``2011_09_26`` ->
  2011-09-26T00:00:00Z), or from 0 without a date, so every import of a drive gives the same bag.
- **KITTI object split**: ``image_2/``, ``velodyne/``, ``calib/`` (+ ``label_2/`` for ``--prompts gt``),
  stamps synthesized at 10 Hz the same way; frame names keep the KITTI ids so the outputs can be
  evaluated against ``label_2`` directly.

:func:`import_kitti_raw` writes a drive into a rosbag2 (MCAP by default) with the simulator's topics.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from autolabel_ros.core.types import SensorFrame
from autolabel_ros.io.bags import BagError, FrameRef, SourceStats, select_window

log = logging.getLogger(__name__)

# Topics and TF frames of imported drives (the simulator's bags use the same topics).
IMAGE_TOPIC = '/camera/image_raw'
INFO_TOPIC = '/camera/camera_info'
CLOUD_TOPIC = '/lidar/points'
TF_STATIC_TOPIC = '/tf_static'
CAMERA_FRAME = 'camera'
LIDAR_FRAME = 'lidar'
RATE_HZ = 10.0


def _date_start_ns(path: Path) -> int:
    for part in [path.name] + [p.name for p in path.parents]:
        m = re.search(r'(\d{4})_(\d{2})_(\d{2})', part)
        if m:
            y, mo, d = (int(g) for g in m.groups())
            return int(datetime(y, mo, d, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
    return 0


def _read_timestamps(path: Path) -> Optional[list[int]]:
    """KITTI raw timestamps.txt ('2011-09-26 13:02:25.964389445' per line) -> ns since the epoch."""
    if not path.is_file():
        return None
    out = []
    for line in path.read_text().split('\n'):
        line = line.strip()
        if line:
            out.append(int(np.datetime64(line.replace(' ', 'T'), 'ns').astype(np.int64)))
    return out


class _FolderSource:
    """Shared plumbing of the folder sources: stamps, windows, building and copying messages."""

    kind = 'folder'

    def __init__(self, path, rate_hz: float = RATE_HZ, start_ns: Optional[int] = None):
        self.path = Path(path)
        self.rate_hz = float(rate_hz)
        self.start_ns = _date_start_ns(self.path.resolve()) if start_ns is None else int(start_ns)
        self.stats = SourceStats()
        self.image_topic, self.info_topic, self.cloud_topic = IMAGE_TOPIC, INFO_TOPIC, CLOUD_TOPIC
        self.prompts_topic = None
        self._refs: Optional[list[FrameRef]] = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def _stamps(self, n: int) -> list[int]:
        period = int(round(1e9 / self.rate_hz))
        return [self.start_ns + i * period for i in range(n)]

    def select(self, start_s=None, end_s=None, max_frames=None) -> list[FrameRef]:
        return select_window(self.index(), start_s, end_s, max_frames)

    def describe(self) -> dict:
        return {'input': str(self.path), 'kind': self.kind, 'image_topic': None, 'info_topic': None,
                'cloud_topic': None, 'prompts_topic': None, 'rate_hz': self.rate_hz,
                'start_ns': self.start_ns}

    def load(self, ref: FrameRef) -> SensorFrame:   # pragma: no cover - overridden
        raise NotImplementedError

    def gt_prompts(self, ref: FrameRef):
        raise BagError(f'{self.path}: --prompts gt needs a KITTI object folder with label_2/')

    # -- ego motion ---------------------------------------------------------------------------------
    def _oxts_root(self) -> Path:
        return self.path

    def imu_to_velo(self, ref: FrameRef):
        """The calib's Tr_imu_to_velo (3 x 4) or None."""
        return getattr(self.kitti_calib(ref), 'Tr_imu_to_velo', None)

    def oxts_packets(self, refs: list[FrameRef]) -> Optional[list]:
        """KITTI raw OXTS packets of the frames (``oxts/data/<frame>.txt``); None when the input has
        none or a frame lacks its packet (the ego motion then comes from ICP)."""
        from autolabel_ros.io.oxts import OxtsError, find_oxts_dir, read_oxts

        d = find_oxts_dir(self._oxts_root())
        if d is None:
            return None
        out = []
        for r in refs:
            p = d / f"{r.extra.get('stem', r.name)}.txt"
            if not p.is_file():
                log.warning('%s: no OXTS packet for frame %s; ego motion from ICP instead', d, r.name)
                return None
            try:
                out.append(read_oxts(p))
            except OxtsError as e:
                raise BagError(str(e)) from None
        return out

    def iter_frames(self, refs: Iterable[FrameRef], prompts_from_topic: bool = False,
                    gt_prompts: bool = False):
        """Yield (ref, SensorFrame, prompts or None); unreadable frames are logged, counted and skipped."""
        if prompts_from_topic:
            raise BagError(f'{self.path}: a KITTI folder has no prompt topic; use --prompts fused (the '
                           'default) or detector')
        for ref in refs:
            try:
                frame = self.load(ref)
                prompts = self.gt_prompts(ref) if gt_prompts else None
            except BagError:
                raise
            except Exception as e:
                if self.stats.frame_skipped(ref.index, f'{type(e).__name__}: {e}'):
                    log.warning('frame %s skipped: %s', ref.name, e)
                continue
            yield ref, frame, prompts

    # -- messages for the label bag and the import ------------------------------------------------
    def sensor_connections(self) -> list[tuple[str, str]]:
        return [(IMAGE_TOPIC, 'sensor_msgs/msg/Image'), (INFO_TOPIC, 'sensor_msgs/msg/CameraInfo'),
                (CLOUD_TOPIC, 'sensor_msgs/msg/PointCloud2')]

    def sensor_messages(self, refs: list[FrameRef]) -> Iterator[tuple[str, str, int, bytes, None]]:
        """Image, camera_info and cloud of every readable frame, serialized as CDR at the frame stamp."""
        from autolabel_ros.io import messages as M
        from autolabel_ros.io.ros_types import get_typestore

        ts = get_typestore()
        fac = M.rosbags_factory(ts)
        for ref, frame, _ in self.iter_frames(refs):
            t = ref.stamp_ns
            msgs = [(IMAGE_TOPIC, M.make_image(frame.image, t, CAMERA_FRAME, fac)),
                    (INFO_TOPIC, M.make_camera_info(frame.K, frame.width, frame.height, t, CAMERA_FRAME,
                                                    fac)),
                    (CLOUD_TOPIC, M.make_pointcloud2(frame.points, t, LIDAR_FRAME, fac))]
            for topic, msg in msgs:
                yield topic, msg.__msgtype__, t, bytes(ts.serialize_cdr(msg, msg.__msgtype__)), None

    def tf_static_messages(self) -> Iterator[tuple[str, str, int, bytes, None]]:
        """One /tf_static message camera -> lidar from the first frame's calibration."""
        from autolabel_ros.io import messages as M
        from autolabel_ros.io.ros_types import get_typestore

        refs = self.index()
        frame = self.load(refs[0])
        ts = get_typestore()
        msg = M.make_tf_static(frame.T_cam_lidar, CAMERA_FRAME, LIDAR_FRAME, refs[0].stamp_ns,
                               M.rosbags_factory(ts))
        data = bytes(ts.serialize_cdr(msg, msg.__msgtype__))
        yield TF_STATIC_TOPIC, msg.__msgtype__, refs[0].stamp_ns, data, None


def find_raw_calib(drive: Path) -> Optional[Path]:
    for cand in (drive / 'calib.txt', drive.parent / 'calib.txt'):
        if cand.is_file():
            return cand
    return None


class KittiRawSource(_FolderSource):
    """A KITTI raw drive folder (``image_02/data``, ``velodyne_points/data``, calib)."""

    kind = 'kitti_raw'

    def __init__(self, path, calib=None, rate_hz: float = RATE_HZ, start_ns: Optional[int] = None):
        from autolabel_ros.io.kitti import read_calib

        super().__init__(path, rate_hz, start_ns)
        self.image_dir = self.path / 'image_02' / 'data'
        self.velo_dir = self.path / 'velodyne_points' / 'data'
        if not self.image_dir.is_dir() or not self.velo_dir.is_dir():
            raise BagError(f'{self.path}: not a KITTI raw drive '
                           f'(need image_02/data and velodyne_points/data)')
        if calib is None:
            cpath = find_raw_calib(self.path)
            if cpath is None:
                raise BagError(f'{self.path}: no calib.txt in the drive folder or its parent; give --calib '
                               f'(object-benchmark format: P2, R0_rect, Tr_velo_to_cam)')
            calib = read_calib(cpath)
        self.calib = calib

    def index(self) -> list[FrameRef]:
        if self._refs is not None:
            return self._refs
        images = {p.stem: p for p in self.image_dir.glob('*.png')}
        clouds = {p.stem: p for p in self.velo_dir.glob('*.bin')}
        stems = sorted(set(images) & set(clouds))
        self.stats.images, self.stats.clouds, self.stats.pairs = len(images), len(clouds), len(stems)
        self.stats.unmatched_images = len(images) - len(stems)
        self.stats.unmatched_clouds = len(clouds) - len(stems)
        if not stems:
            raise BagError(f'{self.path}: no frame has both image_02/data/<n>.png and '
                           f'velodyne_points/data/<n>.bin '
                           f'({len(images)} images, {len(clouds)} clouds)')
        all_stems = sorted(images)
        stamps = _read_timestamps(self.path / 'image_02' / 'timestamps.txt')
        if stamps is None or len(stamps) != len(all_stems):
            stamps = self._stamps(len(all_stems))
        by_stem = dict(zip(all_stems, stamps))
        self._refs = [FrameRef(index=i, stamp_ns=by_stem[s], name=f'{int(s):06d}' if s.isdigit() else s,
                               log_ns=by_stem[s], extra={'stem': s})
                      for i, s in enumerate(stems)]
        return self._refs

    def load(self, ref: FrameRef) -> SensorFrame:
        from autolabel_ros.io.kitti import read_image, read_velodyne

        s = ref.extra['stem']
        return SensorFrame(image=read_image(self.image_dir / f'{s}.png'), K=self.calib.K,
                           points=read_velodyne(self.velo_dir / f'{s}.bin'),
                           T_cam_lidar=self.calib.T_cam_lidar,
                           stamp_ns=ref.stamp_ns, frame_id=ref.name, lidar_frame=LIDAR_FRAME,
                           camera_frame=CAMERA_FRAME)

    def kitti_calib(self, ref: FrameRef):
        return self.calib


class KittiObjectSource(_FolderSource):
    """A KITTI object split (``image_2``, ``velodyne``, ``calib`` [, ``label_2``]); names = KITTI ids."""

    kind = 'kitti_object'

    def __init__(self, path, calib=None, rate_hz: float = RATE_HZ, start_ns: Optional[int] = None):
        from autolabel_ros.io.kitti import KittiObjectDataset

        super().__init__(path, rate_hz, start_ns)
        self.dataset = KittiObjectDataset(self.path)
        self.override_calib = calib

    def index(self) -> list[FrameRef]:
        if self._refs is None:
            ids = self.dataset.frame_ids
            if not ids:
                raise BagError(f'{self.path}: KITTI object folder without frames')
            self.stats.images = self.stats.clouds = self.stats.pairs = len(ids)
            self._refs = [FrameRef(index=i, stamp_ns=t, name=fid, log_ns=t)
                          for i, (fid, t) in enumerate(zip(ids, self._stamps(len(ids))))]
        return self._refs

    def kitti_calib(self, ref: FrameRef):
        return self.override_calib or self.dataset.calib(ref.name)

    def _oxts_root(self) -> Path:
        return self.dataset.root

    def load(self, ref: FrameRef) -> SensorFrame:
        from autolabel_ros.io.kitti import read_image, read_velodyne

        calib = self.kitti_calib(ref)
        root = self.dataset.root
        return SensorFrame(image=read_image(root / 'image_2' / f'{ref.name}.png'), K=calib.K,
                           points=read_velodyne(root / 'velodyne' / f'{ref.name}.bin'),
                           T_cam_lidar=calib.T_cam_lidar, stamp_ns=ref.stamp_ns, frame_id=ref.name,
                           lidar_frame=LIDAR_FRAME, camera_frame=CAMERA_FRAME)

    def gt_prompts(self, ref: FrameRef):
        if not (self.dataset.root / 'label_2').is_dir():
            return super().gt_prompts(ref)
        return self.dataset.prompts(ref.name, 'gt-boxes')


def is_kitti_raw(path: Path) -> bool:
    return (path / 'image_02' / 'data').is_dir() and (path / 'velodyne_points' / 'data').is_dir()


def is_kitti_object(path: Path) -> bool:
    return any((p / 'calib').is_dir() and ((p / 'velodyne').is_dir() or (p / 'image_2').is_dir())
               for p in (path, path / 'training'))


def import_kitti_raw(drive, out, storage: str = 'mcap', calib=None, rate_hz: float = RATE_HZ,
                     start_ns: Optional[int] = None) -> dict:
    """Write a KITTI raw drive into a rosbag2 (version 8) at ``out`` with the simulator's topics:
    /camera/image_raw (rgb8), /camera/camera_info, /lidar/points (x y z intensity), /tf_static.
    Returns {'frames', 'out', 'storage', 'start_ns'}."""
    from autolabel_ros.io.label_bag import BagWriter

    src = KittiRawSource(drive, calib=calib, rate_hz=rate_hz, start_ns=start_ns)
    refs = src.index()
    out = Path(out)
    with BagWriter(out, storage=storage) as w:
        for topic, msgtype, t, data, conn in src.tf_static_messages():
            w.write_raw(topic, msgtype, t, data, conn)
        for topic, msgtype, t, data, conn in src.sensor_messages(refs):
            w.write_raw(topic, msgtype, t, data, conn)
    return {'frames': len(refs), 'out': str(out), 'storage': storage, 'start_ns': src.start_ns}
