"""The shipped node graph: launch files, parameter YAMLs, and an end-to-end lap over DDS with
the three nodes as separate processes (exactly what ``make demo`` runs)."""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mppi_ros.core.catalog import controller_spec
from mppi_ros.realtime.memory import jemalloc_library
from mppi_ros.ros.controller_node import NODE_NAME, PARAMETERS
from mppi_ros.ros.demo import DemoConfig, run_demo
from mppi_ros.ros.fault_bench import CASE_NAMES, FaultBench

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER_CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


def graph_story(log_dir: Path, lines: int = 25) -> str:
    """What the graph's nodes said beyond INFO (braking causes, border violations, skipped
    plant steps): the first ``lines`` of each node's log, for a failing assertion."""
    story = []
    for log in sorted(Path(log_dir).glob("*.log")):
        said = [
            line for line in log.read_text(errors="replace").splitlines() if "[INFO]" not in line
        ]
        story += [f"{log.name}:", *said[:lines]]
    return "\n".join(story)


@pytest.mark.parametrize("path", CONTROLLER_CONFIGS, ids=lambda p: p.name)
def test_parameter_files_use_ros_format_and_known_names(path):
    data = yaml.safe_load(path.read_text())
    assert data, path
    for node, body in data.items():
        assert set(body) == {"ros__parameters"}, f"{path}: {node} needs ros__parameters"
        if node == NODE_NAME:
            params = body["ros__parameters"]
            own = controller_spec(params.get("controller", "step_mppi")).tuning_parameters
            unknown = set(params) - set(PARAMETERS) - {p.name for p in own}
            assert not unknown, f"{path}: undeclared controller parameters {unknown}"


@pytest.mark.parametrize("name", ["controller.launch.py", "sim.launch.py", "f1tenth.launch.py"])
def test_launch_files_load(name):
    if importlib.util.find_spec("launch") is None or importlib.util.find_spec("launch_ros") is None:
        pytest.skip(
            "launch / launch_ros are not installed (no PyPI wheels); the same graph is "
            "tested by spawning the nodes with --ros-args --params-file"
        )
    module = runpy.run_path(str(ROOT / "launch" / name))
    description = module["generate_launch_description"]()
    assert description.entities


def assert_one_command_per_tick_at_the_control_rate(summary: dict, rate: float) -> None:
    """The node's timer keeps the control-rate schedule and every cycle that ran published a
    command the monitor received. How many cycles a loaded machine lets run is the bench's
    business (``mppi-ros bench ros``), not a test's."""
    assert summary["loop_scheduled_rate_hz"] == pytest.approx(rate, rel=0.02), summary
    cycles = summary["loop_cycles"]
    assert abs(summary["commands_received"] - cycles) <= 0.01 * cycles + 3, summary
    assert summary["loop_missed_cycles"] <= 0.5 * cycles, summary  # it ran, mostly on time


@pytest.mark.slow
def test_demo_graph_completes_a_lap_at_the_control_rate(tmp_path):
    """Simulator, track publisher and Step-MPPI controller as processes over DDS: one lap of
    `default`, commands at the control rate within 2 %, no border violation."""
    summary = run_demo(DemoConfig(laps=1, out_dir=str(tmp_path)), log=lambda _: None)
    story = lambda: f"{summary}\n{graph_story(tmp_path / 'logs')}"
    assert summary["laps_completed"] == 1, story()
    assert summary["border_violations"] == 0, story()
    # Offline the same controller tracks this lap to 0.010 m; an integrated steering estimate
    # that drifts from the simulator's (the bug this guards) gave 0.085-0.10 m.
    assert summary["tracking_error_mean_m"] < 0.03
    assert_one_command_per_tick_at_the_control_rate(summary, 100.0)
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert Path(summary["plot"]).stat().st_size > 10_000
    check_recording(summary)


def check_recording(summary: dict, min_messages: int = 2000, prediction: bool = True) -> None:
    """The run's MCAP bag, read back with the ``mcap`` reader and decoded by ``mcap_ros2``
    from the schemas in the file alone (as Foxglove or another machine would). ``prediction``:
    whether the controller publishes one (DPC has none)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts = dict(summary["recorded_messages"])
    predictions = counts.pop("/mppi_controller/prediction", None)
    assert predictions is not None and (predictions > 0) == prediction, predictions
    topics = {"odom", "cmd", "reference", "border_left", "border_right", "/diagnostics"}
    assert set(counts) == topics | {"/mppi_controller/step_input"}, counts
    assert all(counts.values()), counts
    counts["/mppi_controller/prediction"] = predictions
    seen: dict[str, int] = {}
    with open(summary["recording"], "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, _, decoded in reader.iter_decoded_messages():
            seen[channel.topic] = seen.get(channel.topic, 0) + 1
            if channel.topic == "odom":
                assert schema.name == "nav_msgs/msg/Odometry"
                assert decoded.header.frame_id == "map" and decoded.child_frame_id
            elif channel.topic == "reference":
                assert schema.name == "nav_msgs/msg/Path" and len(decoded.poses) > 100
    assert seen == {topic: n for topic, n in counts.items() if n}
    # Odometry and commands at the control rate over the run.
    assert counts["odom"] > min_messages and counts["cmd"] > min_messages, counts


@pytest.mark.slow
def test_demo_graph_drives_a_lap_with_the_shipped_soft_mpcritic(tmp_path):
    """The vehicle softMPCritic behind the same node graph: its bundle's 6 m/s reference,
    its warm start shifted per 100 Hz tick, a lap of `sprint` (the shortest built-in track)
    without a violation."""
    config = DemoConfig(controller="soft_mpcritic", track="sprint", laps=1, out_dir=str(tmp_path))
    summary = run_demo(config, log=lambda _: None)
    assert summary["laps_completed"] == 1 and summary["border_violations"] == 0, summary
    # Offline (`bench closed-loop --track sprint --controllers soft_mpcritic
    # --reference-speed 6`) this lap is 0.012 m at 31.6 s; a warm start not shifted per tick,
    # or the 10 m/s default reference (a 19 s lap), shows up here.
    assert summary["tracking_error_mean_m"] < 0.05
    assert 27.0 < summary["lap_times_s"][0] < 36.0
    assert_one_command_per_tick_at_the_control_rate(summary, 100.0)


ROS_BENCH_KEYS = (
    "latency_p50_ms",
    "latency_p99_ms",
    "data_age_p99_ms",
    "missed_cycles",
    "period_jitter_p99_ms",
    "swap_missed_cycles",
    "param_change_missed_cycles",
    "cpu_stalls_over_half_period",
    "cpu_stall_max_ms",
    "missed_cycles_in_machine_stalls",
)


@pytest.mark.slow
def test_bench_ros_runs_the_graph_through_a_swap_and_reports_its_keys(tmp_path):
    out = tmp_path / "ros.json"
    args = ["bench", "ros", "--duration", "12", "--rate", "50", "--controller", "dpc"]
    args += ["--param", "kept_replaced_steps=2", "--record", str(tmp_path / "ros.mcap")]
    proc = subprocess.run(
        [sys.executable, "-m", "mppi_ros.cli", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert all(isinstance(report[key], (int, float)) for key in ROS_BENCH_KEYS), report
    assert report["model_id"].startswith("swap_dpc@")  # the model swap happened
    assert report["controller_params"] == {"kept_replaced_steps": 2}
    assert report["kept_steps"] == 0  # same architecture: the swap shared the compiled step
    assert report["allocator"] == ("jemalloc" if jemalloc_library() else "glibc")  # auto
    assert 0 <= report["missed_cycles_in_machine_stalls"] <= report["missed_cycles"]
    for key in ("steal_ms_controller_cpus", "steal_ms_other_cpus"):  # None: not reported
        assert report[key] is None or report[key] >= 0.0, report[key]
    assert report["measured_rate_hz"] == pytest.approx(50.0, rel=0.05)
    assert report["cycles"] >= 0.8 * 12 * 50
    assert report["stamps_consistent"]  # the subscriber saw the node's command stamps
    assert report["latency_p50_ms"] <= report["latency_p99_ms"] < 1e3 / 50
    cpus = sorted(os.sched_getaffinity(0))
    assert report["controller_cpus"] == (cpus[-1:] if len(cpus) >= 2 else None)
    check_recording(report, min_messages=12 * 50 // 2, prediction=False)


# ``mppi-ros bench faults`` end to end: in this file so that it never runs beside another
# graph of this file on the other test worker (two graphs at once starve a 2-core machine).


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
        assert "error" not in case, f"{name}: {case}\n{graph_story(tmp_path / 'logs')}"
        assert case["diagnostics_max_gap_s"] < 0.5, (name, case)
        assert case["recovery_s"] is not None and case["saturated_after_recovery"] is False
    stale = report["cases"]["stale_odometry"]
    assert stale["named"] and stale["reason"].startswith("stale_state")
    # The stop itself; a bad path is judged by the build worker first (seconds on a loaded
    # machine) while the controller drives on the old reference.
    assert stale["stopped_inside_borders"], stale
    # Detection waits for state_timeout (0.1 s); the bound leaves room for a loaded machine.
    assert 90.0 <= stale["brake_latency_ms"] < 1000.0
    assert report["cases"]["reference_two_points"]["named"]
    bundle = report["cases"]["corrupt_model_bundle"]
    # Refused while the old model drove on (a loaded machine may add a stale-odometry blip).
    assert bundle["refused"] and not (bundle["reason"] or "stale_state").startswith("bad")
    assert (tmp_path / "faults.png").stat().st_size > 10_000
