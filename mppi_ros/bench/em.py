"""`mppi-ros bench em`: EM-MPPI over a grid of sample counts x EM iterations x sampling
families, beside classic MPPI at the same sample counts, in closed loop on the vehicle.

Tracks: the built-in tracks at a constant reference speed (flying start) and the held-out
circuit suite (``circuit:SEED`` from :data:`FIRST_HELD_OUT_SEED`, standing start, the circuit's
speed profile times ``circuit_speed_scale``). One lap each; plant and loop as
``bench closed-loop`` (RK4 at 0.01 s, 2-step steering delay, control every 0.05 s).

Each grid point compiles once (``max_em_iterations`` = its iteration count, so the noise drawn
per step is what those iterations use) and drives every track. Rows are written to the JSON
after each run, and ``resume`` skips the rows already there, so a long grid survives a stop.

JSON: ``{"config": {...}, "results": [{"controller", "family", "num_samples", "iterations",
"track", "laps_completed", "border_violations", "tracking_error_mean_m",
"step_time_p50_ms"}], "summary": [{"controller", "family", "num_samples", "iterations",
"tracks", "laps_completed", "border_violations", "tracking_error_mean_m",
"step_time_p50_ms", "pareto"}]}`` (summary: error and step time are medians over the tracks;
``family`` and ``iterations`` are null for classic MPPI).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mppi_ros.bench.circuits import policy_on_track, shared_policy_step
from mppi_ros.bench.reference import FIRST_HELD_OUT_SEED
from mppi_ros.core.catalog import controller_for
from mppi_ros.core.controllers import with_replan_period
from mppi_ros.core.controllers.em_mppi import FAMILIES, em_tuning
from mppi_ros.core.speed import SpeedSettings
from mppi_ros.core.tracks import CIRCUIT_PREFIX, Track, resample_track
from mppi_ros.sim import SimConfig, run_closed_loop

BUILT_IN_TRACKS = ("default", "sprint", "endurance")
GRID_KEYS = ("controller", "family", "num_samples", "iterations")


@dataclasses.dataclass(frozen=True)
class EMBench:
    """What to run (see the module docstring)."""

    num_samples: tuple[int, ...] = (128, 512, 2048, 8192)
    iterations: tuple[int, ...] = (1, 2, 4)
    families: tuple[str, ...] = FAMILIES
    classic: bool = True
    tracks: tuple[str, ...] = BUILT_IN_TRACKS
    reference_speed: float = 10.0
    circuits: int = 20
    first_seed: int = FIRST_HELD_OUT_SEED
    circuit_speed_scale: float = 0.9
    laps: int = 1
    plant_dt: float = 0.01
    control_period: float = 0.05
    steer_delay_steps: int = 2
    horizon: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown family {sorted(unknown)}; valid: {', '.join(FAMILIES)}")
        if min(self.num_samples, default=1) < 1 or min(self.iterations, default=1) < 1:
            raise ValueError("sample counts and iteration counts must be >= 1")

    def grid(self) -> Iterator[dict[str, Any]]:
        """The controller configurations, cheapest first within each sample count."""
        for k in self.num_samples:
            if self.classic:
                yield dict(controller="mppi", family=None, num_samples=k, iterations=None)
            for family in self.families:
                for iterations in self.iterations:
                    yield dict(
                        controller="em_mppi", family=family, num_samples=k, iterations=iterations
                    )

    def track_settings(self) -> list[tuple[str, SpeedSettings, float | None]]:
        """``(track spec, speed law, initial speed)``: built-in tracks flying at the constant
        speed, circuits from a standing start on their profile."""
        constant = SpeedSettings(profile="constant", reference_speed=self.reference_speed)
        circuit = SpeedSettings(profile="track", scale=self.circuit_speed_scale)
        runs: list[tuple[str, SpeedSettings, float | None]] = [
            (name, constant, None) for name in self.tracks
        ]
        seeds = range(self.first_seed, self.first_seed + self.circuits)
        runs += [(f"{CIRCUIT_PREFIX}{s}", circuit, 0.0) for s in seeds]
        return runs


def build(point: dict[str, Any], bench: EMBench):
    """The controller of one grid point, replanning every control period."""
    overrides: dict[str, Any] = {}
    if point["controller"] == "em_mppi":
        overrides = dict(family=point["family"], max_em_iterations=point["iterations"])
    ctrl = controller_for(point["controller"], point["num_samples"], bench.horizon, **overrides)
    return with_replan_period(ctrl, bench.control_period)


def _tuning(ctrl, point: dict[str, Any], speed: SpeedSettings):
    tuning = speed.tuning(ctrl.default_tuning())
    if point["iterations"] is not None:
        tuning = em_tuning(tuning, em_iterations=point["iterations"])
    return tuning


def _row_key(row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in (*GRID_KEYS, "track"))


def run(
    bench: EMBench,
    out: str | Path,
    resume: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Runs the grid, writing ``out`` (JSON) after every row; returns the report."""
    out = Path(out)
    rows: list[dict[str, Any]] = []
    if resume and out.exists():
        rows = json.loads(out.read_text())["results"]
    done = {_row_key(r) for r in rows}
    settings = bench.track_settings()
    loaded = {spec: speed.load(spec) for spec, speed, _ in settings}
    points = max(len(t.xy) for t in loaded.values())  # one compile per controller
    tracks = {spec: resample_track(t, points) for spec, t in loaded.items()}
    for point in bench.grid():
        todo = [s for s in settings if _row_key({**point, "track": s[0]}) not in done]
        if not todo:
            continue
        ctrl = build(point, bench)
        shared = shared_policy_step(ctrl)
        for spec, speed, initial in todo:
            rows.append(_drive(bench, point, ctrl, shared, tracks[spec], speed, initial, spec))
            _write(out, bench, rows)
            r = rows[-1]
            log(
                f"{point['controller']:>8} {point['family'] or '-':>17} K={point['num_samples']:<5}"
                f" it={point['iterations'] or '-'} {spec:>13}: laps {r['laps_completed']}, "
                f"{r['border_violations']} viol., error {r['tracking_error_mean_m']} m, "
                f"step {r['step_time_p50_ms']} ms"
            )
    return _write(out, bench, rows)


def _drive(bench, point, ctrl, shared, track: Track, speed, initial, spec) -> dict[str, Any]:
    sim = SimConfig(
        plant_dt=bench.plant_dt,
        control_period=bench.control_period,
        command_delay_steps=(bench.steer_delay_steps, 0),
        laps=bench.laps,
        initial_speed=initial,
        seed=bench.seed,
    )
    policy = functools.partial(policy_on_track, shared, track.arrays())
    result = run_closed_loop(ctrl, track, _tuning(ctrl, point, speed), sim, policy_step=policy)
    summary = result.summary()
    return {
        **point,
        "track": spec,
        "laps_completed": int(result.laps_completed),
        "border_violations": int(summary["border_violations"]),
        "tracking_error_mean_m": summary["tracking_error_mean_m"],
        "step_time_p50_ms": summary["step_time_p50_ms"],
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per grid point: medians over its tracks, and whether it is on the Pareto
    front of (step time, error) among the points that completed every lap cleanly."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GRID_KEYS), []).append(row)
    summary = []
    for key, group in groups.items():
        errors = [r["tracking_error_mean_m"] for r in group if r["tracking_error_mean_m"]]
        summary.append(
            {
                **dict(zip(GRID_KEYS, key, strict=True)),
                "tracks": len(group),
                "laps_completed": sum(r["laps_completed"] for r in group),
                "border_violations": sum(r["border_violations"] for r in group),
                "tracking_error_mean_m": float(np.median(errors)) if errors else None,
                "step_time_p50_ms": float(np.median([r["step_time_p50_ms"] for r in group])),
            }
        )
    for entry in summary:
        entry["pareto"] = _clean(entry) and not any(
            _clean(other) and _dominates(other, entry) for other in summary
        )
    return summary


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` is at least as fast and as accurate as ``b``, and strictly better in one."""
    ta, ea = a["step_time_p50_ms"], a["tracking_error_mean_m"]
    tb, eb = b["step_time_p50_ms"], b["tracking_error_mean_m"]
    return ta <= tb and ea <= eb and (ta < tb or ea < eb)


def _clean(entry: dict[str, Any]) -> bool:
    return (
        entry["tracking_error_mean_m"] is not None
        and entry["border_violations"] == 0
        and entry["laps_completed"] >= entry["tracks"]
    )


def _write(out: Path, bench: EMBench, rows: list[dict[str, Any]]) -> dict[str, Any]:
    report = {
        "config": dataclasses.asdict(bench),
        "results": rows,
        "summary": summarise(rows),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out)  # a stop mid-write leaves the previous file whole
    return report


def plot_pareto(report: dict[str, Any], path: str | Path) -> Path:
    """Median error against median step time per grid point; the front drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = ("tab:blue", "tab:orange", "tab:green")
    styles = {"mppi": ("k", "s"), **{f: (c, "o") for f, c in zip(FAMILIES, colors, strict=True)}}
    for entry in report["summary"]:
        if entry["tracking_error_mean_m"] is None:
            continue
        label = entry["family"] or "mppi"
        color, marker = styles[label]
        filled = _clean(entry)
        ax.scatter(
            entry["step_time_p50_ms"],
            entry["tracking_error_mean_m"],
            color=color if filled else "none",
            edgecolors=color,
            marker=marker,
            s=14 + 10 * (entry["iterations"] or 1),
        )
        ax.annotate(
            f"{entry['num_samples']}" + (f"x{entry['iterations']}" if entry["iterations"] else ""),
            (entry["step_time_p50_ms"], entry["tracking_error_mean_m"]),
            fontsize=6,
            xytext=(3, 2),
            textcoords="offset points",
        )
    front = sorted(
        (e for e in report["summary"] if e["pareto"]), key=lambda e: e["step_time_p50_ms"]
    )
    if front:
        ax.plot(
            [e["step_time_p50_ms"] for e in front],
            [e["tracking_error_mean_m"] for e in front],
            color="0.5",
            lw=1,
            ls="--",
            label="Pareto front (clean runs)",
        )
    for label, (color, marker) in styles.items():
        ax.scatter([], [], color=color, marker=marker, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step time p50 (ms, median over tracks)")
    ax.set_ylabel("mean tracking error (m, median over tracks)")
    ax.set_title("bench em: K x EM iterations x family (hollow: a violation or an unfinished lap)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
