"""KITTI tracking labels (``label_02/<sequence>.txt``): one line per object and frame,

    frame track_id type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]

the object columns as in the object benchmark's label_2 (camera-rect frame, bottom centre), prefixed
by the frame number in the sequence and the track id (the same id in every frame of a track).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from autolabel_ros.core.types import Label3D
from autolabel_ros.io.kitti import KittiFormatError, KittiObject, _label_line, label3d_to_kitti, read_text


def tracking_lines(frame: int, labels: Sequence[Label3D], calib, width: int, height: int) -> list[str]:
    """Lines of one frame; ``label.id`` is the track id. Rejected labels are left to the caller."""
    out = []
    for lab in labels:
        obj = label3d_to_kitti(lab, calib, width, height)
        out.append(f'{int(frame)} {int(lab.id)} {_label_line(obj)}')
    return out


def write_tracking_file(path, lines: Sequence[str]) -> None:
    from autolabel_ros.io.outdir import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, ''.join(line + '\n' for line in lines))


def read_tracking_file(path) -> list[tuple[int, int, KittiObject]]:
    """(frame, track id, object) per line (16 or 17 columns with a score)."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f'{path}: tracking label file not found')
    out = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        c = line.split()
        if not c:
            continue
        if len(c) not in (17, 18):
            raise KittiFormatError(f'{path}:{lineno}: expected 17 or 18 columns, got {len(c)}')
        try:
            nums = [float(x) for x in c[3:]]
            obj = KittiObject(type=c[2], truncated=nums[0], occluded=int(nums[1]), alpha=nums[2],
                              bbox=nums[3:7], hwl=nums[7:10], location=nums[10:13], ry=nums[13],
                              score=nums[14] if len(nums) > 14 else None)
            out.append((int(c[0]), int(c[1]), obj))
        except ValueError as e:
            raise KittiFormatError(f'{path}:{lineno}: {e}') from None
    return out
