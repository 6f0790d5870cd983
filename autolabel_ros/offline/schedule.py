"""The order in which local workers get the frames: the dearest first within a look-ahead window
(longest processing time first), so that a run does not end with one worker labelling a big frame
while the others wait idle. A frame's cost is estimated by its number of prompts (the fit's time
grows with it, the segmenter's embedding is the same for every frame): the prompts it was given,
or the detector's, run by the parent of forked workers as it reads the frame (offline/parallel.py;
the worker then labels those prompts, so the record is the same). Frames whose cost is not known
keep their order and go before the others. The look-ahead bounds the frames held in memory; the
order changes no output (each frame is saved under its index)."""
from __future__ import annotations

import heapq
import math
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar('T')


def _rank(c: float | None) -> float:
    """Sort key of a cost: the dearest first, an unknown cost before every known one."""
    return -(math.inf if c is None else c)


def dearest_first(tasks: Iterable[T], cost: Callable[[T], float], lookahead: int,
                  in_order: int = 0) -> Iterator[T]:
    """``tasks`` reordered: each one handed out is the dearest of up to ``lookahead`` read ahead
    (ties: the first read). The first ``in_order`` are handed out as soon as they are read (the
    workers' first frames: no worker waits for the look-ahead to fill); then two are read per task
    handed out until ``lookahead`` are held, one after."""
    source = iter(tasks)
    held: list = []      # (-cost, reading order, task): a heap, the dearest first
    n_read = n_out = 0

    def read() -> bool:
        nonlocal n_read
        for task in source:
            heapq.heappush(held, (_rank(cost(task)), n_read, task))
            n_read += 1
            return True
        return False

    more = True
    while True:
        reads = 1 if n_out < in_order or len(held) >= lookahead else 2
        for _ in range(reads):
            more = more and read()
        if not held:
            return
        yield heapq.heappop(held)[2]
        n_out += 1


def dearest_order(tasks: list, cost: Callable[[T], float]) -> list:
    """``tasks`` all sorted dearest first (unknown costs first, ties in their order): the frames read
    ahead while the models load (offline/readahead.py), whose costs are all known at once."""
    return sorted(tasks, key=lambda t: _rank(cost(t)))        # stable: ties keep their order


def prompt_count(task) -> float | None:
    """A frame's cost estimate: its prompts, given or detected ahead (``FrameTask``); None: unknown."""
    prompts = task.prompts if task.prompts is not None else task.detections
    return None if prompts is None else len(prompts)
