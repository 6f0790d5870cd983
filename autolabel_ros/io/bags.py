"""Recorded drives as a stream of :class:`SensorFrame` s: rosbag2 (sqlite3 / MCAP) and ROS 1 bags.

Reading happens in two passes so big bags never sit in memory:

1. :meth:`BagSource.index` reads every message of the camera, camera_info, LiDAR, TF and prompt
   topics once, keeps only their header stamps (plus the small camera_info / TF / Detection2DArray
   contents) and pairs each image with the nearest LiDAR sweep on ``header.stamp`` within a tolerance
   (one-to-one; unmatched messages on both sides are counted).
2. :meth:`BagSource.iter_frames` reads the image and cloud topics again in log-time order and yields
   each selected frame as soon as both of its messages have been seen; only the raw bytes of frames
   still waiting for their partner are buffered.

The LiDAR -> camera extrinsic comes from ``/tf_static`` (edges of ``/tf`` fill in what the static tree
lacks; the camera-LiDAR mount is assumed rigid, so the latest value of an edge is used) by walking the
TF tree from the cloud's ``frame_id`` to the image's ``frame_id``, or from a KITTI calib file.
Frames are built by :mod:`autolabel_ros.io.frames`, the builder the fitter node uses too.
"""
from __future__ import annotations

import bisect
import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from autolabel_ros.core.types import Prompt, SensorFrame
from autolabel_ros.io.frames import (CameraModel, FrameError, camera_from_info, camera_from_matrix,
                                     sensor_frame)
from autolabel_ros.io.messages import stamp_to_ns

log = logging.getLogger(__name__)

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
CLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'
TF_TYPE = 'tf2_msgs/msg/TFMessage'
DET2D_TYPE = 'vision_msgs/msg/Detection2DArray'
DEFAULT_TOLERANCE_S = 0.05   # half a 10 Hz LiDAR period


class BagError(ValueError):
    """The input cannot be used as asked (missing/ambiguous topic, empty bag, no extrinsic...)."""


@dataclass
class FrameRef:
    """Where one camera+LiDAR pair lives in the input; cheap to keep for every frame."""

    index: int                 # position among all pairs of the input (stable across --start/--end)
    stamp_ns: int              # image header stamp
    name: str                  # output frame name (KITTI file stem, OpenLABEL frame)
    image_key: tuple = ()      # (topic, log time, stamp) of the image message
    cloud_key: tuple = ()      # same for the cloud
    log_ns: int = 0            # log time of the later of the two messages
    extra: dict = field(default_factory=dict)


@dataclass
class SourceStats:
    """Counts a person needs to trust the pairing: what was read, matched, skipped and why."""

    images: int = 0
    clouds: int = 0
    pairs: int = 0
    unmatched_images: int = 0
    unmatched_clouds: int = 0
    corrupt_messages: list = field(default_factory=list)   # [(topic, log_ns, reason)]
    corrupt_frames: list = field(default_factory=list)     # [(index, reason)]
    frames_without_prompts: int = 0

    def as_dict(self) -> dict:
        return {'images': self.images, 'clouds': self.clouds, 'pairs': self.pairs,
                'unmatched_images': self.unmatched_images, 'unmatched_clouds': self.unmatched_clouds,
                'corrupt_messages': len(self.corrupt_messages),
                'corrupt_frames': len(self.corrupt_frames),
                'frames_without_prompts': self.frames_without_prompts}

    def frame_skipped(self, index: int, reason: str) -> bool:
        """Count a frame that cannot be built once, however often it is read (the job reads the frames
        again for the sensor copy, --tracks and --occupancy); True the first time, when to log it."""
        if any(i == index for i, _ in self.corrupt_frames):
            return False
        self.corrupt_frames.append((index, reason))
        return True


def pair_stamps(image_stamps: list[int], cloud_stamps: list[int], tolerance_ns: int):
    """One-to-one pairing of image and cloud stamps: each image takes the nearest cloud within the
    tolerance, closest pairs first (so a cloud between two images goes to the nearer one).

    Returns (pairs [(image_i, cloud_j)] sorted by image stamp, unmatched image count, unmatched cloud count).
    """
    clouds = np.asarray(cloud_stamps, dtype=np.int64)
    order = np.argsort(clouds, kind='stable')
    sorted_c = clouds[order]
    candidates = []
    for i, s in enumerate(image_stamps):
        k = int(np.searchsorted(sorted_c, s))
        for j in (k - 1, k):   # the neighbours on both sides are the only candidates
            if 0 <= j < len(sorted_c):
                d = abs(int(sorted_c[j]) - int(s))
                if d <= tolerance_ns:
                    candidates.append((d, i, int(order[j])))
    candidates.sort()
    used_i, used_j, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            pairs.append((i, j))
    pairs.sort(key=lambda p: (image_stamps[p[0]], p[0]))
    return pairs, len(image_stamps) - len(pairs), len(cloud_stamps) - len(pairs)


class TfTree:
    """The static transforms of a bag as an undirected graph; :meth:`lookup` chains edges.

    An edge parent->child stores T_parent_child (maps child-frame points into the parent frame), as in
    a geometry_msgs/TransformStamped. Walking child->parent multiplies by it, parent->child by its
    inverse; a breadth-first search finds the shortest chain (TF trees are small).
    """

    def __init__(self):
        self.edges: dict[tuple[str, str], np.ndarray] = {}
        self._static: set = set()
        # every stamped value of the dynamic edges (the ego pose for tracking: autolabel_ros.track.ego)
        self.history: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}

    def add(self, parent: str, child: str, T: np.ndarray, static: bool = True,
            stamp_ns: Optional[int] = None):
        """Static edges win over dynamic ones; among either, the latest value is kept. Dynamic edges
        given with their stamp are also kept in ``history``."""
        key = (parent.lstrip('/'), child.lstrip('/'))
        if static or key not in self._static:
            self.edges[key] = np.asarray(T, dtype=np.float64)
        if static:
            self._static.add(key)
        elif stamp_ns is not None:
            self.history.setdefault(key, []).append((int(stamp_ns), np.asarray(T, dtype=np.float64)))

    def static_edges(self) -> dict[tuple[str, str], np.ndarray]:
        return {k: T for k, T in self.edges.items() if k in self._static}

    def frames(self) -> list[str]:
        return sorted({f for e in self.edges for f in e})

    def lookup(self, target: str, source: str) -> np.ndarray:
        """T_target_source: maps points in ``source`` into ``target``. Raises BagError naming the frames."""
        target, source = target.lstrip('/'), source.lstrip('/')
        if target == source:
            return np.eye(4)
        neighbours: dict[str, list] = {}
        for (p, c), T in self.edges.items():
            neighbours.setdefault(c, []).append((p, T))                    # child -> parent: T
            neighbours.setdefault(p, []).append((c, _inv(T)))              # parent -> child: T^-1
        # BFS from source; acc maps source points into the current frame
        seen = {source: np.eye(4)}
        queue = deque([source])
        while queue:
            f = queue.popleft()
            for g, T in neighbours.get(f, []):
                if g not in seen:
                    seen[g] = T @ seen[f]
                    if g == target:
                        return seen[g]
                    queue.append(g)
        raise BagError(f'no TF chain from {source!r} to {target!r}; frames in the TF tree: '
                       f'{self.frames() or "none (no /tf_static or /tf messages)"}')


def _inv(T):
    from autolabel_ros.core.geometry import invert_transform
    return invert_transform(T)


def open_reader(path):
    """An opened rosbags AnyReader on a rosbag2 folder or a ROS 1 .bag, with the project typestore
    (vision_msgs included) for bags that carry no message definitions."""
    from rosbags.highlevel import AnyReader

    from autolabel_ros.io.ros_types import get_typestore

    p = Path(path)
    if not p.exists():
        raise BagError(f'input not found: {p}')
    if p.is_dir():
        p = _Rosbag2Dir(p)
    try:
        reader = AnyReader([p], default_typestore=get_typestore())
        reader.open()
    except Exception as e:   # rosbags raises several unrelated types for unreadable inputs
        why = ' '.join(str(e).split())      # one line: rosbags' YAML errors span several
        raise BagError(f'{p}: cannot open as a rosbag2 folder or ROS 1 .bag: {why}') from None
    return reader


class _Rosbag2Dir(type(Path())):
    """AnyReader takes any path ending in '.bag' for a ROS 1 file, so a rosbag2 *folder* named like our
    ``labels.bag/`` would not open; a folder is always rosbag2, so hide its suffix."""

    @property
    def suffix(self):
        return ''


def _topics_by_type(reader) -> dict[str, str]:
    return {c.topic: c.msgtype for c in reader.connections}


def _describe(topics: dict[str, str]) -> str:
    return ', '.join(f'{t} [{m}]' for t, m in sorted(topics.items())) or 'no topics'


def choose_topic(topics: dict[str, str], types: Iterable[str], given: Optional[str], what: str,
                 flag: str, required: bool = True) -> Optional[str]:
    """The topic for one role: the given one (checked), else the only topic of a matching type."""
    types = tuple(types)
    if given:
        if given not in topics:
            raise BagError(f'{what} topic {given!r} not in the bag; topics: {_describe(topics)}')
        if topics[given] not in types:
            raise BagError(f'{what} topic {given!r} has type {topics[given]}, expected one of {list(types)}')
        return given
    cands = sorted(t for t, m in topics.items() if m in types)
    if len(cands) == 1:
        return cands[0]
    if len(cands) > 1:
        raise BagError(f'several {what} topics: {cands}; choose one with {flag}')
    if required:
        raise BagError(f'no {what} topic (type {" or ".join(types)}) in the bag; topics: {_describe(topics)}')
    return None


INDEX_BAR_MIN_MESSAGES = 2000     # below this the index is read in a few seconds: no bar


class BagSource:
    """Frames of a recorded bag. Use as a context manager (keeps the reader open)."""

    kind = 'bag'

    def __init__(self, path, image_topic=None, info_topic=None, cloud_topic=None, prompts_topic=None,
                 calib=None, tolerance_s: float = DEFAULT_TOLERANCE_S, rectified: bool = False,
                 undistort: bool = True, progress: bool = False):
        self.path = Path(path)
        self.progress = progress      # a progress bar while the index reads a big bag
        self.rectified, self.undistort = bool(rectified), bool(undistort)   # see io.frames.camera_from_info
        self.reader = open_reader(self.path)
        self.is_ros1 = not self.reader.is2
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        self.calib = calib            # KittiCalib or None
        self.stats = SourceStats()
        topics = _topics_by_type(self.reader)
        if self.reader.message_count == 0:
            raise BagError(f'{self.path}: the bag is empty (topics: {_describe(topics)})')
        self.image_topic = choose_topic(topics, IMAGE_TYPES, image_topic, 'camera image', '--image-topic')
        self.cloud_topic = choose_topic(topics, (CLOUD_TYPE,), cloud_topic, 'LiDAR PointCloud2',
                                        '--cloud-topic')
        self.info_topic = choose_topic(topics, (INFO_TYPE,), info_topic, 'camera_info', '--info-topic',
                                       required=calib is None)
        self.prompts_topic = None
        if prompts_topic:
            self.prompts_topic = choose_topic(topics, (DET2D_TYPE,), prompts_topic, 'Detection2DArray prompt',
                                              '--prompts topic:NAME')
        self.tf_topics = sorted(t for t, m in topics.items() if m == TF_TYPE)
        self.topics = topics
        self._conns = {c.topic: c for c in self.reader.connections}
        self._refs: Optional[list[FrameRef]] = None

    # -- context management -------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    @property
    def start_ns(self) -> int:
        return int(self.reader.start_time)

    def describe(self) -> dict:
        return {'input': str(self.path), 'kind': 'rosbag1' if self.is_ros1 else 'rosbag2',
                'image_topic': self.image_topic, 'info_topic': self.info_topic,
                'cloud_topic': self.cloud_topic, 'prompts_topic': self.prompts_topic,
                'tf_topics': self.tf_topics, 'tolerance_s': self.tolerance_ns / 1e9,
                'rectified': self.rectified, 'undistort': self.undistort}

    # -- pass 1 -------------------------------------------------------------------------------
    def _deser(self, raw, conn):
        return self.reader.deserialize(raw, conn.msgtype)

    def index(self) -> list[FrameRef]:
        """All camera/LiDAR pairs of the bag (cached). Also loads camera_info, TF and prompts."""
        if self._refs is not None:
            return self._refs
        from autolabel_ros.io import messages as M

        wanted = [self.image_topic, self.cloud_topic] + self.tf_topics
        wanted += [t for t in (self.info_topic, self.prompts_topic) if t]
        conns = [self._conns[t] for t in wanted]
        from tqdm import tqdm

        # reading a long drive's index takes minutes (every image and sweep is read): not in silence
        n_msgs = sum(int(getattr(c, 'msgcount', 0) or 0) for c in conns)
        bar = tqdm(total=n_msgs, unit='msg', desc='reading the bag', dynamic_ncols=True, leave=False,
                   disable=not self.progress or n_msgs < INDEX_BAR_MIN_MESSAGES)
        images, clouds = [], []          # (stamp, key, frame_id)
        self._infos: list[tuple[int, CameraModel]] = []   # (stamp, camera model)
        self._prompts: list[tuple[int, list]] = []    # (stamp, prompts)
        self.tf = TfTree()
        for conn, t, raw in self.reader.messages(connections=conns):
            bar.update(1)
            try:
                msg = self._deser(raw, conn)
                if conn.topic in (self.image_topic, self.cloud_topic):
                    stamp = stamp_to_ns(msg.header.stamp)
                    item = (stamp, (conn.topic, t, stamp), msg.header.frame_id)
                    (images if conn.topic == self.image_topic else clouds).append(item)
                elif conn.topic == self.info_topic:
                    try:
                        camera = camera_from_info(msg, self.rectified, self.undistort,
                                                  where=f'camera_info on {conn.topic}')
                    except FrameError as e:   # the camera cannot be used at all: one clear error
                        raise BagError(str(e)) from None
                    self._infos.append((stamp_to_ns(msg.header.stamp), camera))
                elif conn.topic == self.prompts_topic:
                    self._prompts.append((stamp_to_ns(msg.header.stamp), M.detection2d_array_to_prompts(msg)))
                else:
                    for tr in msg.transforms:
                        self.tf.add(tr.header.frame_id, tr.child_frame_id,
                                    M.transform_to_matrix(tr.transform),
                                    static=conn.topic.endswith('tf_static'),
                                    stamp_ns=stamp_to_ns(tr.header.stamp))
            except BagError:
                raise
            except Exception as e:   # a corrupt message is skipped, never fatal
                log.warning('skipping corrupt message on %s at %d: %s', conn.topic, t, e)
                self.stats.corrupt_messages.append((conn.topic, t, f'{type(e).__name__}: {e}'))
        bar.close()
        self._infos.sort(key=lambda x: x[0])
        self._prompts.sort(key=lambda x: x[0])
        self.stats.images, self.stats.clouds = len(images), len(clouds)
        if not images or not clouds:
            raise BagError(f'{self.path}: {len(images)} readable messages on {self.image_topic} and '
                           f'{len(clouds)} on {self.cloud_topic}: nothing to pair')
        pairs, ui, uc = pair_stamps([x[0] for x in images], [x[0] for x in clouds], self.tolerance_ns)
        self.stats.pairs, self.stats.unmatched_images, self.stats.unmatched_clouds = len(pairs), ui, uc
        if ui or uc:
            log.warning('pairing (tolerance %.3f s): %d images and %d clouds without a partner',
                        self.tolerance_ns / 1e9, ui, uc)
        refs = []
        for k, (i, j) in enumerate(pairs):
            im, cl = images[i], clouds[j]
            refs.append(FrameRef(index=k, stamp_ns=im[0], name=f'{k:06d}', image_key=im[1], cloud_key=cl[1],
                                 log_ns=max(im[1][1], cl[1][1]),
                                 extra={'camera_frame': im[2], 'lidar_frame': cl[2]}))
        if not refs:
            raise BagError(f'no image on {self.image_topic} has a cloud on {self.cloud_topic} within '
                           f'{self.tolerance_ns / 1e9:.3f} s (image stamps {images[0][0]}..{images[-1][0]}, '
                           f'cloud stamps {clouds[0][0]}..{clouds[-1][0]})')
        self._refs = refs
        return refs

    def select(self, start_s: Optional[float] = None, end_s: Optional[float] = None,
               max_frames: Optional[int] = None) -> list[FrameRef]:
        """Frames whose image stamp lies in [start, end] seconds after the first frame's stamp."""
        return select_window(self.index(), start_s, end_s, max_frames)

    # -- per-frame context ----------------------------------------------------------------------
    def camera(self, stamp_ns: int) -> CameraModel:
        """The camera model of the latest camera_info at or before the stamp (the first one when all
        come later: drivers often publish camera_info just after the first image)."""
        if self.info_topic is None or not self._infos:
            if self.calib is not None:
                return camera_from_matrix(self.calib.K)
            raise BagError(f'no readable camera_info on {self.info_topic}; give --calib')
        stamps = [s for s, _ in self._infos]
        k = max(0, bisect.bisect_right(stamps, stamp_ns) - 1)
        return self._infos[k][1]

    def extrinsic(self, camera_frame: str, lidar_frame: str) -> np.ndarray:
        if self.calib is not None:
            return np.asarray(self.calib.T_cam_lidar)
        if not self.tf.edges:
            raise BagError(f'no /tf_static or /tf in {self.path} for the LiDAR -> camera extrinsic; '
                           f'give --calib FILE (KITTI calib format)')
        return self.tf.lookup(camera_frame, lidar_frame)

    def prompts_at(self, stamp_ns: int) -> Optional[list[Prompt]]:
        """Prompts of the Detection2DArray with the nearest stamp within the tolerance, else None."""
        if not self._prompts:
            return None
        stamps = [s for s, _ in self._prompts]
        k = bisect.bisect_left(stamps, stamp_ns)
        best = min((j for j in (k - 1, k) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - stamp_ns))
        if abs(stamps[best] - stamp_ns) > self.tolerance_ns:
            return None
        return self._prompts[best][1].copy()     # a PromptList: keeps the boxes it dropped

    # -- one frame at a time (the curriculum's passes) ------------------------------------------
    def load(self, ref: FrameRef) -> SensorFrame:
        """The frame of ``ref`` (from :meth:`index`), read on its own; a frame that cannot be decoded
        is a :class:`BagError` naming it."""
        for _, frame, _ in self.iter_frames([ref]):
            return frame
        why = next((reason for i, reason in self.stats.corrupt_frames if i == ref.index), 'not found')
        raise BagError(f'{self.path}: frame {ref.name} (stamp {ref.stamp_ns}): {why}')

    def gt_prompts(self, ref: FrameRef) -> list[Prompt]:
        """The boxes of the prompt topic (a simulator bag's ground-truth 2D boxes) matched to the frame
        by stamp; none within the tolerance: an empty list."""
        if self.prompts_topic is None:
            raise BagError(f'{self.path}: ground-truth prompts need a Detection2DArray topic in the bag')
        return self.prompts_at(ref.stamp_ns) or []

    # -- pass 2 -------------------------------------------------------------------------------
    def _build_frame(self, ref: FrameRef, img_msg, cloud_msg) -> SensorFrame:
        cam, lid = ref.extra['camera_frame'], ref.extra['lidar_frame']
        return sensor_frame(img_msg, cloud_msg, self.camera(ref.stamp_ns), self.extrinsic(cam, lid),
                            stamp_ns=ref.stamp_ns, frame_id=ref.name, lidar_frame=lid or 'lidar',
                            camera_frame=cam or 'camera', info_where=f'camera_info on {self.info_topic}')

    def iter_frames(self, refs: Iterable[FrameRef], prompts_from_topic: bool = False
                    ) -> Iterator[tuple[FrameRef, SensorFrame, Optional[list[Prompt]]]]:
        """Yield (ref, SensorFrame, prompts or None) lazily in the order of ``refs``' log times.

        A frame whose messages cannot be decoded is logged, counted in ``stats.corrupt_frames`` and
        skipped. With ``prompts_from_topic`` the prompts are the Detection2DArray matched by stamp
        (an empty list when none is within the tolerance, counted in ``stats.frames_without_prompts``).
        """
        refs = sorted(refs, key=lambda r: r.log_ns)
        if not refs:
            return
        need: dict[tuple, list[FrameRef]] = {}
        for r in refs:
            need.setdefault(r.image_key, []).append(r)
            need.setdefault(r.cloud_key, []).append(r)
        got: dict[tuple, tuple] = {}
        lo = min(min(r.image_key[1], r.cloud_key[1]) for r in refs)
        hi = max(r.log_ns for r in refs) + 1
        conns = [self._conns[self.image_topic], self._conns[self.cloud_topic]]
        pending = {r.index for r in refs}
        for conn, t, raw in self.reader.messages(connections=conns, start=lo, stop=hi):
            try:
                msg = self._deser(raw, conn)
                key = (conn.topic, t, stamp_to_ns(msg.header.stamp))
            except Exception:
                continue   # already counted as corrupt in pass 1
            if key not in need:
                continue
            got[key] = (msg, conn.msgtype)
            for r in need[key]:
                if r.index in pending and r.image_key in got and r.cloud_key in got:
                    pending.discard(r.index)
                    yield from self._emit(r, got, prompts_from_topic)
                    for k in (r.image_key, r.cloud_key):
                        if all(x.index not in pending for x in need[k]):
                            got.pop(k, None)
        for idx in sorted(pending):
            self.stats.frame_skipped(idx, 'messages not found on the second read')

    def _emit(self, r: FrameRef, got, prompts_from_topic):
        try:
            frame = self._build_frame(r, got[r.image_key][0], got[r.cloud_key][0])
        except BagError:
            raise
        except Exception as e:   # bad encoding, truncated data...: skip this frame only
            if self.stats.frame_skipped(r.index, f'{type(e).__name__}: {e}'):
                log.warning('frame %s (stamp %d) skipped: %s', r.name, r.stamp_ns, e)
            return
        prompts = None
        if prompts_from_topic:
            prompts = self.prompts_at(r.stamp_ns)
            if prompts is None:
                self.stats.frames_without_prompts += 1
                prompts = []
        yield r, frame, prompts

    # -- copying into the label bag --------------------------------------------------------------
    def sensor_connections(self) -> list[tuple[str, str]]:
        return [(t, self.topics[t]) for t in (self.image_topic, self.info_topic, self.cloud_topic) if t]

    def sensor_messages(self, refs: list[FrameRef]) -> Iterator[tuple[str, str, int, bytes, object]]:
        """(topic, msgtype, log_ns, CDR bytes, connection) of the camera, camera_info and cloud messages
        logged during the selected frames, plus the latest camera_info before them, copied as recorded.
        ROS 1 bags: nothing (their messages are not CDR; the label bag then holds the annotations only)."""
        if not refs or self.is_ros1:
            if self.is_ros1:
                log.warning('ROS 1 input: sensor topics are not copied into the label bag')
            return
        lo = min(min(r.image_key[1], r.cloud_key[1]) for r in refs)
        hi = max(r.log_ns for r in refs) + 1
        topics = [t for t, _ in self.sensor_connections()]
        if self.info_topic:   # the camera_info in force at the first frame
            last = None
            for conn, t, raw in self.reader.messages(connections=[self._conns[self.info_topic]], stop=lo):
                last = (conn, t, raw)
            if last is not None:
                yield self._cdr(*last)
        for conn, t, raw in self.reader.messages(connections=[self._conns[t] for t in topics], start=lo,
                                                 stop=hi):
            yield self._cdr(conn, t, raw)

    def _cdr(self, conn, t, raw):
        return conn.topic, conn.msgtype, t, bytes(raw), conn

    def tf_static_messages(self) -> Iterator[tuple[str, str, int, bytes, object]]:
        """The bag's /tf_static messages as recorded (so the label bag carries the full tree)."""
        static = [self._conns[t] for t in self.tf_topics if t.endswith('tf_static')]
        if static and not self.is_ros1:
            for conn, t, raw in self.reader.messages(connections=static):
                yield self._cdr(conn, t, raw)


def select_window(refs: list[FrameRef], start_s=None, end_s=None, max_frames=None) -> list[FrameRef]:
    """Frames with stamps in [start_s, end_s] seconds after the first frame (either bound optional)."""
    if not refs:
        return []
    t0 = refs[0].stamp_ns
    out = []
    for r in refs:
        rel = (r.stamp_ns - t0) / 1e9
        if start_s is not None and rel < start_s - 1e-9:
            continue
        if end_s is not None and rel > end_s + 1e-9:
            continue
        out.append(r)
    if max_frames is not None:
        out = out[:max_frames]
    return out
