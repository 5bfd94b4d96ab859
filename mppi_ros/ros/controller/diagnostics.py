"""The ``mppi_controller`` node's ``/diagnostics``: published from a thread of their own, so
that a blocked executor (a long parameter validation) or control loop is reported while it
lasts, by name, instead of leaving the last "ok" standing.

:class:`Stages` keeps the heartbeats and the long operations in progress; the node's
``status`` callable turns them into one ``DiagnosticStatus`` per period.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.publisher import Publisher

from mppi_ros.core.catalog import controller_spec
from mppi_ros.realtime.memory import heap_allocator
from mppi_ros.ros.controller.health import LoopStats, Watchdog
from mppi_ros.ros.controller.swap import ModelSwap

# The executor runs a heartbeat timer at the diagnostics rate: it is blocked when a beat is
# this many of its periods late (and at least EXECUTOR_BLOCKED_MIN_S).
EXECUTOR_LATE_PERIODS = 3.0
EXECUTOR_BLOCKED_MIN_S = 0.5
# The control loop is blocked after this many periods without a cycle (and at least 0.25 s).
CONTROL_LATE_PERIODS = 10.0
CONTROL_BLOCKED_MIN_S = 0.25


class Stages:
    """Heartbeats of the node's stages and the long operations running in them.

    ``beat(stage)`` records that a stage ran; ``busy(what)`` marks an operation while it
    runs. Written by the stages' threads, read by the diagnostics thread (plain dict writes,
    safe under the GIL).
    """

    def __init__(self) -> None:
        self._beats: dict[str, float] = {}
        self._busy: dict[str, float] = {}

    def beat(self, stage: str, now: float | None = None) -> None:
        self._beats[stage] = time.monotonic() if now is None else now

    def forget(self, stage: str) -> None:
        self._beats.pop(stage, None)

    @contextlib.contextmanager
    def busy(self, what: str) -> Iterator[None]:
        self._busy[what] = time.monotonic()
        try:
            yield
        finally:
            self._busy.pop(what, None)

    def silent_for(self, stage: str, now: float) -> float | None:
        """Seconds since ``stage`` last beat (``None``: it never did, or was forgotten)."""
        beat = self._beats.get(stage)
        return None if beat is None else now - beat

    def running(self, now: float) -> str:
        """The operations in progress with their durations (``""`` when none)."""
        return ", ".join(f"{what} {now - t:.1f} s" for what, t in list(self._busy.items()))


def blocked_stages(
    stages: Stages, now: float, executor_period: float, control_period: float
) -> str:
    """The stages that stopped running (``""`` when none), naming what keeps them busy."""
    found = []
    executor = stages.silent_for("executor", now)
    if executor is not None and executor > max(
        EXECUTOR_LATE_PERIODS * executor_period, EXECUTOR_BLOCKED_MIN_S
    ):
        found.append(
            f"executor_blocked: no callback (odometry, paths, lifecycle) ran for {executor:.1f} s"
        )
    control = stages.silent_for("control", now)
    if control is not None and control > max(
        CONTROL_LATE_PERIODS * control_period, CONTROL_BLOCKED_MIN_S
    ):
        found.append(f"control_loop_blocked: no control cycle for {control:.1f} s")
    if found and (running := stages.running(now)):
        found.append(f"running: {running}")
    return "; ".join(found)


def controller_status(
    name: str,
    watchdog: Watchdog,
    swap: ModelSwap,
    stats: LoopStats,
    steering: tuple[float, bool],
    blocked: str,
    running: bool,
    built: dict[str, int] | None = None,
) -> DiagnosticStatus:
    """The node's status: ERROR while a fault holds the car or a stage is blocked, WARN after
    a failed model change, OK ("ok" only while the control loop runs, "inactive" else); the
    values name the model, the loop's timing and health.

    Args:
        name: The node's name.
        watchdog: The fault bookkeeping.
        swap: The model swap (running model, compiles, errors).
        stats: The control loop's timing.
        steering: The steering angle of the last state and whether it was measured.
        blocked: :func:`blocked_stages`' finding.
        running: Whether the control loop runs (the node is active).
        built: Optional messages built so far, by topic (``<topic>_built`` values).
    """
    cause = watchdog.cause if running else "inactive"
    status = DiagnosticStatus(name=f"{name}: control loop", hardware_id=name)
    if blocked:
        status.level = DiagnosticStatus.ERROR
        status.message = f"{cause}; {blocked}" if running and cause else blocked
    elif cause == "inactive":
        status.level, status.message = DiagnosticStatus.OK, "inactive: the control loop is off"
    elif cause is not None:
        status.level, status.message = DiagnosticStatus.ERROR, cause
    elif swap.last_error:
        status.level, status.message = DiagnosticStatus.WARN, swap.last_error
    else:
        status.level, status.message = DiagnosticStatus.OK, "ok"
    active = swap.active
    samples = active is not None and controller_spec(active.controller.name).samples
    values = {
        "controller": active.controller.name if active else "",
        "model_id": active.model_id if active else "",
        "backend": active.spec.backend if active else "",
        "num_samples": str(active.controller.config.num_samples if samples else 0)
        if active
        else "",
        "watchdog": cause or "ok",
        "blocked": blocked,
        "faults": str(watchdog.faults),
        "swaps": str(swap.swaps),
        "kept_steps": str(len(swap.retired)),
        "allocator": heap_allocator(),
        "compiling": str(swap.compiling).lower(),
        "last_error": swap.last_error,
        "steering": f"{steering[0]:.4f}",  # as used in the last state
        "steering_source": "joint_states" if steering[1] else "integrated",
    }
    values.update({f"{topic}_built": str(n) for topic, n in (built or {}).items()})
    values.update({k: f"{v:.4f}" for k, v in stats.summary().items()})
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status


class DiagnosticsThread:
    """Publishes ``status()`` on ``publisher`` every ``period`` seconds from its own thread.

    Args:
        name: The node's name (for the status reporting a failure to build one).
        publisher: The ``/diagnostics`` publisher.
        period: Seconds between messages.
        status: Builds the status (called on this thread).
        stamp: The node clock's current time as a message.
        around: Wraps the thread's loop (the node's control-cycle gate).
    """

    def __init__(
        self,
        name: str,
        publisher: Publisher,
        period: float,
        status: Callable[[], DiagnosticStatus],
        stamp: Callable[[], object],
        around: Callable[[], contextlib.AbstractContextManager],
    ) -> None:
        self._name = name
        self._publisher, self._period, self._status, self._stamp = publisher, period, status, stamp
        self._around = around
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mppi_diagnostics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._around():
            deadline = time.monotonic()
            while not self._stop.wait(max(deadline - time.monotonic(), 0.0)):
                deadline = max(deadline + self._period, time.monotonic())
                try:
                    status = self._status()
                except Exception as err:  # a report of it, never a silent thread
                    status = DiagnosticStatus(
                        name=f"{self._name}: control loop",
                        hardware_id=self._name,
                        level=DiagnosticStatus.ERROR,
                        message=f"diagnostics_failed: {type(err).__name__}: {err}",
                    )
                msg = DiagnosticArray(status=[status])
                try:
                    msg.header.stamp = self._stamp()
                    self._publisher.publish(msg)
                except Exception:  # the context shut down under this thread: nothing to say
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
