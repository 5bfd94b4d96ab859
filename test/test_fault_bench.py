"""``mppi-ros bench faults`` end to end on the real node graph: a short campaign of three
cases (odometry that stops, a degenerate reference, a corrupt model offered while driving)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mppi_ros.ros.fault_bench import CASE_NAMES, FaultBench


def test_unknown_cases_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="valid: stale_odometry"):
        FaultBench(cases=("stale_odometry", "meteor_strike"))
    assert len(CASE_NAMES) == 15


@pytest.mark.slow
def test_bench_faults_brakes_names_and_recovers(tmp_path):
    cases = "stale_odometry,reference_two_points,corrupt_model_bundle"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mppi_ros.cli",
            "bench",
            "faults",
            "--cases",
            cases,
            "--json",
            str(tmp_path / "faults.json"),
            "--plot",
            str(tmp_path / "faults.png"),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "faults.json").read_text())
    assert report["crashes"] == 0 and list(report["cases"]) == cases.split(",")
    for name, case in report["cases"].items():
        assert case["alive"], name
        assert case["diagnostics_max_gap_s"] < 0.5, (name, case)
        assert case["recovery_s"] is not None and case["saturated_after_recovery"] is False
        assert case["stopped_inside_borders"], (name, case)
    stale = report["cases"]["stale_odometry"]
    assert stale["named"] and stale["reason"].startswith("stale_state")
    # Detection waits for state_timeout (0.1 s); the bound leaves room for a loaded machine.
    assert 90.0 <= stale["brake_latency_ms"] < 1000.0
    assert report["cases"]["reference_two_points"]["named"]
    bundle = report["cases"]["corrupt_model_bundle"]
    # Refused while the old model drove on (a loaded machine may add a stale-odometry blip).
    assert bundle["refused"] and not (bundle["reason"] or "stale_state").startswith("bad")
    assert (tmp_path / "faults.png").stat().st_size > 10_000
