"""The clock of a training loop: a progress line every N steps and a stop at the time limit (the CSS
network's and the DeepSDF decoder's training share it)."""
from __future__ import annotations

import time
from typing import Callable


class TrainClock:
    """A progress line every ``every`` steps and at the last one (``due`` / ``report``: the line with the
    elapsed seconds), and the stop once ``minutes`` have passed (``expired``: logs ``<stop_prefix>time
    limit after N steps``; the caller breaks out of its loop). ``log`` None: silent."""

    def __init__(self, steps: int, minutes: float, every: int, log: Callable | None = print,
                 stop_prefix: str = ''):
        self.steps, self.limit_s, self.every = steps, minutes * 60.0, max(1, every)
        self.log, self.stop_prefix = log, stop_prefix
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def due(self, step: int) -> bool:
        return bool(self.log) and (step % self.every == 0 or step == self.steps - 1)

    def report(self, line: str) -> None:
        if self.log:
            self.log(f'{line}  {self.elapsed():.0f} s')

    def expired(self, step: int) -> bool:
        if self.elapsed() <= self.limit_s:
            return False
        if self.log:
            self.log(f'{self.stop_prefix}time limit after {step + 1} steps')
        return True
