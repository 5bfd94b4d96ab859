"""The real-time plumbing (no ROS): the cycle gate, scheduling, the missed-cycle count; and the
benchmark's memory-growth measure and CPU probe."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import weakref

import numpy as np
import pytest

from mppi_ros.realtime.memory import split_retired
from mppi_ros.realtime.scheduling import CycleGate, next_deadline, pin_process
from mppi_ros.ros.bench import (
    EVENT_SETTLE_S,
    missed_in_machine_stalls,
    rss_growth_between,
    stall_summary,
    start_cpu_probe,
)
from mppi_ros.ros.controller.health import LoopStats, rate_fault


def _python_work(stop: threading.Event, progress: list[float]) -> None:
    """Busy Python code, as tracing is: records the time of every iteration."""
    while not stop.is_set():
        progress.append(time.monotonic())
        sum(range(200))


def test_cooperating_thread_parks_during_the_cycle_window():
    """A background thread under ``cooperate()`` runs no Python from ``margin`` before a cycle's
    deadline until the cycle ends, and runs freely between cycles."""
    gate = CycleGate(margin=0.005, max_park=1.0)
    stop, progress = threading.Event(), []

    def background() -> None:
        with gate.cooperate():
            _python_work(stop, progress)

    deadline = time.monotonic() + 0.05
    gate.cycle_ended(deadline)
    worker = threading.Thread(target=background)
    worker.start()
    time.sleep(deadline - time.monotonic() + 0.02)  # the "cycle" runs 20 ms past its deadline
    cycle_end = time.monotonic()
    gate.cycle_ended(cycle_end + 10.0)  # next deadline far away
    time.sleep(0.03)
    stop.set()
    worker.join()

    before = [t for t in progress if t < deadline - 0.005]
    parked = [t for t in progress if deadline - 0.004 < t < cycle_end - 0.001]
    after = [t for t in progress if t > cycle_end]
    assert len(before) > 100 and len(after) > 100  # runs freely outside the window
    assert parked == []  # and not at all inside it


def test_an_overrunning_loop_still_leaves_the_background_a_slice_per_cycle():
    """A loop whose cycles fill their period (the next deadline has passed when a cycle ends)
    leaves no room before the next window; the gate grants the background ``min_slice`` per
    cycle anyway, so a model swap finishes. Without that floor the thread made one Python call
    per cycle (the ONNX backend on a slow CPU never swapped back to JAX)."""
    gate = CycleGate(margin=0.005, max_park=1.0, min_slice=0.002)
    stop, progress = threading.Event(), []
    gate.cycle_ended(time.monotonic())  # the loop is running late from the start
    worker = threading.Thread(target=lambda: _cooperating(gate, stop, progress))
    worker.start()
    cycles = 40
    for _ in range(cycles):
        time.sleep(0.01)  # a cycle as long as the period ...
        gate.cycle_ended(time.monotonic())  # ... so its next deadline is already due
    stop.set()
    gate.stop()
    worker.join()
    # sum(range(200)) takes microseconds: a 2 ms slice runs hundreds of iterations; one
    # Python call per cycle would be about one.
    assert len(progress) > 20 * cycles, len(progress)


def test_stopped_gate_never_parks():
    gate = CycleGate(margin=0.005, max_park=1.0)
    gate.cycle_ended(time.monotonic())  # a deadline now ...
    gate.stop()  # ... but the loop stopped
    stop, progress = threading.Event(), []
    worker = threading.Thread(target=lambda: _cooperating(gate, stop, progress))
    worker.start()
    time.sleep(0.05)
    stop.set()
    worker.join()
    assert len(progress) > 100
    assert max(b - a for a, b in itertools.pairwise(progress)) < 0.5


def test_wait_for_room_waits_for_the_cycle_end_only_when_the_work_would_not_fit():
    """JAX cache evictions run between cycles: one that would reach into the parking window
    waits for the next cycle to end; one that fits, or any with no loop running, goes at once."""
    gate = CycleGate(margin=0.002, max_park=1.0)
    t0 = time.monotonic()
    gate.wait_for_room(1.0)  # no loop yet: never waits
    assert time.monotonic() - t0 < 0.05
    gate.cycle_ended(time.monotonic() + 0.2)  # next deadline in 200 ms
    t0 = time.monotonic()
    gate.wait_for_room(0.05)  # fits before the window
    assert time.monotonic() - t0 < 0.05
    ended_at: list[float] = []

    def end_cycle() -> None:
        time.sleep(0.1)
        ended_at.append(time.monotonic())
        gate.cycle_ended(time.monotonic() + 0.2)

    ender = threading.Thread(target=end_cycle)
    ender.start()
    gate.wait_for_room(0.5)  # would overrun the window: waits for the cycle to end
    returned = time.monotonic()
    ender.join()
    assert ended_at and returned >= ended_at[0]


def _cooperating(gate: CycleGate, stop: threading.Event, progress: list[float]) -> None:
    with gate.cooperate():
        _python_work(stop, progress)


def test_a_hooked_thread_waiting_for_the_cycle_end_cannot_deadlock_the_loop():
    """A background thread with the gate's hook that waits for the cycle end itself (the
    reference build does) while the parking window is open: the hook fires on the event's
    own calls, made under its lock. Parking there waited for that same lock: the thread hung,
    and so did the control thread's next ``cycle_ended`` (a node froze that way)."""
    gate = CycleGate(margin=0.0, max_park=0.001, min_slice=0.0)
    gate.cycle_ended(time.monotonic() - 1.0)  # window open, and no cycle ends meanwhile
    done: list[str] = []

    def background() -> None:
        gate.install()
        for _ in range(5):  # every Python call parks max_park: well under a second
            gate.wait_cycle_end()
            gate.wait_for_room(1.0)
        gate.stop()
        done.append("background")

    worker = threading.Thread(target=background, daemon=True)
    worker.start()
    worker.join(30.0)
    control = threading.Thread(target=gate.cycle_ended, args=(time.monotonic(),), daemon=True)
    control.start()
    control.join(30.0)
    assert done == ["background"] and not control.is_alive()


def test_cooperate_restores_the_previous_profile_hook():
    import sys

    gate = CycleGate()
    seen = []
    hook = lambda frame, event, arg: seen.append(event)
    sys.setprofile(hook)
    try:
        with gate.cooperate():
            assert sys.getprofile() == gate._hook
        assert sys.getprofile() is hook
    finally:
        sys.setprofile(None)


def test_missed_cycles_count_whole_skipped_periods():
    stats = LoopStats(period=0.01)
    for start in (0.0, 0.01, 0.02, 0.05, 0.06, 0.074):
        stats.tick(start)
    # 0.02 -> 0.05 skips two periods; 0.06 -> 0.074 is late (1.4 periods), not missed
    assert stats.missed_cycles == 2
    assert stats.cycles == 6


def _ticks(*spans: tuple[float, float, float]) -> LoopStats:
    """Tick starts over ``(from, to, period)`` spans (s)."""
    stats = LoopStats(period=0.01)
    for first, last, period in spans:
        for t in np.arange(first, last, period):
            stats.tick(float(t))
    return stats


def test_the_rate_guard_brakes_a_starved_loop_and_rides_through_one_stall():
    judge = lambda stats, holding=False: rate_fault(
        stats.tick_starts, stats.tick_starts[-1] + 0.001, 0.01, 0.5, holding
    )
    assert judge(_ticks((0.0, 5.0, 0.01))) is None
    # A third of the rate, sustained: named with what ran.
    fault = judge(_ticks((0.0, 2.0, 0.01), (2.0, 4.0, 0.03)))
    assert fault is not None and fault.startswith("control_overrun: the loop ran 34 of the 100")
    # One 0.4 s stall in a second of full-rate cycles: not a starved loop.
    assert judge(_ticks((0.0, 2.0, 0.01), (2.4, 3.0, 0.01))) is None
    # Just activated at a third of the rate: too few cycles due to judge yet.
    assert judge(_ticks((0.0, 0.05, 0.03))) is None
    # 55 %: above the limit, but inside its recovery margin while the fault holds.
    recovering = _ticks((0.0, 3.0, 0.01 / 0.55))
    assert judge(recovering) is None and judge(recovering, holding=True) is not None
    assert rate_fault(recovering.tick_starts, 3.0, 0.01, 0.0, True) is None  # 0: off
    # Slow cycles that braked for another fault, then full rate since 3.0 s: judged on the
    # full-rate ones alone (all of the last second: a fault).
    braked = _ticks((0.0, 3.0, 0.03), (3.0, 3.2, 0.01))
    assert rate_fault(braked.tick_starts, 3.2, 0.01, 0.5, False, since=3.0) is None
    assert rate_fault(braked.tick_starts, 3.2, 0.01, 0.5, False) is not None


def test_next_deadline_keeps_phase_and_skips_overruns():
    assert next_deadline(1.0, 0.01, 1.005) == 1.01
    # an overrun to 1.034 skips the deadlines already past and keeps the 10 ms phase
    assert abs(next_deadline(1.0, 0.01, 1.034) - 1.04) < 1e-12


def _affinity(tid: int) -> set[int] | None:
    """A thread's CPUs; None when it ended since it was listed (other threads come and go)."""
    try:
        return os.sched_getaffinity(tid)
    except ProcessLookupError:
        return None


def test_pin_process_moves_every_thread_and_rejects_bad_cpu_lists():
    original = os.sched_getaffinity(0)
    ready, stop = threading.Event(), threading.Event()
    worker = threading.Thread(target=lambda: (ready.set(), stop.wait(10.0)))
    worker.start()
    ready.wait()
    target = [min(original)]
    try:
        pin_process(target)
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        assert worker.native_id in tids
        assert all(_affinity(tid) in (set(target), None) for tid in tids)
        assert _affinity(worker.native_id) == set(target)
        with pytest.raises(ValueError, match="empty"):
            pin_process([])
        with pytest.raises(ValueError, match=r"outside this machine's CPUs 0-"):
            pin_process([os.cpu_count() + 3])
        assert os.sched_getaffinity(0) == set(target)  # a rejected list changes nothing
    finally:
        stop.set()
        worker.join()
        pin_process(sorted(original))  # the same call restores: threads may end meanwhile


def test_rss_growth_between_events_leaves_out_the_builds():
    """A step at each event window (a build's new compiled controller) is left out; a steady
    leak between events is counted in full."""
    seconds = np.arange(0.0, 300.0)
    leak_mb_per_s = 0.02
    steps = 40.0 * (seconds >= 100) + 40.0 * (seconds >= 200)
    memory = np.column_stack([seconds, 500.0 + steps + leak_mb_per_s * seconds])
    events = [(99.5, 101.0), (199.5, 201.0)]
    growth = rss_growth_between(memory, events)
    outside = 300 - 2 * (1 + 1 + int(EVENT_SETTLE_S))  # rows not inside a settled window
    assert growth == pytest.approx(leak_mb_per_s * (outside - 3), abs=0.05)
    assert rss_growth_between(memory, []) == pytest.approx(80.0 + leak_mb_per_s * 299)


def test_missed_cycles_in_machine_stalls_counts_only_gaps_the_probe_shared_throughout():
    period = 0.01
    ticks = np.arange(0.0, 2.0, period)
    ticks = np.delete(ticks, [50, 51, 120])  # a 30 ms gap at 0.49 s and a 20 ms one at 1.19 s
    whole_first_gap = [[0.4995, 0.5205]]  # from the missed deadline until the late tick
    assert missed_in_machine_stalls(ticks, whole_first_gap, period) == 2
    assert missed_in_machine_stalls(ticks, [], period) == 0
    # The probe ran again 15 ms before the node did: something inside the node held it.
    assert missed_in_machine_stalls(ticks, [[0.4995, 0.505]], period) == 0
    assert missed_in_machine_stalls(ticks, [[0.0, 2.0]], period) == 3


def test_stall_summary_counts_stalls_longer_than_half_a_period():
    stalls = np.array([[1.0, 1.004], [2.0, 2.006], [3.0, 3.0125]])
    assert stall_summary(stalls, 0.01) == {
        "cpu_stalls_over_half_period": 2,
        "cpu_stall_max_ms": pytest.approx(12.5),
    }
    assert stall_summary(np.zeros((0, 2)), 0.01)["cpu_stalls_over_half_period"] == 0


_BUSY = """
import os, sys, time
os.sched_setaffinity(0, [int(sys.argv[1])])
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
except PermissionError:
    sys.exit(3)
start = time.monotonic()
while time.monotonic() - start < 0.03:
    pass
"""


def test_cpu_probe_records_the_time_a_higher_priority_thread_held_its_cpu():
    # The first CPU: the node tests pin their SCHED_FIFO control thread to the last one, and
    # under pytest-xdist one may run beside this test and starve the probe.
    cpu = min(os.sched_getaffinity(0))
    probe = start_cpu_probe(0.002, [cpu])  # wakes every millisecond
    time.sleep(0.3)  # on-time wake-ups before the busy spell
    busy = subprocess.run([sys.executable, "-c", _BUSY, str(cpu)], timeout=30)
    time.sleep(0.2)
    report = json.loads(probe.communicate("", timeout=10)[0])
    if busy.returncode == 3:
        pytest.skip("SCHED_FIFO is not permitted here (needs root or CAP_SYS_NICE)")
    assert busy.returncode == 0
    lengths = [woke - deadline for deadline, woke in report["stalls"]]
    assert any(0.025 < length < 0.2 for length in lengths), lengths
    assert report["wakeups"] > 300  # one a millisecond for over 0.5 s


class _Step:
    """Stands for a retired compiled controller: only its lifetime matters here."""

    def __init__(self, shared: bool) -> None:
        self.shared = shared


def test_split_retired_keeps_order_and_no_reference_past_the_call():
    retired = [_Step(True), _Step(False), _Step(True), _Step(False)]
    alive = [weakref.ref(step) for step in retired]
    shared, kept = split_retired(retired, lambda step: step.shared)
    assert [s.shared for s in shared] == [True, True] and [s.shared for s in kept] == [False] * 2
    assert shared == retired[0::2] and kept == retired[1::2]
    del retired
    oldest = kept.pop(0)
    del shared, oldest  # a controller's del frees it there and then (refcounting, no gc)
    assert [ref() is None for ref in alive] == [True, True, True, False]


def test_the_pinned_jax_still_has_the_internals_the_realtime_settings_use():
    """Cache release and synchronous dispatch degrade quietly without these internals; a JAX
    upgrade that removes them fails here, loudly."""
    import jax

    from mppi_ros.realtime.jax_runtime import jax_internals_problems

    problems = jax_internals_problems()
    assert not problems, (
        f"JAX {jax.__version__} changed internals that mppi_ros/realtime/jax_runtime.py relies "
        f"on: {problems}. Measure the setting against its removal (MPPI_ROS_REALTIME_OFF, "
        "mppi-ros bench ros) and update or drop it."
    )


def test_the_internals_check_notices_a_missing_cache_registry(monkeypatch):
    from jax._src import util as jax_util

    from mppi_ros.realtime import jax_runtime

    monkeypatch.setattr(jax_util, "_caches", None)
    assert jax_runtime.jax_internals_problems() == [
        "jax._src.util._caches (the registry of JAX's in-memory caches) is gone"
    ]
    assert list(jax_runtime.jax_cache_evictions()) == []  # and the release degrades to nothing


def test_realtime_switches_reject_unknown_names(monkeypatch):
    from mppi_ros.realtime.jax_runtime import release_jax_caches, switched_on

    monkeypatch.setenv("MPPI_ROS_REALTIME_OFF", "cache_release")
    assert not switched_on("cache_release") and switched_on("sync_dispatch")
    assert release_jax_caches() == 0  # off: no eviction step runs
    monkeypatch.setenv("MPPI_ROS_REALTIME_OFF", "gc_freeze")
    with pytest.raises(ValueError, match="valid names: sync_dispatch, cache_release"):
        switched_on("cache_release")
