"""A frame's annotation messages for the label bag (markers, 3D and 2D detections), serialized.

Built from a saved frame at assembly, or as the frame arrives from its worker (``AnnotationCache``):
with worker processes the main process is idle while they label, so the output phase keeps only what
needs every frame (the bag's order, the report). Both paths build from the same saved values (the
record after its JSON round trip, the arrays as saved), so the bag's bytes do not depend on which
path built a frame (a resumed run builds its earlier frames at assembly).
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Optional

import numpy as np

from autolabel_ros.offline.store import canonical_json
from autolabel_ros.offline.worker import label_from_dict, prompt_from_dict

MARKERS_TOPIC = '/autolabel/markers'
DET3D_TOPIC = '/autolabel/detections_3d'
DET2D_TOPIC = '/autolabel/detections_2d'


def _typestore():
    from autolabel_ros.io import messages as M
    from autolabel_ros.io.ros_types import get_typestore

    ts = get_typestore()
    return ts, M.rosbags_factory(ts)


def annotation_messages(t: int, lidar_frame: str, camera_frame: str, labels, prompts, ts=None,
                        fac=None) -> list[tuple]:
    """``[(t, order, topic, msgtype, cdr bytes)]`` of one frame: a MarkerArray (every label with a
    finite box; rejected ones without their mesh, meshes are most of the bag), the accepted labels as
    a Detection3DArray, the prompts as a Detection2DArray. A failed frame (no labels, no prompts) gets
    the empty ones: its DELETEALL clears the view."""
    from autolabel_ros.io import messages as M

    if ts is None:
        ts, fac = _typestore()
    labs = [lab for lab in labels if np.all(np.isfinite(lab.box7))]
    labs = [lab if lab.accepted else replace(lab, mesh=None) for lab in labs]
    msgs = [(MARKERS_TOPIC, M.labels_to_marker_array(labs, t, lidar_frame, fac)),
            (DET3D_TOPIC, M.labels_to_detection3d_array(labs, t, lidar_frame, fac)),
            (DET2D_TOPIC, M.prompts_to_detection2d_array(prompts, t, camera_frame, fac))]
    return [(t, order, topic, msg.__msgtype__, bytes(ts.serialize_cdr(msg, msg.__msgtype__)))
            for order, (topic, msg) in enumerate(msgs)]


def record_annotations(record: dict, labels, ts=None, fac=None) -> list[tuple]:
    """:func:`annotation_messages` of a saved frame (``labels``: its labels, or the tracked ones)."""
    return annotation_messages(int(record['stamp_ns']), record['lidar_frame'], record['camera_frame'],
                               labels, [prompt_from_dict(p) for p in record['prompts']], ts, fac)


class AnnotationCache:
    """Frames' annotation messages built as they arrive, up to ``max_mb`` of bytes (later frames are
    built at assembly: a long drive does not hold its whole label bag in memory)."""

    def __init__(self, max_mb: float = 256.0):
        self.max_bytes = max_mb * 1e6
        self.bytes = 0
        self.full = False
        self._msgs: dict[int, list] = {}
        self._ts = None

    def add(self, record: dict, arrays: dict, saved_json: Optional[str] = None) -> None:
        """``saved_json``: the record's JSON as the store saved it (else made here)."""
        if self.full:
            return
        if self._ts is None:
            self._ts = _typestore()
        # the record as the store gives it back
        saved = json.loads(saved_json if saved_json is not None else canonical_json(record))
        labels = [label_from_dict(d, arrays, k) for k, d in enumerate(saved['labels'])]
        msgs = record_annotations(saved, labels, *self._ts)
        self.bytes += sum(len(m[4]) for m in msgs)
        self.full = self.bytes > self.max_bytes
        self._msgs[int(saved['index'])] = msgs

    def get(self, index: int):
        return self._msgs.get(index)

    def drop(self, index: int) -> None:
        """Forget a frame's messages (its labels changed after it was saved: built again at assembly)."""
        self._msgs.pop(index, None)
