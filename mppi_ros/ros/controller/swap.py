"""Model swaps of the ``mppi_controller`` node: a new model, shape or backend compiles on a
worker thread while the old controller drives; the control thread swaps it in between two
cycles (a few assignments); the replaced controller is freed later, right after a cycle ends,
so that XLA's teardown lands in the idle part of a period."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from rclpy.impl.rcutils_logger import RcutilsLogger

from mppi_ros.core.bundles import BundleError
from mppi_ros.engine import CompiledController, EngineSpec, compile_controller
from mppi_ros.realtime.jax_runtime import release_jax_caches
from mppi_ros.realtime.memory import freeze_heap, release_free_heap, split_retired
from mppi_ros.realtime.scheduling import CycleGate
from mppi_ros.ros.controller.model_checks import check_same_vehicle
from mppi_ros.ros.controller.safe_stop import CommandLimits

# Room (s) a JAX cache-eviction step needs before the next cycle: light ones (one traced
# function) measured <= 2 ms, heavy ones (a whole LRU cache) <= ~6 ms.
CACHE_EVICTION_ROOM_S = {False: 2.5e-3, True: 7.0e-3}
# How long a build waits for its swap before leaving the replaced controller to the next build.
SWAP_WAIT_S = 1.0


@dataclasses.dataclass(frozen=True)
class Build:
    """A background build, ready to swap in: everything the control thread needs, so that
    the swap itself is a few assignments."""

    compiled: CompiledController
    tuning: Any
    cstate: Any
    limits: CommandLimits
    generation: int = 0  # the request it answers (set by ModelSwap)


class ModelSwap:
    """The running controller, the one being built, and the replaced ones not yet freed.

    Args:
        prepare: ``compiled -> Build`` (tuning, initial state, limits), on the build thread;
            raises ValueError for tuning the new model cannot take.
        gate: The control loop's cycle gate.
        logger: The node's logger.
        kept_replaced_steps: Replaced controllers kept (see the node parameter).
    """

    def __init__(
        self,
        prepare: Callable[[CompiledController], Build],
        gate: CycleGate,
        logger: RcutilsLogger,
        kept_replaced_steps: int,
    ) -> None:
        self._prepare, self._gate, self._log = prepare, gate, logger
        self._kept = kept_replaced_steps
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._generation = 0
        self._events: dict[int, threading.Event] = {}
        self._pending: Build | None = None
        self.active: CompiledController | None = None
        self.retired: list[CompiledController] = []
        self.swaps = 0
        self.last_error = ""
        self.failed = False  # a build failed since the node last looked (see take_failure)

    @property
    def compiling(self) -> bool:
        return self._pending is not None or bool(self._events)

    def start(self, active: CompiledController, pool: concurrent.futures.ThreadPoolExecutor):
        """Configure: ``active`` drives; builds run on ``pool``."""
        self.active, self._pool = active, pool

    def release(self) -> None:
        """Cleanup: drops every controller, cancels queued builds and answers their waiters;
        a build still running is superseded (its result is never swapped in)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        with self._lock:
            self._generation += 1
            events, self._events = self._events, {}
            self.active = self._pending = None
        for event in events.values():
            event.set()
        self.retired.clear()
        self.failed, self.last_error = False, ""

    def take_failure(self) -> bool:
        """Whether a build failed since the last call (the node then reverts its parameters)."""
        failed, self.failed = self.failed, False
        return failed

    # ------------------------------------------------------------------ build thread

    def schedule(self, spec: EngineSpec, reason: str) -> threading.Event:
        """Compiles ``spec`` in the background; the next control cycle swaps it in. The event
        is set once it swapped in, failed or was superseded."""
        done = threading.Event()
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._events[generation] = done
        self._pool.submit(self._build, spec, generation, reason).add_done_callback(
            self._on_build_done
        )
        return done

    def _on_build_done(self, future: concurrent.futures.Future) -> None:
        """Logs what a build raised outside its own error handling (a future keeps it quiet)."""
        err = future.exception()
        if err is not None:
            trace = "".join(traceback.format_exception(err))
            self._log.error(f"background build failed unexpectedly:\n{trace}")

    def _build(self, spec: EngineSpec, generation: int, reason: str) -> None:
        with self._lock:
            swapped = self._events.get(generation)
        if swapped is None:  # released (cleanup) before it started
            return
        try:
            compiled = compile_controller(spec)
            check_same_vehicle(compiled, self.active)
            build = dataclasses.replace(self._prepare(compiled), generation=generation)
        except (ValueError, BundleError) as err:
            failure = str(err)
        except Exception as err:  # a background thread: report it, never leave the swap hanging
            failure = f"{type(err).__name__}: {err}"
            self._log.error(f"{reason}: unexpected error\n{traceback.format_exc()}")
        else:
            failure = None
        # What this build's tracing and lowering left in JAX's caches (75-95 MB for a new
        # shape): evicted in steps of <= ~5 ms that fit between two control cycles.
        release_jax_caches(self._make_room)
        if failure is not None:
            self.last_error = f"{reason} failed: {failure}"
            self._log.error(self.last_error)
            self.failed = True  # the node reverts its parameters on the executor thread
            self._answer(generation)
            return
        # The collection holds the GIL: start it as a cycle ends, in the idle rest of a period.
        # A full one: what the evicted caches held in reference cycles would otherwise be
        # frozen for good. It walks only what is not frozen yet (1-2 ms measured).
        self._gate.wait_cycle_end()
        freeze_heap()
        with self._lock:
            superseded = generation != self._generation
            if not superseded:
                self._pending = build
        if superseded:  # by a newer request (or a cleanup)
            self._answer(generation)
            return
        self.free_excess_retired()
        self._gate.wait_cycle_end()
        release_free_heap()
        self._log.info(
            f"{reason}: {compiled.model_id} compiled in {compiled.compile_seconds:.1f} s; swapping"
        )
        if swapped.wait(SWAP_WAIT_S):
            self.free_excess_retired()  # now including the controller this build replaced

    def _answer(self, generation: int) -> None:
        """Wakes whoever waits on request ``generation`` (a reload) without a swap."""
        with self._lock:
            event = self._events.pop(generation, None)
        if event is not None:
            event.set()

    def _make_room(self, heavy: bool) -> None:
        """Waits until the next cache-eviction step fits before the next control cycle."""
        self._gate.wait_for_room(CACHE_EVICTION_ROOM_S[heavy])

    def free_excess_retired(self) -> None:
        """Drops retired controllers whose compiled step a live one shares (that frees only
        their weights), then frees the oldest beyond ``kept_replaced_steps``, each right after
        a control cycle ends (so that it overlaps the idle part of the period); then returns
        the freed memory to the OS."""
        with self._lock:
            live = [c for c in (self.active, self._pending and self._pending.compiled) if c]
            shared, self.retired = split_retired(
                self.retired, lambda old: any(old.shares_step(c) for c in live)
            )
        freed = bool(shared)
        del shared  # outside the lock, which the control thread takes every cycle
        while len(self.retired) > self._kept:
            self._gate.wait_cycle_end()
            with self._lock:
                oldest = self.retired.pop(0)
            name, start = oldest.model_id, time.perf_counter()
            del oldest  # XLA tears the executable down here, holding the GIL
            self._log.info(
                f"freed the replaced step of {name} in {1e3 * (time.perf_counter() - start):.1f} ms"
            )
            freed = True
        if freed:
            self._gate.wait_cycle_end()
            release_free_heap()

    # ------------------------------------------------------------------ control thread

    def take_ready(self, install: Callable[[Build], None]) -> None:
        """Swaps in the build that is ready, if any (control thread, between cycles):
        ``install(build)`` first (its tuning and state), then the controller, then the reply
        to whoever waits for this request."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        install(pending)
        self.retired.append(self.active)  # freed later, off the control thread
        self.active = pending.compiled
        self.swaps += 1
        self.last_error = ""
        self._answer(pending.generation)
