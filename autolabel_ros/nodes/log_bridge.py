"""The package's Python ``logging`` lines (the pipeline's warnings: dropped prompts, a missing shape
prior, ...) into a node's ROS logger, ROS-free: the node hands over a sink that writes one line at a
ROS severity. Without it those lines reach stderr through Python's last-resort handler: no severity,
no node name, not in /rosout. The per-frame ones (a detector that sends a bad box in every frame) are
throttled: one line per message per ``THROTTLE_S``, the next one saying how many were left out."""
from __future__ import annotations

import logging
import time
from typing import Callable

PACKAGE_LOGGER = 'autolabel_ros'
THROTTLE_S = 5.0

# (sink: severity name of rclpy's logger methods, text)
Sink = Callable[[str, str], None]


def severity(levelno: int) -> str:
    """Python logging level -> the name of the rclpy logger method that writes it."""
    for floor, name in ((logging.CRITICAL, 'fatal'), (logging.ERROR, 'error'), (logging.WARNING, 'warning'),
                        (logging.INFO, 'info')):
        if levelno >= floor:
            return name
    return 'debug'


class LogBridge(logging.Handler):
    """A logging handler that passes each record's message to ``sink(severity, text)``. Records of the
    same logger, level and format string (``record.msg``, before its arguments: the same warning of
    another frame) within ``throttle_s`` of the last one written are counted, not written; fatal ones
    always are. ``clock``: seconds (monotonic)."""

    def __init__(self, sink: Sink, throttle_s: float = THROTTLE_S,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.sink, self.throttle_s, self.clock = sink, throttle_s, clock
        self._last: dict = {}          # key -> (time written, records left out since)

    def emit(self, record: logging.LogRecord):
        try:
            sev = severity(record.levelno)
            key = (record.name, record.levelno, str(record.msg))
            now = self.clock()
            written, held = self._last.get(key, (None, 0))
            if sev != 'fatal' and written is not None and now - written < self.throttle_s:
                self._last[key] = (written, held + 1)
                return
            text = record.getMessage()          # formatted only when written
            if held:
                text += f' ({held} more like it in the last {now - written:.0f} s not shown)'
            self._last[key] = (now, 0)
            self.sink(sev, text)
        except Exception:
            self.handleError(record)


def attach(sink: Sink, level: int, name: str = PACKAGE_LOGGER) -> Callable[[], None]:
    """Route logger ``name`` (and its children) to ``sink`` from ``level`` (a ROS severity is the same
    number: DEBUG 10 ... FATAL 50; 0 = unset = INFO), and not to the root logger's handlers too.
    Returns the function that undoes it."""
    log = logging.getLogger(name)
    handler = LogBridge(sink)
    before = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(int(level) or logging.INFO)
    log.propagate = False

    def detach():
        log.removeHandler(handler)
        log.setLevel(before[0])
        log.propagate = before[1]

    return detach
