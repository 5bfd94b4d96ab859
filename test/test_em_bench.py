"""``mppi-ros bench em`` from the command line: the grid's rows and keys, the Pareto flags, the
plot, and a resume that runs nothing twice."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mppi_ros.bench.em import _dominates, summarise

ROW_KEYS = {
    "controller",
    "family",
    "num_samples",
    "iterations",
    "track",
    "laps_completed",
    "border_violations",
    "tracking_error_mean_m",
    "step_time_p50_ms",
}


def bench_em(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mppi_ros.cli", "bench", "em", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_bench_em_writes_the_grid_a_pareto_plot_and_resumes(tmp_path):
    out, plot = tmp_path / "em.json", tmp_path / "em.png"
    grid = ("--num-samples", "32", "--iterations", "1,2", "--families", "gaussian_diag")
    where = ("--tracks", "sprint", "--circuits", "0", "--json", str(out))
    done = bench_em(*grid, *where, "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    rows = report["results"]
    assert [(r["controller"], r["iterations"]) for r in rows] == [
        ("mppi", None),
        ("em_mppi", 1),
        ("em_mppi", 2),
    ]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["track"] == "sprint" and row["num_samples"] == 32
        assert row["step_time_p50_ms"] > 0 and row["laps_completed"] in (0, 1)
    assert rows[0]["family"] is None and rows[1]["family"] == "gaussian_diag"
    assert len(report["summary"]) == 3
    assert plot.stat().st_size > 10_000

    again = bench_em(*grid, *where, "--resume")
    assert again.returncode == 0, again.stderr
    assert "sprint:" not in again.stderr  # no row was driven again
    assert json.loads(out.read_text())["results"] == rows


def test_pareto_front_holds_the_undominated_clean_points():
    def row(k, error, time, violations=0):
        return {
            "controller": "em_mppi",
            "family": "gaussian_diag",
            "num_samples": k,
            "iterations": 1,
            "track": "t",
            "laps_completed": 1,
            "border_violations": violations,
            "tracking_error_mean_m": error,
            "step_time_p50_ms": time,
        }

    rows = [row(1, 0.10, 1.0), row(2, 0.05, 2.0), row(3, 0.06, 3.0), row(4, 0.01, 9.0, 1)]
    front = {e["num_samples"]: e["pareto"] for e in summarise(rows)}
    # 3 is slower and worse than 2; 4 is the most accurate but left the road.
    assert front == {1: True, 2: True, 3: False, 4: False}
    a = {"step_time_p50_ms": 1.0, "tracking_error_mean_m": 0.1}
    assert not _dominates(a, dict(a))  # equal points do not dominate each other
