"""`mppi-ros bench closed-loop`: drive controllers around a track and report tracking quality.

JSON: ``{"track": str, "config": {...}, "results": {name: {"laps_completed",
"border_violations", "lap_time_s", "tracking_error_mean_m", "tracking_error_p95_m",
"tracking_error_max_m", "control_effort", "step_time_p50_ms", "step_time_p99_ms", ...}}}``
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mppi_ros.core.catalog import controller_for
from mppi_ros.core.controllers import with_replan_period
from mppi_ros.core.speed import SpeedSettings
from mppi_ros.sim import SimConfig, SimResult, run_closed_loop


@dataclasses.dataclass(frozen=True)
class ClosedLoopBench:
    """What to run. Controller overrides (``num_samples``, ``horizon``) apply where valid.

    ``controllers`` entries are ``NAME[@K]``: a registry name (``step_mppi``, ``dpc`` and
    ``soft_mpcritic`` load the shipped ``models/f1tenth_<name>`` bundle) or a bundle folder,
    optionally with its own sample count, e.g. ``step_mppi@256``. ``control_period`` None
    replans every plant step.
    """

    track: str = "default"
    controllers: tuple[str, ...] = ("mppi",)
    laps: int = 2
    speed: SpeedSettings = dataclasses.field(default_factory=SpeedSettings)
    friction_scale: float = 1.0
    plant_dt: float = 0.01
    control_period: float | None = None
    steer_delay_steps: int = 2
    num_samples: int | None = None
    horizon: int | None = None
    seed: int = 0


def build_controller(
    spec: str, num_samples: int | None, horizon: int | None, replan_period: float
) -> Any:
    """Controller for a ``NAME[@K]`` entry (see :class:`ClosedLoopBench`)."""
    name, _, k = spec.partition("@")
    if k:
        try:
            num_samples = int(k)
        except ValueError:
            raise ValueError(f"bad controller entry {spec!r}: expected NAME@SAMPLES") from None
    ctrl = controller_for(name, num_samples, horizon)
    return with_replan_period(ctrl, replan_period)


def run(
    bench: ClosedLoopBench, show_progress: bool = False
) -> tuple[dict[str, Any], dict[str, SimResult]]:
    """Runs every controller; returns the JSON dict and the raw results (for plots)."""
    track = bench.speed.load(bench.track)
    period = bench.control_period if bench.control_period is not None else bench.plant_dt
    sim = SimConfig(
        plant_dt=bench.plant_dt,
        control_period=period,
        command_delay_steps=(bench.steer_delay_steps, 0),
        friction_scale=bench.friction_scale,
        laps=bench.laps,
        seed=bench.seed,
    )
    raw: dict[str, SimResult] = {}
    results: dict[str, Any] = {}
    for name in bench.controllers:
        ctrl = build_controller(name, bench.num_samples, bench.horizon, period)
        tuning = bench.speed.tuning(ctrl.default_tuning())
        bar = _progress_bar(f"{name} on {track.name}", show_progress)
        res = run_closed_loop(ctrl, track, tuning, sim, progress=bar.update_to)
        bar.close()
        raw[name] = res
        summary = res.summary()
        summary.update(_controller_facts(ctrl))
        results[name] = summary
    report = {
        "track": track.name,
        "track_length_m": round(track.length, 2),
        "config": dataclasses.asdict(bench),
        "results": results,
    }
    return report, raw


def _controller_facts(ctrl) -> dict[str, Any]:
    cfg = getattr(ctrl, "config", None)
    facts = {}
    for key in ("num_samples", "horizon"):
        if cfg is not None and hasattr(cfg, key):
            facts[key] = getattr(cfg, key)
    return facts


class _progress_bar:
    """tqdm bar driven by a completed fraction (no-op when disabled)."""

    def __init__(self, desc: str, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=1000, desc=desc, unit="‰", leave=False)

    def update_to(self, fraction: float) -> None:
        if self._bar is not None:
            self._bar.update(int(fraction * 1000) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
