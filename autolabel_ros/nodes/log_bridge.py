"""The package's Python ``logging`` lines (the pipeline's warnings: dropped prompts, a missing shape
prior, ...) into a node's ROS logger, ROS-free: the node hands over a sink that writes one line at a
ROS severity. Without it those lines reach stderr through Python's last-resort handler: no severity,
no node name, not in /rosout."""
from __future__ import annotations

import logging
from typing import Callable

PACKAGE_LOGGER = 'autolabel_ros'

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
    """A logging handler that passes each record's message to ``sink(severity, text)``."""

    def __init__(self, sink: Sink):
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord):
        try:
            self.sink(severity(record.levelno), record.getMessage())
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
