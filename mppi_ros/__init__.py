"""mppi_ros: learned MPPI controllers (Step-MPPI, softMPCritic, classic MPPI) for ROS 2.

The math lives in :mod:`mppi_ros.core` (pure JAX/NumPy, no ROS); closed-loop simulation in
:mod:`mppi_ros.sim`; benchmarks in :mod:`mppi_ros.bench`; ROS 2 nodes in :mod:`mppi_ros.ros`.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_controller"]


def load_controller(name_or_path: str, track="default", **options):
    """Builds a NumPy-in / NumPy-out controller for examples and external harnesses.

    See :func:`mppi_ros.core.policy.load_controller` for the options (``speed_profile``,
    ``speed_scale``, ``reference_speed``, ``raceline``, ``seed``, static config fields).
    """
    from mppi_ros.core.policy import load_controller as _load

    return _load(name_or_path, track=track, **options)
