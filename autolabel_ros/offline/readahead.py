"""Frames read, and their detector run, while the parent of forked workers loads the models.

The model load (torch's import, the segmenter, its warm-up: ~7 s) runs on one core until the
segmenter is built (~5 s of imports), and the workers are forked only once it is done. A thread uses
the other core meanwhile: it reads the first frames of the job and runs the detector on them
(offline/schedule.py orders the frames by its boxes). So that detection no longer competes with the
workers for the cores while they label, and the frames read are all ordered dearest first, not
within a short look-ahead.

Only a detector that runs on OpenCV alone is run here (SSD-MobileNet, or none): a torch detector
would start torch's thread pool before the fork (offline/parallel.py). The thread reads until the
models are loaded or it holds ``min_frames`` frames and ``budget_mb`` of them; it is joined before
the fork (no thread may be inside a library when the process forks). It goes on through the
segmenter's warm-up (both cores busy then) rather than stopping there: the frames it reads are
ordered among all the others read, and on this drive (its dearest frames last) stopping there left
them to the look-ahead after the fork, the last worker alone on them for 3.4 s CPU in one of two runs.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterator, Optional

log = logging.getLogger(__name__)

READ_AHEAD_MB = 128.0     # frames held by the read-ahead beyond its minimum (KITTI: 3.2 MB each)


def frame_mb(task) -> float:
    f = task.frame
    return (getattr(f.image, 'nbytes', 0) + getattr(f.points, 'nbytes', 0)) / 1e6


class ReadAhead:
    """Reads tasks from ``tasks`` on a thread (with ``detect``: through ``labeler.detect_ahead``, the
    detector built first) until :meth:`stop`; ``stop`` returns them in reading order."""

    def __init__(self, labeler, tasks: Iterator, detect: bool, fused: bool = False, min_frames: int = 1,
                 budget_mb: float = READ_AHEAD_MB):
        self.labeler = labeler
        self.tasks = tasks
        self.detect = detect
        self.fused = fused
        self.min_frames = min_frames
        self.budget_mb = budget_mb
        self.read: list = []
        self.cpu_s = 0.0                   # the thread's CPU seconds (not the model load's)
        self._error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='read-ahead', daemon=True)

    def start(self) -> 'ReadAhead':
        self._thread.start()
        return self

    def _full(self, held_mb: float) -> bool:
        return len(self.read) >= self.min_frames and held_mb >= self.budget_mb

    def _run(self) -> None:
        c = time.thread_time()
        try:
            if self.detect:
                try:
                    self.labeler.build_detector(self.fused)
                except Exception as e:   # noqa: BLE001 - the workers build it again and report it per frame
                    log.debug('detector not built ahead (%s: %s)', type(e).__name__, e)
                    self.detect = False
            held_mb = 0.0
            while not self._stop.is_set() and not self._full(held_mb):
                task = next(self.tasks, None)
                if task is None:
                    return
                held_mb += frame_mb(task)
                self.read.append(self.labeler.detect_ahead(task) if self.detect else task)
        except BaseException as e:   # noqa: BLE001 - handed to the main thread by stop()
            self._error = e
        finally:
            self.cpu_s = time.thread_time() - c

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the thread to end by itself (input exhausted, memory budget
        reached); whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop_reading(self) -> None:
        """End the thread after the frame being read, without waiting for it."""
        self._stop.set()

    def stop(self, raise_error: bool = True) -> list:
        """Stop after the frame being read; the tasks read (an error of the reading is raised here)."""
        self.stop_reading()
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error
        return self.read
