"""``mppi-ros bench ros``: the real node graph over DDS, timed from inside the controller node and
checked from a separate subscriber process, with a model swap and two parameter changes
(temperature, num_samples) during the run."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from mppi_ros.core.catalog import controller_spec, shipped_model_path
from mppi_ros.ros.controller_node import PARAMETERS
from mppi_ros.ros.demo import timing_summary
from mppi_ros.ros.graph import GraphSpeed, driving_graph, graph_parameters


@dataclasses.dataclass(frozen=True)
class RosBench:
    """Settings of ``mppi-ros bench ros``."""

    duration_s: float = 60.0
    rate_hz: float = 100.0
    controller: str = "step_mppi"
    track: str = "default"
    command_type: str = "twist_stamped"  # stamped, so a subscriber can check the timing
    events: bool = True
    swap_samples: int = 512
    log_dir: str | None = None
    backend: str = "jax"
    # CPUs of the controller node; the other processes run on the rest. "auto": the last
    # CPU when there are at least two; () inherits (no pinning).
    controller_cpus: tuple[int, ...] | str = "auto"
    # Extra controller parameters (name, value), applied on top of the shipped config.
    controller_params: tuple[tuple[str, Any], ...] = ()
    # Heap allocator of the controller process (mppi_ros.realtime.memory.ALLOCATORS).
    allocator: str = "auto"
    speed: GraphSpeed = dataclasses.field(default_factory=GraphSpeed)
    # An MCAP bag of the run (as mppi-ros demo writes it); off by default: the recorded
    # prediction and step inputs are work the controller does only while someone listens.
    record: str | None = None
    # From the run's midpoint a subscriber takes ~/candidates (MarkerArray): the report then
    # compares the loop's latency without and with it (event windows left out).
    candidates_subscriber: bool = False

    def cpu_split(self) -> tuple[list[int], list[int]] | None:
        """``(controller CPUs, CPUs of everything else)``, or None for no pinning."""
        available = sorted(os.sched_getaffinity(0))
        cpus = self.controller_cpus
        if cpus == "auto":
            cpus = available[-1:] if len(available) >= 2 else ()
        if not cpus:
            return None
        others = [c for c in available if c not in cpus]
        if not others:
            raise ValueError(f"controller CPUs {list(cpus)} leave none for the other processes")
        return list(cpus), others


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


EVENT_SETTLE_S = 10.0


def rss_growth_between(memory: np.ndarray, events: list[tuple[float, float]]) -> float:
    """Resident-memory growth (MB) of ``memory`` rows ``(wall s, MB)`` summed over the spans
    outside the event windows (each extended by :data:`EVENT_SETTLE_S`), so the memory a
    build adds on purpose (a new compiled controller) is left out."""
    inside = np.zeros(len(memory), bool)
    for start, end in events:
        inside |= (memory[:, 0] >= start) & (memory[:, 0] <= end + EVENT_SETTLE_S)
    # Steps between two consecutive samples that are both outside every window.
    outside_steps = ~inside[1:] & ~inside[:-1]
    return float(np.sum(np.diff(memory[:, 1])[outside_steps]))


def _missed_between(timing: np.ndarray, start: float, end: float, period: float) -> int:
    rows = timing[(timing[:, 0] >= start) & (timing[:, 0] <= end)]
    return timing_summary(rows, period).get("missed_cycles", 0) if len(rows) > 1 else 0


# The CPU probe (mppi_ros.ros.cpu_probe) wakes every half control period, so that any stall
# long enough to make a cycle miss holds at least one of its wake-ups, and records wake-ups
# later than a tenth of a period (1 ms at 100 Hz: after a stall it also waits for the node's
# cycle, which runs first). Faster probes made the node's own timing worse: at 1 kHz its
# period jitter p99 rose from ~0.1 to 0.64 ms and its latency p99 past 2 ms.
PROBE_PERIODS = 0.5
PROBE_RECORD_PERIODS = 0.1


def missed_in_machine_stalls(ticks: np.ndarray, stalls: list, period: float) -> int:
    """Missed cycles of the tick times ``ticks`` (wall s) whose whole delay a stall of the CPU
    probe (``[[deadline, woke], ...]``) covers: from the missed deadline (within one probe
    period) until the late tick started, not even the probe could run, so nothing in the node
    (a held GIL, a lock) caused it."""
    count = 0
    for before, after in itertools.pairwise(ticks):
        gap = after - before
        if gap <= 1.5 * period:
            continue
        deadline = before + period
        if any(
            start <= deadline + PROBE_PERIODS * period
            and woke >= after - PROBE_RECORD_PERIODS * period
            for start, woke in stalls
        ):
            count += round(gap / period) - 1
    return count


def stall_summary(stalls: np.ndarray, period: float) -> dict[str, float]:
    """The CPU probe's stalls as report keys: how many lasted over half a control period
    (enough to make a cycle late past 1.5 periods, a missed cycle) and the longest (ms)."""
    lengths = stalls[:, 1] - stalls[:, 0] if len(stalls) else np.zeros(0)
    return {
        "cpu_stalls_over_half_period": int(np.sum(lengths > 0.5 * period)),
        "cpu_stall_max_ms": float(1e3 * lengths.max()) if len(lengths) else 0.0,
    }


def start_cpu_probe(period: float, cpus: list[int] | None) -> subprocess.Popen:
    """Starts :mod:`mppi_ros.ros.cpu_probe` for a control ``period`` on ``cpus`` (the
    controller's, so that it sees the stalls of the CPU the node runs on; None: inherited);
    returns once it runs. Close its stdin to stop it; its last stdout line is the report."""
    args = [str(PROBE_PERIODS * period), str(PROBE_RECORD_PERIODS * period)]
    if cpus:
        args.append(",".join(map(str, cpus)))
    process = subprocess.Popen(
        [sys.executable, "-m", "mppi_ros.ros.cpu_probe", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError("the CPU probe did not start")
    return process


def cpu_steal_ms() -> dict[int, float]:
    """Milliseconds each CPU has been runnable but not run by the hypervisor (``steal`` in
    ``/proc/stat``); empty where the kernel does not report it."""
    ticks = os.sysconf("SC_CLK_TCK")
    steal: dict[int, float] = {}
    with contextlib.suppress(OSError):
        with open("/proc/stat") as stat:
            for line in stat:
                fields = line.split()
                if fields[0].startswith("cpu") and fields[0] != "cpu" and len(fields) > 8:
                    steal[int(fields[0][3:])] = 1e3 * int(fields[8]) / ticks
    return steal


def _steal_between(before: dict[int, float], after: dict[int, float], cpus) -> float | None:
    cpus = [c for c in cpus if c in before and c in after]
    return sum(after[c] - before[c] for c in cpus) if cpus else None


@contextlib.contextmanager
def _running_on(cpus: list[int] | None):
    """The calling thread (and what it spawns) on ``cpus`` meanwhile (None: unchanged)."""
    original = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, original)


def run(bench: RosBench, log=print) -> dict[str, Any]:
    """Runs the benchmark; returns the JSON report."""
    period = 1.0 / bench.rate_hz
    log_dir = Path(bench.log_dir or tempfile.mkdtemp(prefix="mppi_bench_ros_"))
    swap_model = ""
    spec = controller_spec(bench.controller)
    if spec.shipped:
        # The swap loads a copy of the shipped bundle from another folder: a real load,
        # validation and warm-up, not a no-op (the compiled step is shared: same architecture).
        swap_model = str(log_dir / f"swap_{bench.controller}")
        shutil.copytree(shipped_model_path(bench.controller), swap_model, dirs_exist_ok=True)
    unknown = sorted({name for name, _ in bench.controller_params} - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown controller parameter(s) {unknown}; valid: {sorted(PARAMETERS)}")
    controller_params: dict[str, Any] = {"backend": bench.backend, **dict(bench.controller_params)}
    split = bench.cpu_split()
    if split is not None:
        controller_params["cpu_affinity"] = split[0]
    params = graph_parameters(
        bench.track,
        bench.controller,
        bench.rate_hz,
        bench.command_type,
        controller_params=controller_params,
        sim_params={"initial_speed": 0.0},
        speed=bench.speed,
    )
    events: dict[str, tuple[float, float]] = {}
    rss: list[tuple[float, float]] = []
    stop = threading.Event()

    with (
        _running_on(split[1] if split else None),  # the nodes inherit it at spawn
        driving_graph(
            params,
            bench.command_type,
            log_dir,
            300.0,
            allocator=bench.allocator,
            record=Path(bench.record) if bench.record else None,
        ) as (processes, monitor),
    ):
        started = time.time()
        pid = processes.pid("mppi_controller")

        def sample_memory() -> None:
            while not stop.wait(1.0):
                rss.append((time.time(), rss_mb(pid)))

        threading.Thread(target=sample_memory, daemon=True).start()
        probe = start_cpu_probe(period, split[0] if split else None)
        steal_before = cpu_steal_ms()
        log(f"bench ros: {bench.controller} at {bench.rate_hz:.0f} Hz for {bench.duration_s} s")

        def wait_until(fraction: float) -> None:
            time.sleep(max(started + fraction * bench.duration_s - time.time(), 0.0))

        def swaps() -> int:
            return int(float(monitor.diagnostic("mppi_controller").get("swaps", 0)))

        def build_error() -> str:
            return monitor.diagnostic("mppi_controller").get("last_error", "")

        def swapped_since(before: int, error_before: str, label: str) -> bool:
            """True once a swap happened; a new background-build error fails at once
            instead of waiting out the time-out."""
            error = build_error()
            if error and error != error_before:
                raise RuntimeError(f"{label}: the controller rejected the new build: {error}")
            return swaps() > before

        def change(label: str, fraction: float, swap: bool, **values: Any) -> None:
            """At ``fraction`` of the run, sets ``values``; records the event window (until
            the swap when ``swap``, plus 1 s)."""
            wait_until(fraction)
            before, error_before, t0 = swaps(), build_error(), time.time()
            result = monitor.set_parameters("mppi_controller", **values)[0]
            if not result.successful:
                raise RuntimeError(f"{label} rejected: {result.reason}")
            if swap:
                monitor.wait_for(lambda: swapped_since(before, error_before, label), 300.0, label)
            events[label] = (t0, time.time() + 1.0)

        at = started + 0.5 * bench.duration_s if bench.candidates_subscriber else None
        candidates = _CandidatesListener(monitor, at)
        if bench.events:
            if swap_model:
                change("swap", 0.25, True, model_path=swap_model)
            change("temperature", 0.5, False, temperature=0.5)
            if spec.samples:
                change("num_samples", 0.75, True, num_samples=bench.swap_samples)
        wait_until(1.0)
        candidates.close()
        ended = time.time()
        steal_after = cpu_steal_ms()
        stop.set()
        probed = json.loads(probe.communicate("", timeout=10.0)[0])
        sim = monitor.diagnostic("vehicle_simulator")
        ctrl = monitor.diagnostic("mppi_controller")
    _, cmd, timing = monitor.recording.window(started, ended)
    np.savetxt(
        log_dir / "loop_timing.csv",
        timing,
        delimiter=",",
        header="tick_wall_s,latency_s,data_age_s",
        comments="",
    )
    loop = timing_summary(timing, period)
    cmd = cmd[~np.isnan(cmd[:, 1])]
    observed = {}
    if len(cmd) > 1:
        seen = cmd[:, 0] - cmd[:, 1]  # receipt (wall) - tick stamp (wall, same machine)
        observed = {
            "subscriber_rate_hz": float((len(cmd) - 1) / (cmd[-1, 0] - cmd[0, 0])),
            "subscriber_latency_p50_ms": float(np.percentile(seen, 50) * 1e3),
            "subscriber_latency_p99_ms": float(np.percentile(seen, 99) * 1e3),
        }
    memory = np.array(rss).reshape(-1, 2)
    np.savetxt(log_dir / "rss.csv", memory, delimiter=",", header="wall_s,rss_mb", comments="")
    stalls = np.array(probed["stalls"], dtype=float).reshape(-1, 2)
    header = "deadline_wall_s,woke_wall_s"  # the CPU probe's stalls, to line up with the ticks
    np.savetxt(log_dir / "cpu_stalls.csv", stalls, delimiter=",", header=header, comments="")
    mark = started + min(60.0, 0.1 * bench.duration_s)
    after_mark = memory[memory[:, 0] >= mark]
    rss_start = float(after_mark[0, 1]) if len(after_mark) else float("nan")
    rss_end = float(memory[-1, 1]) if len(memory) else float("nan")
    between_events = rss_growth_between(after_mark, list(events.values()))
    report: dict[str, Any] = {
        "controller": bench.controller,
        "backend": bench.backend,
        "model_id": ctrl.get("model_id", ""),
        "duration_s": bench.duration_s,
        "rate_hz": bench.rate_hz,
        "command_type": bench.command_type,
        "controller_cpus": split[0] if split else None,
        "controller_params": dict(bench.controller_params),
        "latency_p50_ms": loop.get("latency_p50_ms"),
        "latency_p99_ms": loop.get("latency_p99_ms"),
        "data_age_p99_ms": loop.get("data_age_p99_ms"),
        "missed_cycles": loop.get("missed_cycles"),
        **stall_summary(stalls, period),
        # Time the hypervisor held the controller's CPUs (and the others') during the run.
        "steal_ms_controller_cpus": _steal_between(
            steal_before, steal_after, split[0] if split else sorted(os.sched_getaffinity(0))
        ),
        "steal_ms_other_cpus": _steal_between(steal_before, steal_after, split[1])
        if split
        else None,
        "missed_cycles_in_machine_stalls": missed_in_machine_stalls(timing[:, 0], stalls, period),
        "period_jitter_p99_ms": loop.get("period_jitter_p99_ms"),
        "measured_rate_hz": loop.get("rate_hz"),
        "cycles": loop.get("cycles"),
        "swap_missed_cycles": _missed_between(timing, *events["swap"], period)
        if "swap" in events
        else None,
        "param_change_missed_cycles": sum(
            _missed_between(timing, *events[k], period)
            for k in ("temperature", "num_samples")
            if k in events
        )
        if bench.events
        else None,
        "swap_seconds": events["swap"][1] - 1.0 - events["swap"][0] if "swap" in events else None,
        **observed,
        "stamps_consistent": bool(
            observed and observed["subscriber_latency_p50_ms"] >= loop.get("latency_p50_ms", 0)
        ),
        "rss_mb_start": rss_start,
        "rss_mb_end": rss_end,
        "rss_growth_pct": 100.0 * (rss_end - rss_start) / rss_start if rss_start else None,
        # Growth outside the builds (the swap, num_samples): what a leak would show.
        "rss_growth_between_events_pct": 100.0 * between_events / rss_start if rss_start else None,
        "laps": int(sim.get("laps", 0)),
        "border_violations": int(sim.get("border_violations", -1)),
        "faults": int(ctrl.get("faults", 0)),
        "kept_steps": int(ctrl.get("kept_steps", 0)),
        "allocator": ctrl.get("allocator", ""),  # as the node reports it
        "logs": str(log_dir),
        "recording": bench.record,
        "recorded_messages": dict(monitor.recorder.counts) if monitor.recorder else {},
    }
    if bench.candidates_subscriber:
        middle = started + 0.5 * bench.duration_s
        quiet = _outside(timing, list(events.values()))
        halves = {"without": quiet[quiet[:, 0] < middle], "with": quiet[quiet[:, 0] >= middle]}
        report["candidates_comparison"] = {
            f"{name}_subscriber": {k: timing_summary(rows, period).get(k) for k in COMPARED_KEYS}
            for name, rows in halves.items()
        }
        report["candidates_received"] = candidates.received
    return report


class _CandidatesListener:
    """Subscribes the monitor to ``/mppi_controller/candidates`` from wall time ``at`` (a
    timer thread; None: never) until :meth:`close`; counts the messages."""

    def __init__(self, monitor: Any, at: float | None) -> None:
        self.received, self._monitor, self._sub = 0, monitor, None
        self._timer = None
        if at is not None:
            self._timer = threading.Timer(max(at - time.time(), 0.0), self._subscribe)
            self._timer.start()

    def _subscribe(self) -> None:
        from visualization_msgs.msg import MarkerArray

        def count(_: Any) -> None:
            self.received += 1

        topic = f"/{self._monitor.controller}/candidates"
        self._sub = self._monitor.node.create_subscription(MarkerArray, topic, count, 1)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._sub is not None:
            self._monitor.node.destroy_subscription(self._sub)


def _outside(timing: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
    """Rows of ``timing`` whose tick lies outside every window (each plus EVENT_SETTLE_S)."""
    keep = np.ones(len(timing), bool)
    for start, end in windows:
        keep &= ~((timing[:, 0] >= start) & (timing[:, 0] <= end + EVENT_SETTLE_S))
    return timing[keep]


COMPARED_KEYS = ("latency_p50_ms", "latency_p99_ms", "data_age_p99_ms", "missed_cycles")


def run_compared(bench: RosBench, log=print) -> dict[str, Any]:
    """:func:`run`; for a backend other than jax, then the same run on jax, with the ratios
    (this machine is shared and noisy: only same-run ratios compare backends)."""
    report = run(bench, log)
    if bench.backend == "jax":
        return report
    sub_dir = None if bench.log_dir is None else str(Path(bench.log_dir) / "jax_reference")
    reference = run(dataclasses.replace(bench, backend="jax", log_dir=sub_dir, record=None), log)
    report["jax_reference"] = {k: reference.get(k) for k in COMPARED_KEYS}
    for key in ("latency_p50_ms", "latency_p99_ms"):
        ours, theirs = report.get(key), reference.get(key)
        report[f"{key[:-3]}_ratio_to_jax"] = ours / theirs if ours and theirs else None
    return report
