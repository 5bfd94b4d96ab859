"""What the nodes share: QoS profiles, parameter descriptors, and the ``main`` of plain nodes."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import rclpy
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy import logging
from rclpy._rclpy_pybind11 import RCLError
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode
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


EXECUTOR_ENV = "MPPI_ROS_EXECUTOR"
EXECUTORS = ("events", "single_threaded")


def make_executor(context: Context | None = None) -> Executor:
    """The executor the nodes spin: rclpy's ``EventsExecutor`` where it exists, else the
    ``SingleThreadedExecutor``; ``$MPPI_ROS_EXECUTOR`` (``events`` | ``single_threaded``)
    chooses explicitly.

    The single-threaded executor rebuilds its wait set in Python on every wake-up: at 100 Hz
    odometry plus joint states that held the controller's GIL ~20 % of the time (a core's
    fifth on a fast CPU, more than the control loop itself), which on a slower 2-core machine
    starved the control thread into missed cycles. The events executor does that work in C++.

    Raises:
        ValueError: ``$MPPI_ROS_EXECUTOR`` names an unknown executor, or ``events`` where this
            rclpy lacks it.
    """
    choice = os.environ.get(EXECUTOR_ENV, "")
    if choice not in ("", *EXECUTORS):
        raise ValueError(f"{EXECUTOR_ENV}={choice!r}: expected one of {', '.join(EXECUTORS)}")
    if choice != "single_threaded":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError as err:
            if choice == "events":
                raise ValueError(f"{EXECUTOR_ENV}=events: this rclpy has none ({err})") from err
        else:
            return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


class BlockingServices:
    """Services of ``owner`` whose callbacks may block (e.g. until a background build is done),
    served by a hidden helper node on its own thread and executor.

    The events executor runs synchronous callbacks only, one at a time, so a callback that
    waits would hold back every subscription of the owner meanwhile. Services created here
    keep the owner's names (``~/name`` resolves against the owner's fully qualified name).

    Args:
        owner: The node the services belong to.
        around: Wraps the helper thread's spinning (e.g. a control-cycle gate).
    """

    def __init__(
        self,
        owner: Node,
        around: Callable[[], contextlib.AbstractContextManager] | None = None,
        purpose: str = "services",
    ) -> None:
        self._owner = owner
        self._node = rclpy.create_node(
            f"_{owner.get_name()}_{purpose}",
            namespace=owner.get_namespace(),
            context=owner.context,
            use_global_arguments=False,  # a global __node:= remap must not rename it
            start_parameter_services=False,
            enable_rosout=False,
        )
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self._node)
        self._stop = threading.Event()
        self._around = around or contextlib.nullcontext
        self._thread = threading.Thread(
            target=self._spin, name=f"{owner.get_name()}_services", daemon=True
        )
        self._thread.start()

    def create_service(self, srv_type: type, name: str, callback: Callable) -> None:
        if name.startswith("~/"):
            name = f"{self._owner.get_fully_qualified_name()}/{name[2:]}"
        self._node.create_service(srv_type, name, callback)

    def _spin(self) -> None:
        with self._around():
            while not self._stop.is_set() and self._node.context.ok():
                try:
                    self._executor.spin_once(timeout_sec=0.1)
                except ExternalShutdownException:
                    return  # the context shut down (SIGINT) while this thread waited

    def destroy(self) -> None:
        """Stops the thread (a running callback finishes first) and destroys the helper."""
        self._stop.set()
        self._thread.join()
        self._executor.shutdown(timeout_sec=1.0)
        self._node.destroy_node()


def init_with_own_signals(args: list[str] | None) -> threading.Event:
    """``rclpy.init`` with our own SIGINT/SIGTERM handling; the returned event is set on
    either signal once :func:`spin_until` runs.

    rclpy's handler sometimes lost a SIGINT under load (the process then needed SIGKILL), and
    it invalidates the context before a node can publish on the way out (the controller's
    brake command). Until the node spins, either signal ends the process at once (the
    kernel's default action): a Python handler would wait for the start-up's JAX compile
    (seconds, more on a loaded machine), and nothing has been commanded yet. ``kill -USR1
    <pid>`` writes every thread's stack to stderr (the node's log).
    """
    faulthandler.register(signal.SIGUSR1)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    return threading.Event()


def exit_now(code: int = 0) -> NoReturn:
    """Ends the process once the node has shut down, without waiting for background workers:
    a model compile can run for tens of seconds and Python joins worker threads at exit, so
    SIGINT / SIGTERM would wait for it. The brake command went out before this."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def answer_refused_transitions(node: LifecycleNode) -> None:
    """Makes ``node``'s ``change_state`` service answer a transition its current state lacks
    with the standard failure (``success: false``) and one log line. rclpy's handler raises
    instead: the executor logs FATAL with a traceback and the caller never gets a reply."""
    for service in node.services:
        if service.srv_type is not ChangeState:
            continue
        handle = service.callback

        def answer(request: ChangeState.Request, response: ChangeState.Response, handle=handle):
            try:
                return handle(request, response)
            except RCLError:
                transition = request.transition.label or request.transition.id
                node.get_logger().warning(
                    f"refused lifecycle transition {transition!r}: the current state has "
                    "no such transition"
                )
                response.success = False
                return response

        service.callback = answer


def spin_until(
    stop: threading.Event,
    executor: Executor,
    around: contextlib.AbstractContextManager | None = None,
) -> None:
    """Spins until ``stop`` is set or the context shuts down; the bounded ``spin_once`` notices
    the request within 0.1 s even when no callback is due. ``around`` wraps the spinning.
    SIGINT and SIGTERM set ``stop`` from here on (see :func:`init_with_own_signals`)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
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
    executor = make_executor()
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
