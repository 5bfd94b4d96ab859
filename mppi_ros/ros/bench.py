"""``mppi-ros bench ros``: the real node graph over DDS, timed from inside the controller node and
checked from a separate subscriber process, with a model swap and two parameter changes
(temperature, num_samples) during the run."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from mppi_ros.core.bundle import LEARNED_CONTROLLERS, shipped_model_path
from mppi_ros.ros.demo import timing_summary
from mppi_ros.ros.graph import (
    Monitor,
    NodeProcesses,
    graph_parameters,
    pick_domain_id,
    wait_until_driving,
)


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


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _missed_between(timing: np.ndarray, start: float, end: float, period: float) -> int:
    rows = timing[(timing[:, 0] >= start) & (timing[:, 0] <= end)]
    return timing_summary(rows, period).get("missed_cycles", 0) if len(rows) > 1 else 0


def run(bench: RosBench, log=print) -> dict[str, Any]:
    """Runs the benchmark; returns the JSON report."""
    period = 1.0 / bench.rate_hz
    log_dir = Path(bench.log_dir or tempfile.mkdtemp(prefix="mppi_bench_ros_"))
    swap_model = ""
    if bench.controller in LEARNED_CONTROLLERS:
        # The swap loads a copy of the shipped bundle from another folder: a real load,
        # validation, compile and warm-up, not a no-op.
        swap_model = str(log_dir / f"swap_{bench.controller}")
        shutil.copytree(shipped_model_path(bench.controller), swap_model, dirs_exist_ok=True)
    domain = pick_domain_id()
    params = graph_parameters(
        bench.track,
        bench.controller,
        bench.rate_hz,
        bench.command_type,
        sim_params={"initial_speed": 0.0},
    )
    processes = NodeProcesses(params, domain, log_dir)
    monitor = Monitor(domain, bench.command_type)
    events: dict[str, tuple[float, float]] = {}
    rss: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample_memory() -> None:
        pid = processes.pid("mppi_controller")
        while not stop.wait(1.0):
            rss.append((time.time(), rss_mb(pid)))

    try:
        wait_until_driving(monitor, processes, 300.0)
        monitor.trigger("/vehicle_simulator/reset")
        started = time.time()
        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        log(f"bench ros: {bench.controller} at {bench.rate_hz:.0f} Hz for {bench.duration_s} s")

        def wait_until(fraction: float) -> None:
            time.sleep(max(started + fraction * bench.duration_s - time.time(), 0.0))

        def swaps() -> int:
            return int(float(monitor.diagnostic("mppi_controller").get("swaps", 0)))

        if bench.events:
            if swap_model:
                wait_until(0.25)
                before, t0 = swaps(), time.time()
                result = monitor.set_parameters("mppi_controller", model_path=swap_model)[0]
                if not result.successful:
                    raise RuntimeError(f"model swap rejected: {result.reason}")
                monitor.wait_for(lambda: swaps() > before, 300.0, "the model swap")
                events["swap"] = (t0, time.time() + 1.0)
            wait_until(0.5)
            t0 = time.time()
            result = monitor.set_parameters("mppi_controller", temperature=0.5)[0]
            if not result.successful:
                raise RuntimeError(f"temperature change rejected: {result.reason}")
            events["temperature"] = (t0, time.time() + 1.0)
            if bench.controller != "dpc":
                wait_until(0.75)
                before, t0 = swaps(), time.time()
                result = monitor.set_parameters("mppi_controller", num_samples=bench.swap_samples)[
                    0
                ]
                if not result.successful:
                    raise RuntimeError(f"num_samples change rejected: {result.reason}")
                monitor.wait_for(lambda: swaps() > before, 300.0, "the num_samples swap")
                events["num_samples"] = (t0, time.time() + 1.0)
        wait_until(1.0)
        ended = time.time()
        stop.set()
        sim = monitor.diagnostic("vehicle_simulator")
        ctrl = monitor.diagnostic("mppi_controller")
    finally:
        stop.set()
        monitor.close()
        processes.stop()
    rec = monitor.recording
    timing = np.array(rec.timing).reshape(-1, 3)
    timing = timing[(timing[:, 0] >= started) & (timing[:, 0] <= ended)]
    loop = timing_summary(timing, period)
    cmd = np.array([(t, s) for t, s in rec.cmd if started <= t <= ended and s is not None])
    observed = {}
    if len(cmd) > 1:
        seen = cmd[:, 0] - cmd[:, 1]  # receipt (wall) - tick stamp (wall, same machine)
        observed = {
            "subscriber_rate_hz": float((len(cmd) - 1) / (cmd[-1, 0] - cmd[0, 0])),
            "subscriber_latency_p50_ms": float(np.percentile(seen, 50) * 1e3),
            "subscriber_latency_p99_ms": float(np.percentile(seen, 99) * 1e3),
        }
    memory = np.array(rss).reshape(-1, 2)
    mark = started + min(60.0, 0.1 * bench.duration_s)
    after_mark = memory[memory[:, 0] >= mark]
    rss_start = float(after_mark[0, 1]) if len(after_mark) else float("nan")
    rss_end = float(memory[-1, 1]) if len(memory) else float("nan")
    report: dict[str, Any] = {
        "controller": bench.controller,
        "model_id": ctrl.get("model_id", ""),
        "duration_s": bench.duration_s,
        "rate_hz": bench.rate_hz,
        "command_type": bench.command_type,
        "latency_p50_ms": loop.get("latency_p50_ms"),
        "latency_p99_ms": loop.get("latency_p99_ms"),
        "data_age_p99_ms": loop.get("data_age_p99_ms"),
        "missed_cycles": loop.get("missed_cycles"),
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
        "laps": int(sim.get("laps", 0)),
        "border_violations": int(sim.get("border_violations", -1)),
        "faults": int(ctrl.get("faults", 0)),
        "logs": str(log_dir),
    }
    return report
