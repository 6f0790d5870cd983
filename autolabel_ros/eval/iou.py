"""IoU of boxes rotated about the vertical axis: bird's-eye-view polygon intersection (shapely)
times the overlap of the vertical extents.

Pairs are evaluated in one vectorised shapely call; pairs whose footprint circumcircles do not
touch are skipped (IoU 0) so that large, sparse sets stay cheap.

Two box layouts are supported:
- KITTI camera-rect boxes, ``(x, y, z, h, w, l, ry)`` with (x, y, z) the bottom centre; y points
  down, the footprint lies in the x-z plane, heading (cos ry, -sin ry) in (x, z).
- LiDAR boxes (``Label3D.box7``), ``(x, y, z, l, w, h, yaw)`` with the geometric centre, z up.
"""
from __future__ import annotations

import numpy as np
import shapely


def _footprints(cx, cy, length, width, heading) -> np.ndarray:
    """N x 4 x 2 rectangle corners from centres, sizes and heading angles (in the plane)."""
    d = np.stack([np.cos(heading), np.sin(heading)], -1) * (length / 2)[:, None]
    n = np.stack([-np.sin(heading), np.cos(heading)], -1) * (width / 2)[:, None]
    c = np.stack([cx, cy], -1)
    return np.stack([c + d + n, c - d + n, c - d - n, c + d - n], 1)


class Boxes:
    """Boxes reduced to what IoU needs: footprints, vertical extents and volumes."""

    def __init__(self, corners: np.ndarray, zlo: np.ndarray, zhi: np.ndarray):
        self.corners = np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)
        self.zlo = np.asarray(zlo, dtype=np.float64).reshape(-1)
        self.zhi = np.asarray(zhi, dtype=np.float64).reshape(-1)
        self.center = self.corners.mean(1)
        self.radius = np.linalg.norm(self.corners[:, 0] - self.center, axis=1)
        self.area = np.abs(shapely.area(shapely.polygons(self.corners))) if len(self.corners) else np.zeros(0)
        self.volume = self.area * np.maximum(self.zhi - self.zlo, 0.0)

    def __len__(self) -> int:
        return len(self.corners)

    @classmethod
    def from_kitti(cls, boxes) -> 'Boxes':
        """``(x, y, z, h, w, l, ry)`` camera-rect boxes, (x, y, z) = bottom centre, y down."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
        # In the (x, z) plane the KITTI heading is (cos ry, -sin ry), i.e. the angle -ry.
        corners = _footprints(b[:, 0], b[:, 2], b[:, 5], b[:, 4], -b[:, 6])
        # Vertical extent along "up" = -y: from -y_bottom to -y_bottom + h.
        return cls(corners, -b[:, 1], -b[:, 1] + b[:, 3])

    @classmethod
    def from_lidar(cls, boxes) -> 'Boxes':
        """``(x, y, z, l, w, h, yaw)`` LiDAR-frame boxes with the geometric centre."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
        corners = _footprints(b[:, 0], b[:, 1], b[:, 3], b[:, 4], b[:, 6])
        return cls(corners, b[:, 2] - b[:, 5] / 2, b[:, 2] + b[:, 5] / 2)


def iou_pairs(a: Boxes, b: Boxes, ia, ib) -> tuple[np.ndarray, np.ndarray]:
    """(BEV IoU, 3D IoU) for the index pairs (a[ia[k]], b[ib[k]])."""
    ia = np.asarray(ia, dtype=np.int64)
    ib = np.asarray(ib, dtype=np.int64)
    bev = np.zeros(len(ia))
    d3 = np.zeros(len(ia))
    if len(ia) == 0:
        return bev, d3
    near = np.linalg.norm(a.center[ia] - b.center[ib], axis=1) <= a.radius[ia] + b.radius[ib] + 1e-9
    ja, jb = ia[near], ib[near]
    if len(ja):
        inter = shapely.area(shapely.intersection(shapely.polygons(a.corners[ja]),
                                                  shapely.polygons(b.corners[jb])))
        union = a.area[ja] + b.area[jb] - inter
        bev[near] = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        dz = np.clip(np.minimum(a.zhi[ja], b.zhi[jb]) - np.maximum(a.zlo[ja], b.zlo[jb]), 0, None)
        inter3 = inter * dz
        union3 = a.volume[ja] + b.volume[jb] - inter3
        d3[near] = np.where(union3 > 0, inter3 / np.where(union3 > 0, union3, 1), 0.0)
    return bev, d3


def iou_matrix(a: Boxes, b: Boxes) -> tuple[np.ndarray, np.ndarray]:
    """(BEV IoU, 3D IoU), each len(a) x len(b)."""
    ia, ib = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing='ij')
    bev, d3 = iou_pairs(a, b, ia.ravel(), ib.ravel())
    return bev.reshape(len(a), len(b)), d3.reshape(len(a), len(b))


def iou3d_lidar(box_a, box_b) -> float:
    """3D IoU of two LiDAR boxes ``(x, y, z, l, w, h, yaw)`` (e.g. ``Label3D.box7``)."""
    return float(iou_matrix(Boxes.from_lidar(box_a), Boxes.from_lidar(box_b))[1][0, 0])


def bev_iou_lidar(box_a, box_b) -> float:
    """Bird's-eye-view IoU of two LiDAR boxes ``(x, y, z, l, w, h, yaw)``."""
    return float(iou_matrix(Boxes.from_lidar(box_a), Boxes.from_lidar(box_b))[0][0, 0])


def box2d_overlap(a, b, criterion: str = 'iou') -> np.ndarray:
    """len(a) x len(b) overlap of axis-aligned image boxes (x1, y1, x2, y2): ``'iou'``, or ``'a'`` =
    intersection / area of the box from ``a`` (the KITTI devkit's test for DontCare regions)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    if criterion == 'a':
        denom = np.broadcast_to(area_a, inter.shape)
    else:
        area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
        denom = area_a + area_b - inter
    return np.where(denom > 0, inter / np.where(denom > 0, denom, 1), 0.0)
