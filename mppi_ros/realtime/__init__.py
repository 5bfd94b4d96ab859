"""Real-time plumbing of the controller process, in one place: thread scheduling
(:mod:`.scheduling`), memory (:mod:`.memory`) and JAX runtime settings (:mod:`.jax_runtime`,
the only module that touches JAX internals).

A control node applies it at four moments:

* :func:`prepare_process` at start, before anything uses JAX (JAX reads its dispatch mode
  once, when its CPU backend starts): the GIL switch interval, synchronous CPU dispatch and
  the persistent compilation cache;
* :func:`configure_process` at configure, before compiling: CPU affinity;
* :func:`settle_after_compile` once the controller is compiled: JAX's tracing caches emptied,
  the heap frozen and trimmed, XLA's worker threads raised to one below the control thread;
* :func:`make_control_thread_realtime` on the control thread itself: its kernel name and
  SCHED_FIFO priority.
"""

from __future__ import annotations

import dataclasses
import sys

from mppi_ros.realtime.jax_runtime import (
    enable_compilation_cache,
    release_jax_caches,
    synchronous_cpu_dispatch,
)
from mppi_ros.realtime.memory import freeze_heap, release_free_heap
from mppi_ros.realtime.scheduling import (
    name_os_thread,
    pin_process,
    prioritise_threads,
    realtime_priority,
)

# Name prefix of XLA's CPU intra-op worker threads (they run part of every compiled step).
XLA_WORKER_THREADS = "tf_XLAEigen"


@dataclasses.dataclass(frozen=True)
class RealtimeSettings:
    """How the control process runs.

    Attributes:
        cpu_affinity: CPUs every thread of the process may use (``None``: inherited).
        priority: SCHED_FIFO priority of the control thread (0: normal scheduling); XLA's
            worker threads get one less.
    """

    cpu_affinity: tuple[int, ...] | None = None
    priority: int = 50


def prepare_process(switch_interval_s: float = 5e-4) -> None:
    """Process-wide settings, applied before the process first uses JAX.

    ``switch_interval_s``: CPython's GIL switch interval, short so that the control thread
    waits briefly for the GIL while the executor or a background compile runs Python.
    """
    sys.setswitchinterval(switch_interval_s)
    # Each step then runs on the (real-time) control thread, not handed to JAX's
    # normal-priority dispatch threads (measured: p99 latency 2.99 vs 5.74 ms, realtime.md).
    synchronous_cpu_dispatch()
    enable_compilation_cache()


def configure_process(settings: RealtimeSettings) -> None:
    """The node's CPU affinity, applied at configure (a parameter of the node).

    Raises:
        ValueError: A CPU list this machine (or cgroup) cannot honour (one sentence).
    """
    if settings.cpu_affinity is not None:
        pin_process(list(settings.cpu_affinity))


def settle_after_compile(settings: RealtimeSettings) -> None:
    """After the first compile: what tracing and lowering left in JAX's caches (~95 MB) and the
    compile's garbage (~50 MB) released before the loop runs, everything alive frozen out of
    the garbage collector's full passes, and XLA's worker threads (started by the compile)
    raised to one below the control thread."""
    release_jax_caches()
    freeze_heap()
    release_free_heap()
    if settings.priority > 1:
        prioritise_threads(XLA_WORKER_THREADS, settings.priority - 1)


def make_control_thread_realtime(settings: RealtimeSettings, name: str) -> str | None:
    """Names the calling thread for ``top -H`` and gives it SCHED_FIFO ``settings.priority``;
    returns why it keeps normal scheduling, or None."""
    name_os_thread(name)
    return realtime_priority(settings.priority)
