"""What the fitter publishes for one frame, ROS-free: the messages (built by io/messages.py with the
node's factory) and the debug overlay image."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from autolabel_ros.core.geometry import BOX_EDGES, box_corners, project, transform_points
from autolabel_ros.core.types import Label3D, Prompt, SensorFrame
from autolabel_ros.io import messages as M
from autolabel_ros.nodes.params import NodeSettings


def frame_outputs(frame: SensorFrame, labels: Sequence[Label3D], prompts: Sequence[Prompt],
                  settings: NodeSettings, factory, image_stamp_ns: Optional[int] = None,
                  masks: Optional[Sequence[np.ndarray]] = None, debug_image: Optional[bool] = None) -> dict:
    """The messages the fitter publishes for one frame: 'markers', 'detections_3d' (LiDAR frame,
    cloud stamp) and 'debug_image' (camera frame, image stamp) when ``debug_image`` (default: the
    publish_debug_image setting; the node passes false while nobody subscribes, so the overlay is
    not drawn for nothing)."""
    out = {'markers': M.labels_to_marker_array(labels, frame.stamp_ns, frame.lidar_frame, factory,
                                               namespace=settings.marker_namespace,
                                               meshes=settings.publish_meshes,
                                               mesh_max_triangles=settings.mesh_max_triangles),
           'detections_3d': M.labels_to_detection3d_array(labels, frame.stamp_ns, frame.lidar_frame, factory,
                                                          include_rejected=settings.publish_rejected)}
    if settings.publish_debug_image if debug_image is None else debug_image:
        overlay = draw_debug_image(frame.image, frame.K, frame.T_cam_lidar, labels, prompts, masks)
        stamp = frame.stamp_ns if image_stamp_ns is None else image_stamp_ns
        out['debug_image'] = M.make_image(overlay, stamp, frame.camera_frame, factory)
    return out


_GREEN, _RED, _YELLOW, _CYAN = (40, 220, 70), (240, 40, 40), (255, 210, 0), (0, 220, 255)


def draw_debug_image(image: np.ndarray, K: np.ndarray, T_cam_lidar: np.ndarray, labels: Sequence[Label3D],
                     prompts: Sequence[Prompt] = (), masks: Optional[Sequence[np.ndarray]] = None,
                     mask_alpha: float = 0.4) -> np.ndarray:
    """RGB overlay: segmentation masks (tinted), prompts (yellow boxes, cyan clicks) and the labels'
    3D boxes projected into the image (green accepted, red rejected). Returns a new H x W x 3 uint8."""
    from PIL import Image, ImageDraw

    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    if masks is not None:
        palette = np.array([[255, 80, 80], [80, 160, 255], [255, 200, 60], [160, 255, 120], [220, 100, 255]],
                           dtype=np.float32)
        for i, m in enumerate(masks):
            m = np.asarray(m, dtype=bool)
            if m.shape != (h, w) or not m.any():
                continue
            out[m] = ((1 - mask_alpha) * out[m] + mask_alpha * palette[i % len(palette)]).astype(np.uint8)
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    for p in prompts:
        if p.box is not None:
            draw.rectangle([float(v) for v in p.box], outline=_YELLOW, width=2)
        if p.points is not None:
            for (u, v), lab in zip(p.points, p.point_labels):
                r = 5
                draw.ellipse([u - r, v - r, u + r, v + r], outline=_CYAN if lab > 0 else _RED, width=2)
    K = np.asarray(K, dtype=np.float64)
    for lab in labels:
        cam = transform_points(T_cam_lidar, box_corners(lab.center, lab.size, lab.yaw))
        uv, z = project(K, cam)
        color = _GREEN if lab.accepted else _RED
        for a, b in BOX_EDGES:
            if z[a] > 0.1 and z[b] > 0.1:    # skip edges crossing behind the camera
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=color, width=2)
        if np.all(z > 0.1):
            top = uv[np.argmin(uv[:, 1])]
            draw.text((float(top[0]), max(0.0, float(top[1]) - 12)), f'{lab.cls} {lab.score:.2f} #{lab.id}',
                      fill=color)
    return np.asarray(pil, dtype=np.uint8)

