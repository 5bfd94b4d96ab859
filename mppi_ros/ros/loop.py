"""Pure helpers of the controller node's loop (no ROS): timing statistics, the watchdog's fault
bookkeeping, and the mapping from parameter values to the controller's tuning pytree."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from mppi_ros.allocator import libc
from mppi_ros.core.controllers import TrackingTuning, update_tuning
from mppi_ros.core.dynamics import DynamicsModel

# ROS parameter name -> what it sets in the tuning pytree (vector lengths checked there).
TUNING_PARAMETERS = (
    "temperature",
    "noise_std",
    "q_weights",
    "r_weights",
    "border_weight",
    "border_margin",
    "reference_speed",
    "speed_scale",
    "max_speed",
)


def tuning_values(tuning: TrackingTuning, model: DynamicsModel) -> dict[str, Any]:
    """The parameter values that describe ``tuning`` (used to show a model's defaults)."""
    values: dict[str, Any] = {
        "temperature": float(tuning.temperature),
        "noise_std": [float(v) for v in np.asarray(tuning.noise_std)],
        "q_weights": [float(v) for v in np.asarray(tuning.q_weights)],
        "r_weights": [float(v) for v in np.asarray(tuning.r_weights)],
        "border_weight": float(tuning.border_weight),
        "border_margin": float(tuning.border_margin),
        "reference_speed": float(tuning.reference_speed),
        "speed_scale": float(tuning.speed_scale),
    }
    if model.speed_index is not None:
        values["max_speed"] = float(np.asarray(tuning.state_max)[model.speed_index])
    return values


def apply_tuning(
    base: TrackingTuning, model: DynamicsModel, values: Mapping[str, Any]
) -> TrackingTuning:
    """``base`` with the given parameter values applied (shapes and dtypes kept).

    ``noise_std`` of length 1 is broadcast to every control channel; ``max_speed`` is the
    upper speed limit of the state box (never above the vehicle's own ``v_max``).

    Raises:
        ValueError: One sentence naming the parameter and what is wrong.
    """
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name not in TUNING_PARAMETERS:
            raise ValueError(f"{name} is not a tuning parameter")
        if name == "max_speed":
            if model.speed_index is None:
                raise ValueError(f"max_speed does not apply to the {model.name} model")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"max_speed must be finite and > 0, got {value}")
            state_max = np.array(base.state_max)
            physical = model.physical_params(base.model_params)
            limit = float(getattr(physical, "v_max", math.inf))
            state_max[model.speed_index] = min(float(value), limit)
            changes["state_max"] = state_max
            continue
        array = np.asarray(value, np.float32)
        expected = np.shape(getattr(base, name))
        if name == "noise_std" and array.shape == (1,):
            array = np.broadcast_to(array, expected)
        if array.shape != expected:
            raise ValueError(
                f"{name} needs {int(np.prod(expected)) if expected else 1} value(s) for the "
                f"{model.name} model, got {array.size}"
            )
        changes[name] = array
    if "reference_speed" in changes and not changes["reference_speed"] > 0:
        raise ValueError(f"reference_speed must be > 0, got {float(changes['reference_speed'])}")
    # The node follows the reference path's speed profile (timed pose stamps), scaled by
    # speed_scale and capped at reference_speed; an untimed path carries a profile far above
    # any cap, so there the reference advances at reference_speed.
    cap = changes.get("reference_speed", base.reference_speed)
    changes.update(follow_profile=1.0, max_speed=cap)
    return update_tuning(base, **changes)


def realtime_priority(priority: int = 50, thread_id: int = 0) -> str | None:
    """Real-time (SCHED_FIFO ``priority``) scheduling for a thread of this process (0: the
    calling one) where permitted (root, or CAP_SYS_NICE / an rtprio limit); returns why not,
    or None. ``priority`` 0 leaves normal scheduling."""
    if priority <= 0:
        return "realtime_priority is 0"
    try:
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, PermissionError, OSError) as err:
        return str(err)
    return None


def name_os_thread(name: str) -> None:
    """Gives the calling thread ``name`` (at most 15 bytes) in the kernel's view, as ``top -H``
    and ``/proc/PID/task/TID/comm`` show it (Python's thread names stay in Python)."""
    with contextlib.suppress(OSError, AttributeError):
        libc().prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


_PR_SET_NAME = 15


def _thread_ids() -> list[int]:
    return [int(tid) for tid in os.listdir("/proc/self/task")]


def pin_process(cpus: list[int]) -> None:
    """Restricts every thread of this process to ``cpus`` (threads started later inherit it).

    Raises:
        ValueError: One sentence: an empty list, or CPUs this machine (or cgroup) lacks.
    """
    if not cpus:
        raise ValueError("cpu_affinity is empty; leave it unset to keep the inherited CPUs")
    count = os.cpu_count() or 1
    if any(cpu < 0 or cpu >= count for cpu in cpus):
        raise ValueError(f"cpu_affinity {list(cpus)} is outside this machine's CPUs 0-{count - 1}")
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as err:  # e.g. CPUs outside this container's cpuset
        raise ValueError(f"cannot run on CPU {list(cpus)}: {err.strerror}") from None
    for tid in _thread_ids():
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(tid, cpus)


def prioritise_threads(name_prefix: str, priority: int) -> int:
    """SCHED_FIFO ``priority`` for this process's threads whose name starts with
    ``name_prefix`` (XLA's intra-op workers, which run part of every control step); returns
    how many were raised (0 where not permitted)."""
    raised = 0
    for tid in _thread_ids():
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                name = comm.read().strip()
        except FileNotFoundError:
            continue
        if name.startswith(name_prefix) and realtime_priority(priority, tid) is None:
            raised += 1
    return raised


def next_deadline(deadline: float, period: float, now: float) -> float:
    """The deadline after ``deadline``; an overrun skips to the next one still ahead (the
    skipped cycles are what :class:`LoopStats` counts as missed)."""
    deadline += period
    if now > deadline:
        deadline += math.ceil((now - deadline) / period) * period
    return deadline


class CycleGate:
    """Keeps background Python threads off the GIL while a control cycle runs.

    CPython hands the GIL to a waiting thread only every switch interval, so a control cycle
    that competes with a background compile (tracing and lowering are Python) waits at each of
    its GIL release points, and a 1.5 ms cycle stretches to 5-20 ms. A background thread that
    runs its work inside :meth:`cooperate` gets a per-thread profile hook that parks it (GIL
    released) from ``margin`` seconds before each cycle's deadline until that cycle has ended.
    Long C calls cannot be interrupted, hence the margin.

    A loop that overruns (a cycle as long as its period, as the ONNX backend on a slow CPU)
    leaves no room before the next window; without a floor the background thread would run one
    Python call per cycle and a model swap would never finish. So each cycle end grants the
    background at least ``min_slice`` seconds before it parks again.
    """

    def __init__(
        self, margin: float = 1.0e-3, max_park: float = 0.05, min_slice: float = 2.0e-3
    ) -> None:
        self.margin = margin
        self.max_park = max_park
        self.min_slice = min_slice
        self._window_start = math.inf  # no control loop: never park
        self._ended = threading.Event()

    def cycle_ended(self, next_deadline: float) -> None:
        """Called by the control thread after each cycle with the next deadline (monotonic)."""
        ended, self._ended = self._ended, threading.Event()
        floor = time.monotonic() + self.min_slice
        self._window_start = max(next_deadline - self.margin, floor)
        ended.set()

    def wait_cycle_end(self) -> None:
        """Blocks until the next control cycle ends (at most ``max_park``)."""
        self._ended.wait(self.max_park)

    def wait_for_room(self, seconds: float) -> None:
        """Blocks until ``seconds`` of GIL-held work can end before the next cycle's parking
        window (after the next cycle when it cannot); returns at once when no loop runs."""
        if time.monotonic() + seconds >= self._window_start:
            self._ended.wait(self.max_park)

    def stop(self) -> None:
        """The loop stopped: background threads run freely."""
        self._window_start = math.inf
        self._ended.set()

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        if time.monotonic() >= self._window_start:
            self._ended.wait(self.max_park)

    def install(self) -> None:
        """Makes the calling (background) thread yield to control cycles from now on."""
        sys.setprofile(self._hook)

    @contextlib.contextmanager
    def cooperate(self):
        """Runs the enclosed code (on the calling thread) so that it yields to control cycles."""
        previous = sys.getprofile()
        sys.setprofile(self._hook)
        try:
            yield
        finally:
            sys.setprofile(previous)


T = TypeVar("T")


def split_retired(retired: list[T], shared: Callable[[T], bool]) -> tuple[list[T], list[T]]:
    """``(those of retired for which shared() holds, the rest)``, in order.

    A function of its own so that no loop variable outlives the call: one left in the
    caller's frame kept the last retired controller (and its executable) alive past the
    caller's ``del``, so XLA's teardown ran later than the cycle gate had placed it.
    """
    flags = [shared(item) for item in retired]
    return (
        [item for item, flag in zip(retired, flags, strict=True) if flag],
        [item for item, flag in zip(retired, flags, strict=True) if not flag],
    )


def freeze_heap() -> None:
    """Collects, then moves every live object out of the cyclic garbage collector's view
    (``gc.freeze``) and leaves full collections to explicit calls.

    A full collection walks every tracked object with the GIL held: with JAX's caches that is
    50-90 ms, several missed cycles. Once the configured controller is frozen, a later call
    walks only what was made since (1-2 ms after a background build whose JAX caches were
    released); young-generation collections still run and stay sub-millisecond.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000_000)


class LoopStats:
    """Control-loop timing: latency and data-age windows, missed cycles, measured rate.

    A cycle is missed when the gap between two tick starts exceeds 1.5 periods (each whole
    extra period counts once).
    """

    def __init__(self, period: float, window: int = 2000) -> None:
        self.period = period
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.data_age_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.tick_starts: collections.deque[float] = collections.deque(maxlen=window)
        self.missed_cycles = 0
        self.cycles = 0
        self._last_start: float | None = None

    def tick(self, start: float) -> int:
        """Records a tick start (monotonic seconds); returns the cycles missed before it."""
        missed = 0
        if self._last_start is not None:
            gap = start - self._last_start
            if gap > 1.5 * self.period:
                missed = round(gap / self.period) - 1
        self._last_start = start
        self.missed_cycles += missed
        self.cycles += 1
        self.tick_starts.append(start)
        return missed

    def record(self, latency_s: float, data_age_s: float | None) -> None:
        self.latency_ms.append(latency_s * 1e3)
        if data_age_s is not None:
            self.data_age_ms.append(data_age_s * 1e3)

    def rate_hz(self) -> float:
        if len(self.tick_starts) < 2:
            return 0.0
        span = self.tick_starts[-1] - self.tick_starts[0]
        return (len(self.tick_starts) - 1) / span if span > 0 else 0.0

    def summary(self) -> dict[str, float]:
        def pct(values: collections.deque[float], q: float) -> float:
            return float(np.percentile(values, q)) if values else float("nan")

        return {
            "rate_hz": self.rate_hz(),
            "latency_p50_ms": pct(self.latency_ms, 50),
            "latency_p99_ms": pct(self.latency_ms, 99),
            "data_age_p99_ms": pct(self.data_age_ms, 99),
            "missed_cycles": float(self.missed_cycles),
            "cycles": float(self.cycles),
        }


@dataclasses.dataclass
class Watchdog:
    """Which fault (if any) holds the car, with once-per-cause logging.

    ``report(cause)`` returns True the first time a cause appears (log it then) and again only
    after ``relog_s``; ``clear()`` returns the cause that just ended, if any (log recovery).
    """

    relog_s: float = 5.0
    cause: str | None = None
    faults: int = 0
    _logged_at: dict[str, float] = dataclasses.field(default_factory=dict)

    def report(self, cause: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if cause != self.cause:
            self.faults += 1
        self.cause = cause
        kind = cause.split(":")[0]
        last = self._logged_at.get(kind)
        if last is None or now - last >= self.relog_s:
            self._logged_at[kind] = now
            return True
        return False

    def clear(self) -> str | None:
        ended, self.cause = self.cause, None
        if ended is not None:
            self._logged_at.pop(ended.split(":")[0], None)
        return ended


@dataclasses.dataclass(frozen=True)
class CommandLimits:
    """Host-side vehicle values the command encoding needs every cycle, read once per model
    (reading them from the tuning's device arrays each cycle costs a transfer each)."""

    control_names: tuple[str, ...]
    speed_index: int | None
    steering_limits: tuple[float, float] | None
    wheelbase: float

    @classmethod
    def from_model(cls, model: DynamicsModel, params: Any) -> CommandLimits:
        names = model.state_names
        steering = (float(params.delta_min), float(params.delta_max)) if "delta" in names else None
        return cls(
            control_names=tuple(model.control_names),
            speed_index=names.index("v") if "v" in names else None,
            steering_limits=steering,
            wheelbase=float(getattr(params, "lf", 0.5) + getattr(params, "lr", 0.5)),
        )
