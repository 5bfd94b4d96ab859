"""`mppi-ros bench circuits`: every named controller on a set of held-out circuits, each from
a standing start, following the speed profile.

By default the circuits are generated (``circuit:SEED`` for seeds ``first_seed ..``; training
uses seeds 1000-1239 and validation 5000-5007, so the default 9000.. are never trained on);
``--track`` (repeatable) runs any raceline / centerline CSV instead.

JSON: ``{"circuits", "speed_scale", "friction_scale", "circuit_stats": {circuit: {...}},
"results": {controller: [{"circuit", "completed", "border_violations", "lap_time_s",
"ideal_lap_time_s", "lap_time_ratio", "tracking_error_mean_m", "tracking_error_p95_m",
"tracking_error_max_m", "step_time_p50_ms", "step_time_p99_ms", "stop_reason"}]},
"summary": {controller: {"completed", "total", "completion_rate", "median_lap_time_ratio",
"median_tracking_error_mean_m", "border_violations"}}}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mppi_ros.bench.closed_loop import build_controller
from mppi_ros.bench.reference import (
    DEFAULT_CIRCUIT_CONTROLLERS,
    FIRST_HELD_OUT_SEED,
    speed_settings,
)
from mppi_ros.core.policy import make_policy_step
from mppi_ros.core.speed import SpeedSettings
from mppi_ros.core.tracks import CIRCUIT_PREFIX, Track, circuit_stats, resample_track
from mppi_ros.sim import SimConfig, SimResult, run_closed_loop


@dataclasses.dataclass(frozen=True)
class CircuitBench:
    """What to run (see the module docstring); ``speed`` sets the reference law."""

    controllers: tuple[str, ...] = DEFAULT_CIRCUIT_CONTROLLERS
    circuits: int = 20
    first_seed: int = FIRST_HELD_OUT_SEED
    tracks: tuple[str, ...] = ()
    speed: SpeedSettings = dataclasses.field(default_factory=lambda: SpeedSettings(profile="track"))
    friction_scale: float = 1.0
    laps: int = 1
    plant_dt: float = 0.01
    control_period: float = 0.05
    steer_delay_steps: int = 2
    horizon: int | None = None
    seed: int = 0

    def circuit_specs(self) -> list[str]:
        if self.tracks:
            return list(self.tracks)
        return [
            f"{CIRCUIT_PREFIX}{s}" for s in range(self.first_seed, self.first_seed + self.circuits)
        ]


def _result_row(name: str, res: SimResult, ideal: float, laps: int) -> dict[str, Any]:
    summary = res.summary()
    completed = res.laps_completed >= laps
    lap_time = summary["lap_time_s"]
    return {
        "circuit": name,
        "completed": bool(completed),
        "border_violations": summary["border_violations"],
        "lap_time_s": lap_time,
        "ideal_lap_time_s": round(ideal, 3),
        "lap_time_ratio": round(lap_time / ideal, 4) if completed and lap_time else None,
        "tracking_error_mean_m": summary["tracking_error_mean_m"],
        "tracking_error_p95_m": summary["tracking_error_p95_m"],
        "tracking_error_max_m": summary["tracking_error_max_m"],
        "step_time_p50_ms": summary["step_time_p50_ms"],
        "step_time_p99_ms": summary["step_time_p99_ms"],
        "stop_reason": res.stop_reason,
    }


def shared_policy_step(ctrl: Any):
    """``ctrl``'s jitted policy step with the track as an argument (one compile per size)."""
    return jax.jit(lambda c, x, t, k, arrays: make_policy_step(ctrl, arrays)(c, x, t, k))


def policy_on_track(shared, arrays, cstate, x, tuning, key):
    """A :func:`shared_policy_step` bound to one track (``functools.partial`` the first two)."""
    return shared(cstate, x, tuning, key, arrays)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Completion rate, median lap-time ratio and median mean error of one controller."""
    done = [r for r in rows if r["completed"]]
    ratios = [r["lap_time_ratio"] for r in done if r["lap_time_ratio"] is not None]
    errors = [r["tracking_error_mean_m"] for r in rows if r["tracking_error_mean_m"] is not None]
    return {
        "completed": len(done),
        "total": len(rows),
        "completion_rate": round(len(done) / len(rows), 4) if rows else None,
        "clean": sum(1 for r in done if r["border_violations"] == 0),
        "median_lap_time_ratio": float(np.median(ratios)) if ratios else None,
        "median_tracking_error_mean_m": float(np.median(errors)) if errors else None,
        "border_violations": int(sum(r["border_violations"] for r in rows)),
    }


def run(
    bench: CircuitBench, progress: bool = False
) -> tuple[dict[str, Any], dict[str, dict[str, SimResult]], dict[str, Track]]:
    """Runs every controller on every circuit; returns the JSON dict, the raw results
    (controller -> circuit -> result) and the tracks as run."""
    specs = bench.circuit_specs()
    originals = {t.name: t for t in (bench.speed.load(spec) for spec in specs)}
    stats = {name: circuit_stats(t) for name, t in originals.items()}
    ideal = {name: bench.speed.ideal_lap_time(t) for name, t in originals.items()}
    # One point count for all: every controller compiles its step once for the whole set.
    points = max(len(t.xy) for t in originals.values())
    tracks = {name: resample_track(t, points) for name, t in originals.items()}
    sim = SimConfig(
        plant_dt=bench.plant_dt,
        control_period=bench.control_period,
        command_delay_steps=(bench.steer_delay_steps, 0),
        friction_scale=bench.friction_scale,
        laps=bench.laps,
        initial_speed=0.0,
        seed=bench.seed,
    )
    results: dict[str, list[dict[str, Any]]] = {}
    raw: dict[str, dict[str, SimResult]] = {}
    for entry in bench.controllers:
        ctrl = build_controller(entry, None, bench.horizon, bench.control_period)
        tuning = bench.speed.tuning(ctrl.default_tuning())
        shared = shared_policy_step(ctrl)
        rows, raw[entry] = [], {}
        for name, track in tracks.items():
            policy = functools.partial(policy_on_track, shared, track.arrays())
            res = run_closed_loop(ctrl, track, tuning, sim, policy_step=policy)
            raw[entry][name] = res
            row = _result_row(name, res, ideal[name], bench.laps)
            rows.append(row)
            if progress:
                print(
                    f"{entry:>16} {name:>14}: {row['stop_reason']}, "
                    f"{row['border_violations']} violations, ratio {row['lap_time_ratio']}",
                    flush=True,
                )
        results[entry] = rows
    report = {
        "circuits": list(tracks),
        "speed_profile": bench.speed.profile,
        "speed_scale": bench.speed.scale,
        "friction_scale": bench.friction_scale,
        "circuit_stats": stats,
        "config": {
            "controllers": list(bench.controllers),
            "laps": bench.laps,
            "plant_dt": bench.plant_dt,
            "control_period": bench.control_period,
            "steer_delay_steps": bench.steer_delay_steps,
            "raceline": bench.speed.raceline,
            "reference_speed": bench.speed.reference_speed,
        },
        "results": results,
        "summary": {entry: summarise(rows) for entry, rows in results.items()},
    }
    return report, raw, tracks


def bench_from_args(args: argparse.Namespace) -> CircuitBench:
    if args.circuits < 1 and not args.track:
        raise ValueError("--circuits must be >= 1")
    return CircuitBench(
        controllers=tuple(args.controllers),
        circuits=args.circuits,
        first_seed=args.first_seed,
        tracks=tuple(args.track),
        speed=speed_settings(args),
        friction_scale=args.friction_scale,
        laps=args.laps,
        plant_dt=args.plant_dt,
        control_period=args.control_period,
        steer_delay_steps=args.steer_delay_steps,
        horizon=args.horizon,
        seed=args.seed,
    )


def plot_grid(
    raw: dict[str, dict[str, SimResult]], tracks: dict[str, Track], path: str | Path
) -> Path:
    """One panel per (controller, circuit): the road, the path coloured by speed, and a red
    cross where the car left the road or the run stopped short."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(tracks)
    rows = list(raw)
    fig, axes = plt.subplots(
        len(rows), len(names), figsize=(2.4 * len(names), 2.6 * len(rows)), squeeze=False
    )
    vmax = max(
        (
            float(np.max(r.states[:, 3]))
            for runs in raw.values()
            for r in runs.values()
            if len(r.states)
        ),
        default=1.0,
    )
    scatter = None
    for i, entry in enumerate(rows):
        for j, name in enumerate(names):
            ax = axes[i][j]
            left, right = tracks[name].border_polylines()
            for edge in (left, right):
                loop = np.vstack([edge, edge[:1]])
                ax.plot(loop[:, 0], loop[:, 1], color="0.6", lw=0.5)
            res = raw[entry][name]
            if len(res.states):
                scatter = ax.scatter(
                    res.states[:, 0],
                    res.states[:, 1],
                    c=res.states[:, 3],
                    s=0.6,
                    cmap="viridis",
                    vmin=0.0,
                    vmax=vmax,
                )
                over = np.flatnonzero(res.violation > 0)
                if len(over):
                    ax.plot(*res.states[over[0], :2], "rx", ms=7, mew=2)
                if res.stop_reason != "laps_completed":
                    ax.plot(*res.states[-1, :2], "kx", ms=8, mew=2)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            status = "ok" if res.stop_reason == "laps_completed" else res.stop_reason
            ax.set_title(f"{name}\n{status}, {res.border_violations} viol.", fontsize=7)
            if j == 0:
                ax.set_ylabel(entry, fontsize=9)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes, shrink=0.6, label="speed (m/s)")
    fig.suptitle(
        "bench circuits: standing start, speed profile "
        "(red x: first border violation; black x: stop)"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
