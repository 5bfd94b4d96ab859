"""``mppi-ros demo`` fails fast: a misconfigured controller ends the demo within seconds with
the controller's one-line reason and exit status 2 (it used to wait 180 s for the controller
to drive and end in a traceback)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rosproc import ros_context, unique_domain_id

from mppi_ros.cli import build_parser
from mppi_ros.ros.graph import Monitor
from mppi_ros.ros.processes import configure_failure

REPO = Path(__file__).resolve().parents[1]
ERROR = "mppi-ros demo: error: mppi_controller: configure failed: "
# The node's log line: "[ERROR] [<wall time s>] [mppi_controller]: configure failed: ..."
FAILED_AT = re.compile(r"\[ERROR\] \[(\d+\.\d+)\] \[mppi_controller\]: configure failed: ")


def _demo(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Runs ``python -m mppi_ros.cli demo ARGS`` (one lap, output in ``out``); returns the
    result and its wall time (s)."""
    command = [sys.executable, "-m", "mppi_ros.cli", "demo", "--laps", "1", "--out", str(out)]
    started = time.time()
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=out.parent, timeout=240
    )
    return result, time.time() - started


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--laps", "0"], "expected an integer >= 1, got 0"),
        (["--laps", "-2"], "expected an integer >= 1, got -2"),
        (["--laps", "two"], "expected an integer >= 1, got 'two'"),
        (["--speed-profile", "fast"], "invalid choice: 'fast'"),
    ],
)
def test_demo_rejects_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["demo", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [["demo"], ["bench", "ros"], ["eval", "f1tenth_dpc"]])
def test_graph_commands_set_the_speed_law_of_publisher_and_controller(command):
    from mppi_ros.cli.arguments import _graph_speed
    from mppi_ros.ros.graph import graph_parameters

    argv = [*command, "--speed-profile", "friction", "--speed-scale", "0.9"]
    speed = _graph_speed(build_parser().parse_args([*argv, "--reference-speed", "7"]))
    params = graph_parameters("circuit:9001", "step_mppi", 100.0, "array", speed=speed)
    publisher, controller = params["track_publisher"], params["mppi_controller"]
    assert (publisher["timed"], publisher["speed_profile"]) == (True, "friction")
    assert publisher["reference_speed"] == controller["reference_speed"] == 7.0
    assert controller["speed_scale"] == 0.9
    # No --reference-speed: the controller keeps the model's (it caps the profile).
    speed = _graph_speed(build_parser().parse_args(argv))
    params = graph_parameters("default", "step_mppi", 100.0, "array", speed=speed)
    assert "reference_speed" not in params["mppi_controller"]
    assert params["track_publisher"]["reference_speed"] == 100.0
    # The default is the shipped untimed path at the controller's constant speed.
    params = graph_parameters("default", "step_mppi", 100.0, "array")
    assert not params["track_publisher"].get("timed", False)
    with pytest.raises(ValueError, match="must be > 0"):
        _graph_speed(build_parser().parse_args([*command, "--speed-scale", "0"]))


def test_demo_accepts_each_controller_and_one_lap():
    from mppi_ros.core.catalog import controller_names

    for name in controller_names():
        args = build_parser().parse_args(["demo", "--controller", name, "--laps", "1"])
        assert (args.controller, args.laps) == (name, 1)


def test_configure_failure_reads_the_first_complete_reason():
    line = "[ERROR] [1.5] [mppi_controller]: configure failed: no model bundle 'x'"
    assert configure_failure("[INFO] [1.0] [mppi_controller]: starting\n") is None
    assert configure_failure(line) is None  # the line is still being written
    assert configure_failure(line, complete=True) == "no model bundle 'x'"
    assert configure_failure(f"{line}\n{line}2\n") == "no model bundle 'x'"


class _Configurable(LifecycleNode):
    """A lifecycle node whose configure succeeds, or raises (rclpy then logs nothing)."""

    def __init__(self, name: str, fail: bool, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.fail = fail

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.fail:
            raise RuntimeError("an unexpected error")
        return TransitionCallbackReturn.SUCCESS


@pytest.mark.parametrize("fail", [True, False], ids=["raises", "succeeds"])
def test_monitor_tells_a_failed_configure_from_its_lifecycle_events(fail):
    """The fallback for a configure that fails without the log line: the node's
    ``transition_event`` leaves ``configuring`` for a state other than ``inactive``."""
    name = "configured_node"
    domain = unique_domain_id()
    with ros_context(domain) as ros:
        monitor = Monitor(domain, "array", controller=name)
        node = _Configurable(name, fail, context=ros.context)
        try:
            ros.executor.add_node(node)
            topic = f"/{name}/transition_event"
            assert ros.spin_until(lambda: node.count_subscribers(topic) > 0, 30.0)
            node.trigger_configure()
            seen = lambda: any(s == "configuring" for s, _ in list(monitor.recording.transitions))
            assert ros.spin_until(seen, 30.0), monitor.recording.transitions
            assert monitor.configure_failed() is fail, monitor.recording.transitions
        finally:
            monitor.close()
            node.destroy_node()


@pytest.mark.slow
def test_demo_with_an_unknown_controller_fails_at_once(tmp_path):
    result, seconds = _demo(tmp_path / "demo", "--controller", "foo")
    print(f"--controller foo: rc {result.returncode} after {seconds:.2f} s")
    assert result.returncode == 2
    from mppi_ros.core.catalog import controller_names

    valid = ", ".join(controller_names())
    assert f"unknown controller 'foo'; valid names: {valid}" in result.stderr
    assert seconds < 60


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, reason",
    [
        ("/nonexistent", "no model bundle '/nonexistent'"),
        # A softMPCritic bundle of a gymnasium task: the reason names the bundle.
        (str(REPO / "models" / "double_pendulum_soft_mpcritic"), "double_pendulum_soft_mpcritic"),
    ],
    ids=["missing", "wrong-kind"],
)
def test_demo_with_a_bad_model_fails_fast_with_the_reason(tmp_path, model, reason):
    out = tmp_path / "demo"
    result, seconds = _demo(out, "--controller", "step_mppi", "--model", model)
    ended = time.time()
    log = (out / "logs" / "mppi_controller.log").read_text(errors="replace")
    failed = FAILED_AT.search(log)
    lag = ended - float(failed.group(1)) if failed else float("nan")
    print(f"--model {model}: rc {result.returncode} after {seconds:.2f} s, {lag:.2f} s after the")
    print(f"  controller logged the failed configure; stderr:\n{result.stderr}")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1 and reason in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert failed is not None, log
    assert seconds < 60  # it used to wait 180 s
    assert lag < 15  # generous for a loaded machine; measured 1.7-2.9 s (2 busy cores)
    assert not (out / "demo.json").exists()
