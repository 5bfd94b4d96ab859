"""What the nodes share: QoS profiles, parameter descriptors, and the ``main`` of plain nodes."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy import logging
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

# Commands: reliable, only the newest matters.
RELIABLE_LATEST = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
)
# Track paths: late joiners get the last message.
LATCHED = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def describe(
    description: str,
    read_only: bool = False,
    float_range: tuple[float, float] | None = None,
    int_range: tuple[int, int] | None = None,
    constraints: str = "",
) -> ParameterDescriptor:
    """A parameter descriptor with an optional float or integer range."""
    descriptor = ParameterDescriptor(
        description=description, read_only=read_only, additional_constraints=constraints
    )
    if float_range is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float_range[0], to_value=float_range[1], step=0.0)
        ]
    if int_range is not None:
        descriptor.integer_range = [
            IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)
        ]
    return descriptor


def init_with_own_signals(args: list[str] | None) -> threading.Event:
    """``rclpy.init`` with our own SIGINT/SIGTERM handling; the returned event is set on
    either signal.

    rclpy's handler sometimes lost a SIGINT under load (the process then needed SIGKILL), and
    it invalidates the context before a node can publish on the way out (the controller's
    brake command). Pair with :func:`spin_until`.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def spin_until(
    stop: threading.Event,
    executor: SingleThreadedExecutor,
    around: contextlib.AbstractContextManager | None = None,
) -> None:
    """Spins until ``stop`` is set or the context shuts down; the bounded ``spin_once`` notices
    the request within 0.1 s even when no callback is due. ``around`` wraps the spinning."""
    try:
        with around or contextlib.nullcontext():
            while not stop.is_set() and rclpy.ok():
                try:
                    executor.spin_once(timeout_sec=0.1)
                except RCLError as err:
                    # A request rcl refuses (e.g. a lifecycle transition the current state
                    # lacks) raises out of rclpy's own service handler: log it, keep running.
                    logging.get_logger("mppi_ros").error(f"refused a request: {err}")
    except ExternalShutdownException:
        pass


def run_node(
    make_node: Callable[[], Node],
    node_name: str,
    startup_errors: tuple[type[BaseException], ...],
    args: list[str] | None = None,
) -> int:
    """Spins a plain node until SIGINT/SIGTERM; returns the exit code (1: bad start-up)."""
    stop = init_with_own_signals(args)
    node = None
    executor = SingleThreadedExecutor()
    try:
        try:
            node = make_node()
        except startup_errors as err:
            rclpy.logging.get_logger(node_name).fatal(f"cannot start: {err}")
            return 1
        executor.add_node(node)
        spin_until(stop, executor)
    finally:
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
