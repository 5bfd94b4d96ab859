"""Thread scheduling for a real-time control loop: SCHED_FIFO priorities, CPU affinity, kernel
thread names, absolute deadlines, and the gate that keeps background Python off the GIL while
a control cycle runs."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from typing import Any

from mppi_ros.realtime.memory import libc


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
        self._hook_off = threading.local()

    def cycle_ended(self, next_deadline: float) -> None:
        """Called by the control thread after each cycle with the next deadline (monotonic)."""
        ended, self._ended = self._ended, threading.Event()
        floor = time.monotonic() + self.min_slice
        self._window_start = max(next_deadline - self.margin, floor)
        ended.set()

    def wait_cycle_end(self) -> None:
        """Blocks until the next control cycle ends (at most ``max_park``)."""
        self._park()

    def wait_for_room(self, seconds: float) -> None:
        """Blocks until ``seconds`` of GIL-held work can end before the next cycle's parking
        window (after the next cycle when it cannot); returns at once when no loop runs."""
        if time.monotonic() + seconds >= self._window_start:
            self._park()

    def stop(self) -> None:
        """The loop stopped: background threads run freely."""
        self._window_start = math.inf
        with self._unhooked():
            self._ended.set()

    @contextlib.contextmanager
    def _unhooked(self):
        """This thread's hook off while it is inside the cycle-end event: the hook fires on
        the event's own Python calls, made with its lock held, and parking there waits for
        that lock: the thread deadlocks, and so does the control thread's next
        :meth:`cycle_ended` (a node froze that way, commands and diagnostics gone)."""
        self._hook_off.active = True
        try:
            yield
        finally:
            self._hook_off.active = False

    def _park(self) -> None:
        with self._unhooked():
            self._ended.wait(self.max_park)

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        if time.monotonic() >= self._window_start and not getattr(self._hook_off, "active", False):
            self._park()

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


def open_stall_log():
    """With ``MPPI_ROS_STALL_LOG=FILE``, every cycle that has not ended one period after its
    deadline (a late start or a long run) appends all threads' stacks to FILE; a C watchdog
    thread writes them, so it works while another thread holds the GIL."""
    path = os.environ.get("MPPI_ROS_STALL_LOG")
    return open(path, "a") if path else None
