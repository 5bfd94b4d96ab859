"""Helpers for tests that run real ROS 2 nodes as separate processes over real DDS.

Each test module takes its own DDS domain (:func:`unique_domain_id`) with discovery limited to
this machine, starts nodes with :class:`NodeProcess` from a parameter file
(:func:`write_params`), and talks to them from an in-process node made by
:func:`ros_context`, which uses its own rclpy context so it never touches the global one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mppi_ros.ros.processes import NodeProcess, pick_domain_id, ros_env, write_params_file

__all__ = [
    "NodeProcess",
    "RosTestContext",
    "ros_context",
    "ros_environment",
    "unique_domain_id",
    "write_params",
]

unique_domain_id = pick_domain_id
ros_environment = ros_env


def write_params(path: str | os.PathLike, node_name: str, params: dict) -> Path:
    """Writes ``{node_name: {"ros__parameters": params}}`` as a ROS 2 parameter file."""
    return write_params_file(Path(path), {node_name: params})


class RosTestContext:
    """An rclpy context of its own with one node and an executor to spin it.

    Attributes:
        context: The rclpy context.
        node: A node created in that context.
        executor: A single-threaded executor of that context, with ``node`` added.
    """

    def __init__(self, context, node, executor) -> None:
        self.context = context
        self.node = node
        self.executor = executor

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spins until ``predicate()`` is true; returns False if ``timeout`` s pass first."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0.0:
                return False
            self.executor.spin_once(timeout_sec=min(remaining, 0.05))

    def spin_for(self, duration: float) -> None:
        """Spins for ``duration`` seconds."""
        self.spin_until(lambda: False, duration)

    def wait_for_future(self, future, timeout: float):
        """Spins until ``future`` (a service or parameter call) is done; returns its result.

        Raises:
            TimeoutError: If it is not done within ``timeout`` seconds.
        """
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f"no reply within {timeout} s")
        return future.result()


@contextlib.contextmanager
def ros_context(domain_id: int, node_name: str = "test_probe") -> Iterator[RosTestContext]:
    """Initialises rclpy in a fresh context on ``domain_id`` and yields a :class:`RosTestContext`.

    Discovery of this process is limited to localhost like that of :class:`NodeProcess`
    children (``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set in this process's environment if unset;
    rmw reads it when the context starts). Everything is shut down at exit.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = None
    executor = None
    try:
        node = rclpy.create_node(node_name, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        yield RosTestContext(context, node, executor)
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def without_ackermann_msgs_env() -> dict[str, str]:
    """Environment of a node process in which ``import ackermann_msgs`` fails as on a machine
    without it (``make test`` builds it into the venv)."""
    hide = str(Path(__file__).resolve().parent / "without_ackermann_msgs")
    return {"PYTHONPATH": os.pathsep.join(p for p in (hide, os.environ.get("PYTHONPATH")) if p)}
