"""Synthetic camera + LiDAR drives: scenes, sensors, writers."""
