"""KITTI 3D object evaluation (Car): AP R40, NS, IoU, heading errors."""
