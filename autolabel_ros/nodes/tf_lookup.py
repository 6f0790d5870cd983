"""TF lookups with the fitter's fallbacks, ROS-free: the node passes its tf2 buffer as a function.

The order, for the cloud extrinsic and for clicked points alike: the transform at the message's own
stamp (waiting up to the TF timeout), else the latest one (right for a rigid mount, and for a paused
bag), else a configured fallback (the static_transform parameter, or the frame's own extrinsic).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

# (target frame, source frame, stamp in ns or None for the latest, timeout s) -> 4x4 T_target_source or None
Lookup = Callable[[str, str, Optional[int], float], Optional[np.ndarray]]


def transform_at(lookup: Lookup, target: str, source: str, stamp_ns: Optional[int], timeout: float,
                 fallback: Optional[np.ndarray] = None) -> tuple[Optional[np.ndarray], str]:
    """(T_target_source, where it came from: 'stamp' | 'latest' | 'fallback' | 'none').

    A zero or missing stamp (RViz tools may send one) means "latest" directly."""
    if target == source:
        return np.eye(4), 'stamp'
    if stamp_ns:
        T = lookup(target, source, int(stamp_ns), timeout)
        if T is not None:
            return T, 'stamp'
    T = lookup(target, source, None, 0.0)
    if T is not None:
        return T, 'latest'
    if fallback is not None:
        return np.asarray(fallback, dtype=np.float64), 'fallback'
    return None, 'none'
