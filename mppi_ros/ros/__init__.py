"""ROS 2 nodes (rclpy): controller, vehicle simulator, track publisher, and their helpers.

Only this package imports ROS; the math lives in :mod:`mppi_ros.core`.
"""
