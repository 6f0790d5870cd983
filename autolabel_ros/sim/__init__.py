"""Synthetic camera + LiDAR drives: scenes, sensors, writers.

``simulate_frame(seed)`` / ``simulate_drive(n_frames, seed, beams=64)`` give :class:`SimFrame`
objects (sensor data + exact ground truth); :mod:`autolabel_ros.sim.writers` stores them as a KITTI
object folder and a rosbag2.
"""
from autolabel_ros.sim.drive import SimFrame, Simulator, simulate_drive, simulate_frame

__all__ = ['SimFrame', 'Simulator', 'simulate_drive', 'simulate_frame']
