"""Writing rosbag2 folders (version 8, so ROS 2 Humble reads them; MCAP by default).

:class:`BagWriter` wraps ``rosbags.rosbag2.Writer``: it adds a connection per topic on first use (copying
the recorded definition of a copied message, else generating it from the project typestore), gives
``/tf_static`` the transient-local QoS that ``ros2 bag play`` needs to latch it, and writes into a
temporary folder renamed into place on success (an interrupted run never leaves a half bag at the
final path). Output is deterministic: same messages in, same bytes out. The one bag writer of the
package: the offline tool's label bag, the KITTI raw import and the simulator's drives.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

STORAGES = ('mcap', 'sqlite3')


def _static_qos():
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                    QosTime)

    zero = QosTime(0, 0)
    return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, zero, zero,
                QosLiveliness.AUTOMATIC, zero, False)]


class BagWriter:
    """``replace=False`` refuses an existing ``path`` (FileExistsError) instead of replacing it."""

    def __init__(self, path, storage: str = 'mcap', typestore=None, replace: bool = True):
        from autolabel_ros.io.ros_types import get_typestore

        if storage not in STORAGES:
            raise ValueError(f'bag storage must be one of {STORAGES}, got {storage!r}')
        self.path = Path(path)
        # the storage file is named after the folder: write <parent>/.partial-<name>/<name>, then move
        self.tmp_root = self.path.with_name(f'.partial-{self.path.name}')
        self.tmp = self.tmp_root / self.path.name
        self.storage = storage
        self.replace = replace
        self.ts = typestore or get_typestore()
        self._writer = None
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if not self.replace and self.path.exists():
            raise FileExistsError(f'{self.path} exists; choose another bag path')
        if self.tmp_root.exists():
            shutil.rmtree(self.tmp_root)
        self.tmp_root.mkdir(parents=True)
        plugin = StoragePlugin.MCAP if self.storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.tmp, version=8, storage_plugin=plugin)
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            try:
                self._writer.close()
            finally:
                shutil.rmtree(self.tmp_root, ignore_errors=True)
            return False
        self._writer.close()
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)
        self.tmp_root.rmdir()
        return False

    def _connection(self, topic: str, msgtype: str, recorded=None):
        conn = self._conns.get(topic)
        if conn is None:
            qos = _static_qos() if topic.endswith('tf_static') else []
            msgdef = getattr(recorded, 'msgdef', None)
            if msgdef is not None and msgdef.data and str(getattr(recorded, 'digest',
                                                                  '')).startswith('RIHS01_'):
                # a copied ROS 2 message keeps the definition it was recorded with
                conn = self._writer.add_connection(topic, msgtype, msgdef=recorded.msgdef.data,
                                                   rihs01=recorded.digest, offered_qos_profiles=qos)
            else:
                conn = self._writer.add_connection(topic, msgtype, typestore=self.ts,
                                                   offered_qos_profiles=qos)
            self._conns[topic] = conn
        return conn

    def connect(self, topic: str, msgtype: str):
        """Add the topic's connection now (connections are numbered in the order they are added)."""
        self._connection(topic, msgtype)

    def write_raw(self, topic: str, msgtype: str, t_ns: int, data: bytes, recorded=None):
        """Write CDR bytes; ``recorded`` is the input's connection when copying a recorded message."""
        self._writer.write(self._connection(topic, msgtype, recorded), int(t_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write(self, topic: str, msg, t_ns: int, msgtype: Optional[str] = None):
        """Serialize a rosbags message of the project typestore and write it."""
        msgtype = msgtype or msg.__msgtype__
        self.write_raw(topic, msgtype, t_ns, bytes(self.ts.serialize_cdr(msg, msgtype)))
