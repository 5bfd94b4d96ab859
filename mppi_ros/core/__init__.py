"""Pure JAX/NumPy core of mppi_ros. Nothing in this package may import ROS."""
