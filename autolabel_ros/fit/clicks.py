"""Click prompts: the object under the clicks, not the biggest thing around them.

A person clicks the part of the car they see. SAM's mask from a few clicks on a partly hidden car
often spreads over the car in front of it (both are "the object" to an image model), and the mask's
box then says nothing about where the clicked car is. The scan does: the LiDAR points under the
clicks lie on the clicked car's visible surface.

- :func:`click_depth`: camera depth of the clicked surface, per click the scan point nearest to it
  in the image, the median over the clicks;
- :func:`trim_to_clicked`: the mask without the pixels where the scan shows something clearly
  nearer than that surface (and nothing at its depth), then only its parts that hold a click;
- :func:`depth_window`: the frustum points at the clicked object's depth (the car's own depth
  extent around the clicks), so a cluster of the car in front cannot win.
"""
from __future__ import annotations

import cv2
import numpy as np

RADIUS_PX = 6            # scan points within this of a click are under it (64 beams: ~5 px row spacing)
CLICK_POINTS = 1         # the scan point nearest a click in the image says its depth
NEAR_MARGIN_M = 3.0      # nearer than the clicked surface by more than a car's visible depth: another object
NEAR_MARGIN_FRAC = 0.1   # ... or by this share of its depth (range noise and sparser rows far away)
FAR_EXTENT_M = 5.0       # the clicked car extends at most this far behind the clicked surface
KEEP_MIN_FRAC = 0.1      # a trim that leaves less than this share of the mask is not trusted


def click_depth(clicks: np.ndarray, uv: np.ndarray, depth: np.ndarray, usable: np.ndarray,
                radius_px: float = RADIUS_PX) -> float | None:
    """Camera depth of the surface under the clicks (K x 2 pixels); ``uv``/``depth``/``usable`` are
    the scan's projections, camera depths and the non-ground points inside the image. Per click the
    depth of the scan point nearest to it in the image (within ``radius_px``, else twice that): near
    a click on a car's edge lie points of the car in front or of the background the LiDAR sees past
    the roof, so neither the nearest nor a percentile in depth can be trusted; the median over the
    clicks outvotes one click on an edge. None when no click has scan points near it."""
    idx = np.flatnonzero(usable)
    if len(idx) == 0 or len(clicks) == 0:
        return None
    per_click = []
    for r in (radius_px, 2 * radius_px):
        for c in clicks:
            dist = np.linalg.norm(uv[idx] - c[None], axis=1)
            near = np.flatnonzero(dist <= r)
            if len(near):
                near = near[np.argsort(dist[near])[:CLICK_POINTS]]
                per_click.append(float(np.median(depth[idx[near]])))
        if per_click:
            break
    return float(np.median(per_click)) if per_click else None


def near_margin(d_click: float) -> float:
    return max(NEAR_MARGIN_M, NEAR_MARGIN_FRAC * d_click)


def depth_window(depth: np.ndarray, d_click: float) -> np.ndarray:
    """Boolean: camera depths within the clicked car's depth extent around the clicked surface."""
    return (depth >= d_click - near_margin(d_click)) & (depth <= d_click + FAR_EXTENT_M)


def trim_to_clicked(mask: np.ndarray, clicks: np.ndarray, uv: np.ndarray, depth: np.ndarray,
                    usable: np.ndarray, d_click: float, radius_px: int = RADIUS_PX) -> np.ndarray:
    """The mask (H x W bool) without what the scan shows nearer than the clicked surface: pixels
    around points nearer than ``d_click`` by :func:`near_margin` and not around points at the
    clicked depth are dropped, then only the connected parts holding a click (or, when the clicks'
    pixels went too, the largest part) are kept. The mask itself is returned when the trim would
    leave almost nothing."""
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return mask
    box = (xs.min(), ys.min(), xs.max(), ys.max())
    sel = usable & (uv[:, 0] >= box[0]) & (uv[:, 0] <= box[2]) & (uv[:, 1] >= box[1]) & (uv[:, 1] <= box[3])
    if not sel.any():
        return mask
    u = np.clip(uv[sel, 0].astype(int), 0, W - 1)
    v = np.clip(uv[sel, 1].astype(int), 0, H - 1)
    d = depth[sel]
    nearer = d < d_click - near_margin(d_click)
    if not nearer.any():
        return mask
    # the scan is sparse in rows: close the gaps between them (taller than wide); the clicked car's
    # own points win only right around them, so the band where both meet stays small
    near_map = np.zeros((H, W), np.uint8)
    near_map[v[nearer], u[nearer]] = 1
    own = depth_window(d, d_click)
    own_map = np.zeros((H, W), np.uint8)
    own_map[v[own], u[own]] = 1
    near_map = cv2.dilate(near_map, np.ones((4 * radius_px + 1, 2 * radius_px + 1), np.uint8)) > 0
    own_map = cv2.dilate(own_map, np.ones((2 * radius_px + 1, 2 * radius_px + 1), np.uint8)) > 0
    trimmed = mask & ~(near_map & ~own_map)
    n, lab = cv2.connectedComponents(trimmed.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    ci = np.clip(np.round(clicks).astype(int), 0, [W - 1, H - 1])
    hit = {int(lab[y, x]) for x, y in ci} - {0}
    if not hit:
        sizes = np.bincount(lab.ravel(), minlength=n)
        sizes[0] = 0
        hit = {int(sizes.argmax())}
    out = np.isin(lab, sorted(hit))
    return out if out.sum() >= KEEP_MIN_FRAC * mask.sum() else mask
