"""F1TENTH topics and launch arguments: the checks every launch file runs before it starts a
node. The F1TENTH configuration driving over DDS with Ackermann commands is tested in
``test_replay.py``, whose recording is such a lap."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mppi_ros.core.tracks import load_track, save_track
from mppi_ros.realtime.memory import jemalloc_library
from mppi_ros.ros.f1tenth import controller_remappings, f1tenth_topics, ros_args
from mppi_ros.ros.launch_checks import (
    LaunchArgumentError,
    check_launch_arguments,
    launch_argument_problems,
)

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
NODE_ACTIONS = {"Node", "LifecycleNode", "IncludeLaunchDescription", "ExecuteProcess"}


def test_targets_name_the_bridge_and_car_topics_and_overrides_win():
    sim, car = f1tenth_topics("sim"), f1tenth_topics("car")
    assert (sim.odom, sim.drive) == ("/ego_racecar/odom", "/drive")
    assert (car.odom, car.drive) == ("/pf/pose/odom", "/drive")
    mine = f1tenth_topics("car", odom="/my/odom")
    assert (mine.odom, mine.drive) == ("/my/odom", "/drive")
    assert controller_remappings(sim) == [("odom", "/ego_racecar/odom"), ("cmd", "/drive")]
    assert ros_args(controller_remappings(sim)) == (
        "-r", "odom:=/ego_racecar/odom", "-r", "cmd:=/drive",
    )  # fmt: skip
    with pytest.raises(ValueError, match="valid: sim, car"):
        f1tenth_topics("moon")


GOOD = {
    "controller": "step_mppi",
    "model_path": "",
    "params_file": str(ROOT / "config" / "f1tenth.yaml"),
    "track": "default",
    "allocator": "glibc",
    "autostart": "true",
    "use_lifecycle_manager": "false",
    "target": "sim",
}


def test_good_launch_arguments_pass(tmp_path):
    assert launch_argument_problems(GOOD) == []
    # A raceline CSV of the user's, and the generated tracks, pass without being optimised.
    csv = save_track(load_track("sprint"), tmp_path)[0]
    for track in (str(csv), "circuit:7", "procedural:3"):
        assert launch_argument_problems({**GOOD, "track": track}) == [], track
    check_launch_arguments(GOOD)  # does not raise


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("controller", "foo", "unknown controller; valid: dpc, em_mppi"),
        ("model_path", "/nonexistent", "no model bundle '/nonexistent'"),
        ("model_path", "models/f1tenth_dpc", "holds a 'dpc' model"),
        ("track", "nope", "unknown track 'nope'"),
        ("track", "circuit:x", "needs an integer seed"),
        ("params_file", "/no/such.yaml", "no such file"),
        ("autostart", "yes", "not one of true, false"),
        ("target", "moon", "valid: sim, car"),
    ],
)
def test_each_bad_launch_argument_is_named_with_its_reason(name, value, reason):
    if name == "model_path" and not value.startswith("/"):
        value = str(ROOT / value)
    problems = launch_argument_problems({**GOOD, name: value})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name}:=") and reason in problems[0]


def test_all_bad_arguments_are_reported_at_once_and_nothing_is_started():
    bad = {**GOOD, "controller": "foo", "track": "nope", "allocator": "tcmalloc"}
    with pytest.raises(LaunchArgumentError) as err:
        check_launch_arguments(bad)
    text = str(err.value)
    assert text.startswith("mppi_ros: nothing was started")
    for name in ("controller:=", "track:=", "allocator:="):
        assert name in text


@pytest.mark.skipif(jemalloc_library() is not None, reason="libjemalloc2 is installed here")
def test_jemalloc_without_the_library_is_refused_before_the_launch():
    """The case that left the simulator running after a failed launch."""
    (problem,) = launch_argument_problems({**GOOD, "allocator": "jemalloc"})
    assert "libjemalloc.so.2" in problem


def _calls(tree: ast.AST) -> list[tuple[int, str]]:
    return sorted(
        (node.lineno, node.func.id)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    )


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_check_every_argument_before_they_create_a_node(path):
    """``launch`` / ``launch_ros`` have no PyPI wheels, so the files are read, not run: every
    node action is made in the one function that first calls ``check_launch_arguments`` with
    every declared argument, and nothing else creates one."""
    tree = ast.parse(path.read_text())
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    declared = {
        call.args[0].value
        for call in ast.walk(functions["generate_launch_description"])
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument"
    }
    assert not {n for _, n in _calls(functions["generate_launch_description"])} & NODE_ACTIONS
    (builder,) = [f for f in functions.values() if {n for _, n in _calls(f)} & NODE_ACTIONS]
    calls = _calls(builder)
    check = min(line for line, name in calls if name == "check_launch_arguments")
    assert all(line > check for line, name in calls if name in NODE_ACTIONS)
    arguments = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "ARGUMENTS"
    )
    listed = {element.value for element in arguments.elts}
    assert declared - {"namespace", "odom_topic", "drive_topic"} <= listed, path.name
