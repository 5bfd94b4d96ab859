"""``mppi-ros demo`` / ``make demo``: simulator, track publisher and controller as separate ROS 2
processes; a monitor resets the car once the controller drives, waits for the laps, prints a
summary and writes a PNG (path coloured by speed, lateral error, loop latency histogram)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.core.tracks import Track, load_track, project
from mppi_ros.ros.graph import (
    F1TENTH_TOPICS,
    GraphSpeed,
    VehicleTopics,
    driving_graph,
    graph_parameters,
)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run (``mppi-ros demo`` options)."""

    track: str = "default"
    controller: str = "step_mppi"
    model_path: str = ""
    laps: int = 3
    control_rate: float = 100.0
    command_type: str | None = None  # None: the vehicle's (array; f1tenth: ackermann)
    initial_speed: float = 0.0
    out_dir: str = "demo_output"
    startup_timeout_s: float = 180.0
    lap_timeout_s: float = 120.0
    controller_params: tuple[tuple[str, Any], ...] = ()
    speed: GraphSpeed = dataclasses.field(default_factory=GraphSpeed)
    record: bool = True  # out_dir/run.mcap
    vehicle: str = "sim"  # or f1tenth: config/f1tenth.yaml, Ackermann on /drive (see graph)


def lateral_errors(track: Track, xy: np.ndarray) -> np.ndarray:
    """Signed distance of each position to the raceline (m)."""
    if len(xy) == 0:
        return np.zeros(0)
    arrays = track.arrays()
    errors = jax.jit(jax.vmap(lambda p: project(arrays, p).lateral_error))(
        jnp.asarray(xy, jnp.float32)
    )
    return np.asarray(errors, np.float64)


def timing_summary(timing: np.ndarray, period: float) -> dict[str, float]:
    """Latency, data age, missed cycles and period jitter from ``~/loop_timing`` records.

    Rows are ``(tick start [wall s], latency [s], data age [s])``, one per control cycle.
    """
    if len(timing) < 2:
        return {}
    starts = np.sort(timing[:, 0])
    gaps = np.diff(starts)
    missed = np.where(gaps > 1.5 * period, np.round(gaps / period) - 1, 0)
    return {
        "cycles": len(timing),
        "latency_p50_ms": float(np.percentile(timing[:, 1], 50) * 1e3),
        "latency_p99_ms": float(np.percentile(timing[:, 1], 99) * 1e3),
        "data_age_p99_ms": float(np.percentile(timing[:, 2], 99) * 1e3),
        "missed_cycles": int(np.sum(missed)),
        "period_jitter_p99_ms": float(np.percentile(np.abs(gaps - period), 99) * 1e3),
        "rate_hz": float((len(starts) - 1) / (starts[-1] - starts[0])),
        # Timer releases the recording spans, counted in periods: the schedule the node kept,
        # whether or not the machine let every cycle run.
        "scheduled_rate_hz": float((len(starts) - 1 + np.sum(missed)) / (starts[-1] - starts[0])),
    }


def run_demo(config: DemoConfig, log=print) -> dict[str, Any]:
    """Runs the demo; returns the summary (also written to ``out_dir/demo.json``)."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    track = load_track(config.track)
    params = graph_parameters(
        config.track,
        config.controller,
        config.control_rate,
        config.command_type,
        config.model_path,
        controller_params=dict(config.controller_params),
        sim_params={"initial_speed": config.initial_speed},
        speed=config.speed,
        vehicle=config.vehicle,
    )
    command_type = params["mppi_controller"]["command_type"]
    topics = F1TENTH_TOPICS if config.vehicle == "f1tenth" else VehicleTopics()
    bag = out / "run.mcap" if config.record else None
    graph = driving_graph(
        params, command_type, out / "logs", config.startup_timeout_s, log, record=bag, topics=topics
    )
    with graph as (processes, monitor):
        started = time.time()
        log(
            f"controller ready ({monitor.diagnostic('mppi_controller').get('model_id')}); "
            f"driving {config.laps} laps of {config.track}"
        )
        deadline = time.monotonic() + config.lap_timeout_s * config.laps
        laps_seen = 0
        while time.monotonic() < deadline:
            sim = monitor.diagnostic("vehicle_simulator")
            laps = int(sim.get("laps", 0))
            if laps > laps_seen:
                laps_seen = laps
                log(f"  lap {laps}: {sim.get('lap_times', '').split(',')[-1]} s")
            if laps >= config.laps or processes.dead():
                break
            time.sleep(0.2)
        time.sleep(0.6)  # one more diagnostics period
        ended = time.time()
        controller_diag = monitor.diagnostic("mppi_controller")
        sim = monitor.diagnostic("vehicle_simulator")
    odom, cmd, timing = monitor.recording.window(started, ended)
    errors = lateral_errors(track, odom[:, 1:3])
    lap_times = [float(t) for t in sim.get("lap_times", "").split(",") if t]
    loop = timing_summary(timing, 1.0 / config.control_rate)
    received = cmd[:, 0]
    command_rate = (
        float((len(received) - 1) / (received[-1] - received[0])) if len(received) > 1 else 0.0
    )
    summary = {
        "track": config.track,
        "controller": config.controller,
        "model_id": controller_diag.get("model_id", ""),
        "speed_profile": config.speed.profile,
        "speed_scale": config.speed.scale,
        "laps_completed": len(lap_times),
        "lap_times_s": lap_times,
        "border_violations": int(sim.get("border_violations", -1)),
        "tracking_error_mean_m": float(np.mean(np.abs(errors))) if len(errors) else None,
        "tracking_error_max_m": float(np.max(np.abs(errors))) if len(errors) else None,
        "command_rate_hz": command_rate,  # as received by the monitor process
        "commands_received": len(received),
        **{f"loop_{k}": v for k, v in loop.items()},
        "exit_codes": processes.exit_codes,
        # The MCAP bag (ros2 bag play / Foxglove) and the messages per topic in it.
        "recording": str(bag) if bag else None,
        "recorded_messages": dict(monitor.recorder.counts) if monitor.recorder else {},
    }
    title = f"{config.controller} ({summary['model_id']}) on {config.track}"
    plot = plot_demo(track, odom, errors, timing, out / "demo.png", title, lap_times, started)
    summary["plot"] = str(plot)
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    laps = ", ".join(f"{t:.2f}" for t in s["lap_times_s"]) or "-"

    def fmt(v: Any, unit: str = "") -> str:
        return "-" if v is None else f"{v:.3f}{unit}" if isinstance(v, float) else f"{v}{unit}"

    return "\n".join(
        [
            f"{s['controller']} ({s['model_id']}) on {s['track']}",
            f"  laps completed      {s['laps_completed']}  (lap times s: {laps})",
            f"  border violations   {s['border_violations']}",
            f"  tracking error      mean {fmt(s['tracking_error_mean_m'], ' m')}, "
            f"max {fmt(s['tracking_error_max_m'], ' m')}",
            f"  control loop        {fmt(s.get('loop_rate_hz'), ' Hz')}, latency p50 "
            f"{fmt(s.get('loop_latency_p50_ms'), ' ms')}, p99 "
            f"{fmt(s.get('loop_latency_p99_ms'), ' ms')}",
            f"  missed cycles       {s.get('loop_missed_cycles', '-')} of "
            f"{s.get('loop_cycles', '-')}",
            f"  plot                {s['plot']}",
        ]
    )


def plot_demo(
    track: Track,
    odom: np.ndarray,
    errors: np.ndarray,
    timing: np.ndarray,
    path: Path,
    title: str = "",
    lap_times: list[float] | None = None,
    started: float | None = None,
) -> Path:
    """The path coloured by speed (0 to the track profile's top speed) with the start line,
    the lateral error over time with lap boundaries, and the latency histogram with its p50
    and p99; ``title`` names the controller, model and track."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.4), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    fig.suptitle(title or track.name)
    left, right = track.border_polylines()
    ax = axes[0]
    for edge in (left, right):
        loop = np.vstack([edge, edge[:1]])
        ax.plot(loop[:, 0], loop[:, 1], color="0.6", lw=0.8)
    ax.plot(track.xy[:, 0], track.xy[:, 1], "k--", lw=0.6, label="raceline")
    ax.plot(*np.c_[left[0], right[0]], color="tab:red", lw=2.0, label="start / finish")
    if len(odom):
        top = max(float(np.max(track.speed)), float(np.max(odom[:, 3])), 1.0)
        sc = ax.scatter(odom[:, 1], odom[:, 2], c=odom[:, 3], s=2, cmap="viridis", vmin=0, vmax=top)
        fig.colorbar(sc, ax=ax, label="speed (m/s)")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("path, coloured by speed")
    ax.legend(loc="upper right")
    ax = axes[1]
    if len(odom):
        ax.plot(odom[:, 0] - odom[0, 0], errors, lw=0.8)
        t0 = odom[0, 0] if started is None else started
        for k, end in enumerate(np.cumsum(lap_times or [])):
            ax.axvline(end + t0 - odom[0, 0], color="tab:red", lw=0.8, ls=":")
            ax.text(end + t0 - odom[0, 0], ax.get_ylim()[1], f" lap {k + 1}", va="top", fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("lateral error (m)")
    ax.set_title("lateral error to the raceline (dotted: lap ends)")
    ax.grid(alpha=0.3)
    ax = axes[2]
    if len(timing):
        latency = timing[:, 1] * 1e3
        ax.hist(latency, bins=60, color="tab:orange")
        for q, style in ((50, "-"), (99, "--")):
            value = float(np.percentile(latency, q))
            ax.axvline(value, color="k", lw=1.0, ls=style, label=f"p{q} {value:.2f} ms")
        ax.legend(loc="upper right")
    ax.set_xlabel("control tick -> command published (ms)")
    ax.set_ylabel("cycles")
    ax.set_yscale("log")
    ax.set_title("control-loop latency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
