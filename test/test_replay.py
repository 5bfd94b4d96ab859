"""A recorded F1TENTH lap and ``mppi-ros replay``.

One lap of ``sprint`` with ``config/f1tenth.yaml`` over DDS, the simulator standing in for the
F1TENTH gym bridge (AckermannDriveStamped on ``/drive``, odometry on ``/ego_racecar/odom``, no
steering joint; ackermann_msgs is built into the venv by ``make test``), recorded as MCAP. The
bag is read back with the ``mcap`` reader, replayed through the model that drove (no
difference at all) and through another model (a difference, located)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from mppi_ros.ros.demo import DemoConfig, run_demo
from mppi_ros.ros.recording import PARAMETERS_METADATA
from mppi_ros.ros.replay import ReplayError, read_run, replay_model


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One F1TENTH lap of ``sprint`` with the shipped Step-MPPI, recorded."""
    out = tmp_path_factory.mktemp("replay")
    config = DemoConfig(vehicle="f1tenth", track="sprint", laps=1, out_dir=str(out))
    summary = run_demo(config, log=lambda _: None)
    return out / "run.mcap", summary


@pytest.mark.slow
def test_the_f1tenth_configuration_drives_a_lap_with_ackermann_commands(recorded):
    _, summary = recorded
    assert summary["laps_completed"] == 1 and summary["border_violations"] == 0
    assert summary["tracking_error_max_m"] < 0.1
    assert summary["command_rate_hz"] == pytest.approx(100.0, rel=0.1)
    params = (Path(summary["recording"]).parent / "logs" / "params.yaml").read_text()
    assert "command_type: ackermann" in params and "steering_joint: ''" in params
    assert json.loads((Path(summary["plot"]).parent / "demo.json").read_text())["laps_completed"]


@pytest.mark.slow
def test_the_bag_holds_the_f1tenth_topics_each_step_and_the_parameters(recorded):
    bag, summary = recorded
    steps, drive = 0, 0
    with open(bag, "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        stored = reader.get_summary()
        types = {c.topic: stored.schemas[c.schema_id].name for c in stored.channels.values()}
        (meta,) = [m for m in reader.iter_metadata() if m.name == PARAMETERS_METADATA]
        params = yaml.safe_load(meta.metadata["yaml"])
        for _, channel, _, msg in reader.iter_decoded_messages():
            if channel.topic == "/mppi_controller/step_input":
                steps += 1
                labels = [d.label for d in msg.layout.dim]
                assert labels == ["tick_wall", "state", "action"]
                assert len(msg.data) == 1 + msg.layout.dim[1].size + msg.layout.dim[2].size
            elif channel.topic == "/drive":
                drive += 1
                assert abs(msg.drive.steering_angle) < 0.42 and 0.0 <= msg.drive.speed < 20.0
    assert types["/drive"] == "ackermann_msgs/msg/AckermannDriveStamped"
    assert types["/ego_racecar/odom"] == "nav_msgs/msg/Odometry"
    assert params["controller"] == "step_mppi" and params["command_type"] == "ackermann"
    # Every step the controller published a command for (the monitor saw those commands).
    assert drive >= 1000 and steps >= 0.98 * summary["commands_received"]
    assert summary["recorded_messages"]["border_left"] == 1


@pytest.mark.slow
def test_replaying_the_same_model_gives_no_difference(recorded):
    run = read_run(recorded[0])
    report = replay_model(run)
    assert report["steps"] == len(run.steps) > 1000
    assert report["identical_steps"] == report["steps"]
    for channel in report["channels"].values():
        assert channel["max_abs_difference"] == 0.0


@pytest.mark.slow
def test_replaying_another_model_locates_the_largest_difference(recorded, tmp_path):
    out = tmp_path / "dpc.json"
    command = [sys.executable, "-m", "mppi_ros.cli", "replay", str(recorded[0])]
    done = subprocess.run(
        [*command, "--model", "f1tenth_dpc", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["controller"] == "dpc" and report["identical_steps"] < report["steps"]
    diff = np.array(report["per_step_abs_difference"])
    run = read_run(recorded[0])
    for c, (name, channel) in enumerate(report["channels"].items()):
        assert channel["max_abs_difference"] == pytest.approx(diff[:, c].max()), name
        assert channel["max_abs_difference"] > 0, name
        step = channel["at_step"]
        assert channel["recorded"] == pytest.approx(run.steps[step][3][c])
        assert abs(channel["replayed"] - channel["recorded"]) == pytest.approx(
            channel["max_abs_difference"]
        )
        assert channel["at_position"] == pytest.approx(list(run.steps[step][2][:2]))
    assert "max |diff|" in done.stdout


def test_a_bag_without_steps_is_refused_with_the_reason(tmp_path):
    from mcap.writer import Writer

    bag = tmp_path / "empty.mcap"
    with open(bag, "wb") as handle:
        writer = Writer(handle)
        writer.start(profile="ros2", library="test")
        writer.add_metadata(PARAMETERS_METADATA, {"yaml": "controller: step_mppi\n"})
        writer.finish()
    with pytest.raises(ReplayError, match="no /mppi_controller/step_input messages"):
        read_run(bag)
    done = subprocess.run(
        [sys.executable, "-m", "mppi_ros.cli", "replay", str(bag)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "mppi-ros replay: error:" in done.stderr
