"""Where the fit's time goes: seconds per named stage, wall clock and this thread's CPU time.

The fit runs on one torch thread (``fit.threads``), so the thread's CPU time is its compute; on a
loaded machine it stays comparable where the wall clock does not (benchmarks/profile_fit.py).
A clock costs two timer reads per stage, so the fitter always keeps one (``FitTimings.stages``).
"""
from __future__ import annotations

import time
from contextlib import contextmanager


class StageClock:
    # CPU seconds of this thread; offline.phases.PhaseClock counts the whole process instead
    cpu_time = staticmethod(time.thread_time)

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        w, c = time.perf_counter(), self.cpu_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - w, self.cpu_time() - c)

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu


@contextmanager
def no_clock(name: str):
    yield
