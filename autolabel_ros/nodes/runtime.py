"""What the nodes keep while running, ROS-free: the drop-oldest job queue (one slot by default),
latency / drop statistics, the "nothing synchronizes" watchdog and the check of the input topics'
published types."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Iterable, Optional, Sequence

import numpy as np


def now_wall() -> float:
    """Monotonic seconds: click ages, the watchdog and arrival times must not follow sim time."""
    return time.monotonic()


class FrameQueue:
    """A bounded drop-oldest queue: ``put`` beyond ``depth`` waiting items drops the oldest (counted),
    ``get`` blocks and returns the oldest waiting item.

    The subscription callback puts, the worker thread gets. ``depth`` 1 (live default) is a one-slot
    queue: a slow pipeline always works on the newest frame and never builds a backlog. A bag replay
    that wants every frame labelled may wait longer: ``depth`` N absorbs N frames of backlog, at the
    price of up to N frames of latency.
    """

    def __init__(self, depth: int = 1):
        if depth < 1:
            raise ValueError(f'FrameQueue depth must be >= 1, got {depth}')
        self.depth = int(depth)
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._closed = False
        self.dropped = 0
        self.accepted = 0

    def put(self, item) -> bool:
        """Store ``item``; returns True when the queue was full and its oldest item was dropped."""
        with self._cond:
            dropped = len(self._items) >= self.depth
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.accepted += 1
            self._cond.notify()
            return dropped

    def get(self, timeout: Optional[float] = None):
        """The oldest waiting item, or None after ``timeout`` seconds / when closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            return self._items.popleft()

    @property
    def pending(self) -> bool:
        """An item waits for the worker."""
        with self._cond:
            return bool(self._items)

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class LatencyStats:
    """Running processing time, publish time and sensor-to-output latency, for periodic log lines."""

    def __init__(self):
        self.frames = 0
        self.objects = 0
        self._proc: list[float] = []
        self._lat: list[float] = []
        self._pub: list[float] = []
        self.sources: dict = {}       # labels per prompt source (all frames), for fused prompts

    def add(self, processing_s: float, latency_s: float, n_objects: int, publish_s: Optional[float] = None,
            sources: Optional[dict] = None):
        """One frame: total processing, latency from the sensor stamp, objects, and the part of the
        processing spent building + publishing the output messages (None when not measured);
        ``sources``: the frame's labels per prompt source."""
        for k, v in (sources or {}).items():
            self.sources[k] = self.sources.get(k, 0) + int(v)
        self.frames += 1
        self.objects += int(n_objects)
        self._proc.append(float(processing_s))
        self._lat.append(float(latency_s))
        if publish_s is not None:
            self._pub.append(float(publish_s))

    def summary(self, dropped: int) -> str:
        """One log line over the frames since the last summary (then resets the window)."""
        if not self._proc:
            return (f'no frame processed since the last report; total {self.frames} frames, '
                    f'dropped {dropped} stale frame(s)')
        p, lat = np.array(self._proc), np.array(self._lat)
        pub = ''
        if self._pub:
            q = np.array(self._pub)
            pub = f'publish mean {q.mean():.3f} s (max {q.max():.3f}), '
        line = (f'{len(p)} frame(s): processing mean {p.mean():.3f} s (max {p.max():.3f}), {pub}'
                f'latency mean {lat.mean():.3f} s (max {lat.max():.3f}); total {self.frames} frames, '
                f'{self.objects} objects, dropped {dropped} stale frame(s)')
        if self.sources:
            line += '; objects by source: ' + ', '.join(f'{k} {v}' for k, v in sorted(self.sources.items()))
        self._proc.clear()
        self._lat.clear()
        self._pub.clear()
        return line


class SyncMonitor:
    """Remembers the last stamp and arrival per input topic and the last synchronized set.

    ``check(now)`` returns a message once when nothing synchronized for ``warn_after`` seconds
    (again only after a successful sync), listing what each topic delivered, so the usual causes
    (a silent topic, a QoS mismatch, stamps from different clocks) are visible in one line.
    """

    def __init__(self, topics: Sequence[str], warn_after: float, start_time: float):
        self.topics = list(topics)
        self.warn_after = float(warn_after)
        self.last_stamp_ns: dict[str, Optional[int]] = {t: None for t in self.topics}
        self.last_arrival: dict[str, Optional[float]] = {t: None for t in self.topics}
        self.counts: dict[str, int] = {t: 0 for t in self.topics}
        self.last_sync = float(start_time)
        self.syncs = 0
        self._warned = False

    def note(self, topic: str, stamp_ns: int, now: float):
        self.last_stamp_ns[topic] = int(stamp_ns)
        self.last_arrival[topic] = float(now)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def synced(self, now: float):
        self.last_sync = float(now)
        self.syncs += 1
        self._warned = False

    def received(self) -> str:
        """'received <topic> N, ...; S synchronized': what arrived per topic (transport losses show here)."""
        per_topic = ', '.join(f'{t} {self.counts.get(t, 0)}' for t in self.topics)
        return f'received {per_topic}; {self.syncs} synchronized'

    def check(self, now: float) -> Optional[str]:
        if self._warned or now - self.last_sync < self.warn_after:
            return None
        self._warned = True
        parts = []
        for t in self.topics:
            if self.counts.get(t, 0) == 0:
                parts.append(f'{t}: nothing received')
            else:
                parts.append(f'{t}: {self.counts[t]} msgs, last stamp {self.last_stamp_ns[t] / 1e9:.3f} s, '
                             f'{now - self.last_arrival[t]:.1f} s ago')
        stamps = [s for s in self.last_stamp_ns.values() if s is not None]
        spread = ''
        if len(stamps) > 1:
            spread = f'; last stamps span {(max(stamps) - min(stamps)) / 1e9:.3f} s'
        what = 'since start' if self.syncs == 0 else 'for'
        return (f'no synchronized frame {what} {now - self.last_sync:.1f} s: ' + '; '.join(parts) + spread +
                ' (check topic names/remaps, QoS reliability, the slop parameter and use_sim_time)')



def topic_type_problem(topic: str, published: Iterable[str], expected: str) -> Optional[str]:
    """The warning for an input topic whose publishers send another message type than the node
    subscribes (DDS then delivers nothing, and the watchdog could only say "nothing received"), or
    None. Types as ROS names them: 'sensor_msgs/msg/Image'."""
    other = sorted(set(published) - {expected})
    if not other:
        return None
    if expected.endswith('/CompressedImage') and any(t.endswith('/Image') for t in other):
        hint = ': set compressed_image: false, or remap image to the camera\'s .../compressed topic'
    elif expected.endswith('/Image') and any(t.endswith('/CompressedImage') for t in other):
        hint = ': set compressed_image: true'
    else:
        hint = f': remap it to a {expected} topic'
    return f'{topic} is published as {", ".join(other)}, but this node subscribes {expected}{hint}'
