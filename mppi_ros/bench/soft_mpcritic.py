"""softMPCritic benchmarks: learning curves over seeds, and the amortisation table (paper
Table I: warm-started 1-iteration targets vs cold-started 1 / 5 / 10 iterations).

Every cell is a real training run (``mppi-ros train soft-mpcritic`` in its own process, so
runs may go in parallel with ``jobs``). A run folder that already holds a finished run of the
same config is reused, and an interrupted one is resumed, so a long table can be filled in
over several invocations.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mppi_ros.training.checkpoint import CHECKPOINT_INFO, METRICS
from mppi_ros.training.config import config_to_dict
from mppi_ros.training.soft_mpcritic_config import SoftMPCriticTrainConfig

LAST_EPISODES = 10  # the paper's figure: mean return of the last 10 training episodes
CURVE_POINTS = 50


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What one finished training run produced (from its metrics CSV)."""

    out: Path
    seed: int
    end_steps: np.ndarray  # environment step at which each episode ended
    returns: np.ndarray
    steps_per_s: float
    wall_s: float

    @property
    def last_mean(self) -> float:
        return float(np.mean(self.returns[-LAST_EPISODES:])) if len(self.returns) else float("nan")

    def curve(self, grid: np.ndarray) -> np.ndarray:
        """Mean return of the last 10 episodes finished by each grid step (NaN before any)."""
        out = np.full(len(grid), np.nan)
        for i, g in enumerate(grid):
            done = self.returns[self.end_steps <= g]
            if len(done):
                out[i] = float(np.mean(done[-LAST_EPISODES:]))
        return out

    def first_step_reaching(self, level: float) -> int | None:
        """First step where the last-10 mean reaches ``level`` (None if never)."""
        for i in range(len(self.returns)):
            if np.mean(self.returns[max(0, i + 1 - LAST_EPISODES) : i + 1]) >= level:
                return int(self.end_steps[i])
        return None


def _finished(config: SoftMPCriticTrainConfig, out: Path) -> bool:
    info = out / "training" / CHECKPOINT_INFO
    if not (out / "manifest.json").exists() or not info.exists():
        return False
    saved = json.loads(info.read_text())
    return saved.get("config") == config_to_dict(config) and saved.get("step") == (
        config.total_steps
    )


def train_run(config: SoftMPCriticTrainConfig, out: Path, log: Callable[[str], None]) -> RunRecord:
    """Trains ``config`` into ``out`` in a child process (reusing or resuming what is there)
    and reads its metrics.

    Raises:
        RuntimeError: The training process failed (its last output lines are included).
    """
    out.mkdir(parents=True, exist_ok=True)
    if _finished(config, out):
        log(f"{out}: finished run reused")
    else:
        spec = out / "run.yaml"
        spec.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        cmd = [
            sys.executable,
            "-m",
            "mppi_ros.cli",
            "train",
            "soft-mpcritic",
            "--config",
            str(spec),
            "--out",
            str(out),
            "--no-progress",
        ]
        if (out / "training" / CHECKPOINT_INFO).exists():
            cmd.append("--resume")
        log(f"{out}: training {config.total_steps} steps (seed {config.seed})")
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise RuntimeError(f"training into {out} failed:\n{tail}")
        log(f"{out}: done in {time.perf_counter() - started:.0f} s")
    return read_run(out, config.seed)


def read_run(out: Path, seed: int) -> RunRecord:
    """The episode returns and throughput recorded in ``out/training/metrics.csv``."""
    with open(out / "training" / METRICS, newline="") as f:
        rows = list(csv.DictReader(f))
    return RunRecord(
        out=out,
        seed=seed,
        end_steps=np.array([int(r["step"]) for r in rows]),
        returns=np.array([float(r["return"]) for r in rows]),
        steps_per_s=float(rows[-1]["steps_per_s"]) if rows else float("nan"),
        wall_s=float(rows[-1]["wall_s"]) if rows else float("nan"),
    )


def train_runs(
    jobs: Sequence[tuple[SoftMPCriticTrainConfig, Path]],
    parallel: int,
    log: Callable[[str], None],
) -> list[RunRecord]:
    """Runs ``jobs`` with at most ``parallel`` training processes at once."""
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda job: train_run(*job, log), jobs))


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 1) for v in values]


def summarise(runs: Sequence[RunRecord], steps: int) -> dict[str, Any]:
    """Median and 20-80 % band of the learning curves, and per-seed figures."""
    grid = np.linspace(steps / CURVE_POINTS, steps, CURVE_POINTS).round().astype(int)
    curves = np.stack([r.curve(grid) for r in runs])
    with np.errstate(all="ignore"):
        band = {
            q: np.where(np.all(np.isnan(curves), 0), np.nan, np.nanpercentile(curves, p, axis=0))
            for q, p in (("median", 50), ("p20", 20), ("p80", 80))
        }
    lasts = [r.last_mean for r in runs]
    return {
        "median_last10_return": float(np.median(lasts)),
        "median_steps_per_s": float(np.median([r.steps_per_s for r in runs])),
        "per_seed": {
            str(r.seed): {
                "last10_return": round(r.last_mean, 1),
                "best_last10_return": round(float(np.nanmax(r.curve(grid))), 1),
                "episodes": len(r.returns),
                "steps_per_s": r.steps_per_s,
                "wall_s": r.wall_s,
                "run": str(r.out),
            }
            for r in runs
        },
        "curve": {
            "steps": grid.tolist(),
            **{k: _json_floats(b) for k, b in band.items()},
        },
    }


@dataclasses.dataclass(frozen=True)
class LearningCurveBench:
    """``mppi-ros bench soft-mpcritic``: one config trained with several seeds."""

    config: SoftMPCriticTrainConfig
    seeds: tuple[int, ...] = (0, 1, 2)
    out: Path = Path("bench_output/soft_mpcritic")
    parallel: int = 1


def run_learning_curves(bench: LearningCurveBench, log=print) -> dict[str, Any]:
    jobs = [
        (dataclasses.replace(bench.config, seed=s), bench.out / f"seed{s}") for s in bench.seeds
    ]
    runs = train_runs(jobs, bench.parallel, log)
    return {
        "env": bench.config.task,
        "steps": bench.config.total_steps,
        "seeds": list(bench.seeds),
        "config": config_to_dict(bench.config),
        **summarise(runs, bench.config.total_steps),
    }


# The table's columns: (label, cold start, target iterations).
AMORTISATION_MODES = (
    ("warm_1", False, 1),
    ("cold_1", True, 1),
    ("cold_5", True, 5),
    ("cold_10", True, 10),
)


@dataclasses.dataclass(frozen=True)
class AmortisationBench:
    """``mppi-ros bench amortisation``: target sample counts N x target modes.

    Run with ``parallel=1`` when the steps/s column matters: parallel runs share the CPU.
    """

    config: SoftMPCriticTrainConfig
    target_samples: tuple[int, ...] = (10, 20, 50)
    seeds: tuple[int, ...] = (0,)
    out: Path = Path("bench_output/amortisation")
    parallel: int = 1


def run_amortisation(bench: AmortisationBench, log=print) -> dict[str, Any]:
    cells = [
        (n, label, cold, iters)
        for n in bench.target_samples
        for label, cold, iters in AMORTISATION_MODES
    ]
    jobs = [
        (
            dataclasses.replace(
                bench.config, target_samples=n, cold_start=cold, target_iterations=iters, seed=s
            ),
            bench.out / f"n{n}_{label}" / f"seed{s}",
        )
        for n, label, cold, iters in cells
        for s in bench.seeds
    ]
    runs = train_runs(jobs, bench.parallel, log)
    per_cell = len(bench.seeds)
    table: dict[str, dict[str, Any]] = {}
    for i, (n, label, _, _) in enumerate(cells):
        summary = summarise(runs[i * per_cell : (i + 1) * per_cell], bench.config.total_steps)
        table.setdefault(f"N={n}", {})[label] = {
            "steps_per_s": round(summary["median_steps_per_s"], 1),
            "final_return": round(summary["median_last10_return"], 1),
            "curve": summary["curve"],
        }
    return {
        "env": bench.config.task,
        "steps": bench.config.total_steps,
        "seeds": list(bench.seeds),
        "parallel_runs": bench.parallel,
        "config": config_to_dict(bench.config),
        "table": table,
    }
