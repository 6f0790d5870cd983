"""rclpy adapters (the only place that imports rclpy / ROS message packages)."""
