"""The `mppi-ros` command as a user runs it: real subprocesses, real JSON and PNG files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "mppi_ros.cli"]


def _run(args, tmp_path, timeout=600):
    env = dict(os.environ)
    out = subprocess.run(
        CLI + args, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env
    )
    return out


@pytest.mark.slow
def test_bench_latency_writes_the_documented_json(tmp_path):
    out = _run(
        [
            "bench",
            "latency",
            "--controllers",
            "mppi",
            "--num-samples",
            "32,256",
            "--horizon",
            "10",
            "--baseline-samples",
            "1024",
            "--baseline-horizon",
            "20",
            "--iterations",
            "15",
            "--json",
            "lat.json",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "lat.json").read_text())
    assert report == json.loads(out.stdout)
    results = report["results"]
    assert set(results) == {"mppi_k1024_h20", "mppi_k32_h10", "mppi_k256_h10"}
    for entry in results.values():
        assert set(entry) >= {"num_samples", "horizon", "p50_ms", "p99_ms", "ratio_to_mppi"}
        assert 0 < entry["p50_ms"] <= entry["p99_ms"]
    assert results["mppi_k1024_h20"]["ratio_to_mppi"] == 1.0
    # 32 x 10 rollouts cost less than 1024 x 20 in the same run.
    assert results["mppi_k32_h10"]["ratio_to_mppi"] < 1.0


@pytest.mark.slow
def test_bench_closed_loop_writes_json_and_plot(tmp_path):
    out = _run(
        [
            "bench",
            "closed-loop",
            "--track",
            "sprint",
            "--controllers",
            "mppi",
            "--laps",
            "1",
            "--reference-speed",
            "5",
            "--num-samples",
            "256",
            "--horizon",
            "25",
            "--control-period",
            "0.05",
            "--json",
            "cl.json",
            "--plot",
            "cl.png",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "cl.json").read_text())
    assert report["track"] == "sprint"
    r = report["results"]["mppi"]
    for key in (
        "laps_completed",
        "border_violations",
        "lap_time_s",
        "tracking_error_mean_m",
        "tracking_error_p95_m",
        "tracking_error_max_m",
        "step_time_p50_ms",
        "step_time_p99_ms",
    ):
        assert key in r
    assert r["laps_completed"] == 1 and r["num_samples"] == 256 and r["horizon"] == 25
    png = tmp_path / "cl.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_cli_reports_bad_input_in_one_line(tmp_path):
    out = _run(["bench", "closed-loop", "--track", "nowhere", "--laps", "1"], tmp_path)
    assert out.returncode == 2
    assert "mppi-ros: error: unknown track 'nowhere'" in out.stderr
    assert "Traceback" not in out.stderr
    out = _run(["bench", "closed-loop", "--controllers", "mpc"], tmp_path)
    assert out.returncode == 2 and "valid names: " in out.stderr and "mppi" in out.stderr


def test_tracks_generate_and_list(tmp_path):
    out = _run(["tracks", "generate", "--out", str(tmp_path / "t")], tmp_path)
    assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in Path(tmp_path / "t").iterdir())
    assert "default_raceline.csv" in names and "default_centerline.csv" in names
    out = _run(["tracks", "list"], tmp_path)
    assert "default:" in out.stdout
