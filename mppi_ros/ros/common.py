"""What the nodes share: QoS profiles, parameter descriptors, and the ``main`` of plain nodes."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

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


def run_node(
    make_node: Callable[[], Node],
    node_name: str,
    startup_errors: tuple[type[BaseException], ...],
    args: list[str] | None = None,
) -> int:
    """Spins a plain node until Ctrl-C; returns the process exit code (1: bad start-up)."""
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = make_node()
        except startup_errors as err:
            rclpy.logging.get_logger(node_name).fatal(f"cannot start: {err}")
            return 1
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
