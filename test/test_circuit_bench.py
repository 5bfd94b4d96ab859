"""`mppi-ros bench circuits`, the pure-pursuit baseline and the training's speed sampling."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from mppi_ros.bench.reference import RACELINE_CHOICES, SPEED_PROFILES
from mppi_ros.core import speed as core_speed
from mppi_ros.core import tracks as core_tracks
from mppi_ros.core.dynamics import get_dynamics
from mppi_ros.core.tracks import load_track, save_track
from mppi_ros.training.config import InitialStateConfig
from mppi_ros.training.rollout import SpeedSampling, sample_batch, stack_tracks

ROW_KEYS = {
    "circuit",
    "completed",
    "border_violations",
    "lap_time_s",
    "ideal_lap_time_s",
    "lap_time_ratio",
    "tracking_error_mean_m",
    "tracking_error_p95_m",
    "tracking_error_max_m",
    "step_time_p50_ms",
    "step_time_p99_ms",
    "stop_reason",
}
SUMMARY_KEYS = {
    "completed",
    "total",
    "completion_rate",
    "median_lap_time_ratio",
    "median_tracking_error_mean_m",
    "border_violations",
}
STATS_KEYS = {
    "length_m",
    "min_radius_m",
    "share_radius_below_12m",
    "raceline_max_offset_m",
    "min_half_width_m",
}


def test_command_line_choices_match_the_core():
    assert SPEED_PROFILES == core_speed.SPEED_PROFILES
    assert RACELINE_CHOICES == core_tracks.RACELINE_CHOICES


@pytest.mark.slow
def test_bench_circuits_runs_pure_pursuit_from_a_standing_start(tmp_path):
    # One generated circuit and one given as a CSV file (as a user's real circuit would be).
    race, _ = save_track(load_track("circuit:9003"), tmp_path / "tracks")
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    cmd = [
        sys.executable, "-m", "mppi_ros.cli", "bench", "circuits",
        "--controllers", "pure_pursuit", "--track", "circuit:9002", "--track", str(race),
        "--speed-scale", "0.7", "--json", str(out), "--plot", str(png),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["speed_scale"] == 0.7 and report["friction_scale"] == 1.0
    assert report["circuits"] == ["circuit:9002", "circuit_9003"]
    for stats in report["circuit_stats"].values():
        assert STATS_KEYS <= set(stats)
    rows = report["results"]["pure_pursuit"]
    assert [set(r) for r in rows] == [ROW_KEYS, ROW_KEYS]
    for row in rows:
        # The F1TENTH baseline finishes these at 70 % of the profile from standstill.
        assert row["completed"] and row["stop_reason"] == "laps_completed", row
        ratio = row["lap_time_s"] / row["ideal_lap_time_s"]
        assert row["lap_time_ratio"] == pytest.approx(ratio, abs=1e-3)
        assert 0.9 < row["lap_time_ratio"] < 1.3, row
        assert row["tracking_error_mean_m"] < 0.4
    summary = report["summary"]["pure_pursuit"]
    assert SUMMARY_KEYS <= set(summary)
    assert summary["completed"] == 2 and summary["completion_rate"] == 1.0
    assert summary["border_violations"] == sum(r["border_violations"] for r in rows)
    assert png.stat().st_size > 10_000


def test_bench_circuits_rejects_bad_options():
    cmd = [sys.executable, "-m", "mppi_ros.cli", "bench", "circuits", "--speed-profile", "fast"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_speed_sampling_draws_standing_starts_profiles_and_caps():
    model = get_dynamics("single_track")
    tracks = stack_tracks([load_track("circuit:9001"), load_track("default")])
    init = InitialStateConfig(position=0.35, heading=0.5, steering=0.2)

    def draw(sampling):
        return jax.device_get(
            sample_batch(
                jax.random.PRNGKey(3), model, tracks, 512, init, (0.8, 1.1), (1.0, 12.0), sampling
            )
        )

    standing = draw(SpeedSampling(standing_start_share=1.0, start_speed_fraction=(0.5, 1.0)))
    assert np.all(standing.x0[:, 3] == 0.0) and np.all(standing.x0[:, 2] == 0.0)
    mixed = draw(
        SpeedSampling(
            profile_share=1.0,
            speed_scale_range=(0.3, 1.05),
            capped_share=0.4,
            standing_start_share=0.2,
            start_speed_fraction=(0.0, 1.1),
        )
    )
    assert np.all(mixed.follow_profile == 1.0)
    assert 0.3 <= mixed.speed_scale.min() and mixed.speed_scale.max() <= 1.05
    capped = mixed.max_speed < 50.0
    assert 0.3 < capped.mean() < 0.5  # ~40 % capped at their constant speed
    np.testing.assert_allclose(mixed.max_speed[capped], mixed.reference_speed[capped])
    assert 0.15 < np.mean(mixed.x0[:, 3] == 0.0) < 0.25
    assert 0.8 <= mixed.friction.min() and mixed.friction.max() <= 1.1
