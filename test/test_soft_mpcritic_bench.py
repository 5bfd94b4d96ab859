"""softMPCritic benchmarks end to end through the CLI: real training processes on a tiny
config, learning-curve statistics over seeds, the amortisation table, reuse of finished runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from mppi_ros.bench.soft_mpcritic import RunRecord

TINY = {
    "task": "InvertedDoublePendulum-v5",
    "num_samples": 50,
    "target_samples": 10,
    "hidden": [32, 32],
    "checkpoint_every": 150,
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mppi_ros.cli", *args], capture_output=True, text=True, timeout=900
    )


def test_curve_is_the_running_mean_of_the_last_ten_episodes():
    record = RunRecord(
        out=None,
        seed=0,
        end_steps=np.arange(1, 13) * 100,
        returns=np.arange(12, dtype=float),
        steps_per_s=1.0,
        wall_s=1.0,
    )
    curve = record.curve(np.array([50, 100, 450, 1200]))
    assert np.isnan(curve[0])
    np.testing.assert_allclose(curve[1:], [0.0, 1.5, np.mean(np.arange(2, 12))])
    assert record.last_mean == pytest.approx(6.5)
    assert record.first_step_reaching(4.0) == 900  # mean(0..8) = 4 at the 9th episode


@pytest.mark.slow
def test_bench_soft_mpcritic_reports_median_and_band_over_seeds(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    args = ["bench", "soft-mpcritic", "--config", str(config), "--steps", "300", "--seeds", "2"]
    args += ["--jobs", "2", "--out", str(tmp_path / "runs")]
    out = cli(*args, "--json", str(tmp_path / "lc.json"), "--plot", str(tmp_path / "lc.png"))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "lc.json").read_text())
    assert report["env"] == "InvertedDoublePendulum-v5" and report["steps"] == 300
    assert sorted(report["per_seed"]) == ["0", "1"]
    seeds = [report["per_seed"][s]["last10_return"] for s in ("0", "1")]
    assert seeds[0] != seeds[1]  # two seeds really are two different runs
    assert report["median_last10_return"] == pytest.approx(np.median(seeds), abs=0.1)
    curve = report["curve"]
    assert len(curve["steps"]) == 50 and curve["steps"][-1] == 300
    for lo, mid, hi in zip(curve["p20"], curve["median"], curve["p80"], strict=True):
        if mid is not None:
            assert lo <= mid <= hi
    assert (tmp_path / "lc.png").stat().st_size > 10_000
    # A second invocation reuses the finished runs instead of training again.
    again = cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("finished run reused") == 2
    assert json.loads(again.stdout)["per_seed"] == report["per_seed"]


@pytest.mark.slow
def test_bench_amortisation_fills_the_table(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = cli(
        "bench", "amortisation", "--config", str(config), "--steps", "150",
        "--target-samples", "5", "--jobs", "2", "--out", str(tmp_path / "runs"),
        "--json", str(tmp_path / "t.json"), "--plot", str(tmp_path / "t.png"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads((tmp_path / "t.json").read_text())["table"]
    assert list(table) == ["N=5"]
    assert list(table["N=5"]) == ["warm_1", "cold_1", "cold_5", "cold_10"]
    for cell in table["N=5"].values():
        assert cell["steps_per_s"] > 0 and np.isfinite(cell["final_return"])
    saved = yaml.safe_load((tmp_path / "runs" / "n5_cold_10" / "seed0" / "run.yaml").read_text())
    assert saved["cold_start"] is True and saved["target_iterations"] == 10
    assert saved["target_samples"] == 5


def test_dot_flops_counts_scan_trips_and_the_cheaper_cond_branch():
    import jax
    import jax.numpy as jnp

    from mppi_ros.bench.soft_mpcritic_speed import dot_flops

    def f(x, w, flag):
        def body(c, _):
            return jnp.tanh(c @ w), None  # (4, 5) @ (5, 5): 2 * 4 * 5 * 5 = 200

        c, _ = jax.lax.scan(body, x, None, length=3)
        big = lambda: (c @ w @ w @ w).sum()  # three products: 600
        return jax.lax.cond(flag, big, lambda: (c @ w).sum())  # the cheaper: 200

    jaxpr = jax.make_jaxpr(f)(jnp.ones((4, 5)), jnp.ones((5, 5)), True).jaxpr
    assert dot_flops(jaxpr) == 3 * 200 + 200


def test_bench_soft_mpcritic_speed_reports_run_steady_state_and_profile(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    args = ["bench", "soft-mpcritic-speed", "--config", str(config), "--steps", "400"]
    args += ["--critics", "1", "--profile-steps", "20", "--out", str(tmp_path / "run")]
    out = cli(*args, "--json", str(tmp_path / "speed.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "speed.json").read_text())
    assert report["steps"] == 400 and report["config"]["critics"] == 1
    whole, process = report["whole_run"], report["process"]
    assert whole["steps_per_s"] == pytest.approx(400 / whole["wall_s"], rel=0.01)
    assert process["wall_s"] > whole["wall_s"]  # imports and start-up come on top
    assert 80 <= report["steady"]["from_step"] < report["steady"]["to_step"] <= 400
    assert report["returns"]["episodes"] >= 1
    profile = report["profile"]
    assert profile["steps"] == 20 and profile["compiled_step_ms"] > 0 and profile["env_ms"] > 0
    # The roofline is the measured matmul rate over the step's matmul work.
    expected = profile["matmul_gflops_measured"] * 1e3 / profile["matmul_mflop_per_step"]
    assert profile["roofline_steps_per_s"] == pytest.approx(expected, rel=0.01)
    # A second run into the same folder is refused with a clear error.
    again = cli(*args)
    assert again.returncode == 2 and "already holds a run" in again.stderr
