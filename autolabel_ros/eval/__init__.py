"""KITTI 3D object evaluation (Car): AP R40, NS, IoU, heading errors."""
from autolabel_ros.eval.iou import Boxes, bev_iou_lidar, box2d_overlap, iou3d_lidar, iou_matrix, iou_pairs
from autolabel_ros.eval.kitti_eval import ap_r40, evaluate, format_table

__all__ = ['Boxes', 'ap_r40', 'bev_iou_lidar', 'box2d_overlap', 'evaluate', 'format_table', 'iou3d_lidar',
           'iou_matrix', 'iou_pairs']
