"""Formats in and out: KITTI, ROS messages (duck-typed on fields), bags, label writers."""
