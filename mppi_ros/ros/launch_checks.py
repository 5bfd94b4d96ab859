"""Checks a launch file's arguments before any node process starts (no ROS, no launch).

``launch/*.launch.py`` call :func:`check_launch_arguments` first, inside the one
``OpaqueFunction`` that then creates every node, so a bad choice ends the launch with one
message naming each bad argument and leaves no node running (before, a missing libjemalloc
raised inside the controller's action after the simulator had started, and the simulator
outlived the launch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from mppi_ros.core.tracks.io import (
    CIRCUIT_PREFIX,
    PROCEDURAL_PREFIX,
    TrackFormatError,
    builtin_track_names,
    load_track,
)
from mppi_ros.realtime.memory import allocator_environment
from mppi_ros.ros.f1tenth import f1tenth_topics

TRUE_FALSE = ("true", "false")


class LaunchArgumentError(ValueError):
    """One or more launch arguments cannot run; the message names each."""


def _controller(value: str, args: Mapping[str, str]) -> str | None:
    from mppi_ros.core.catalog import controller_names  # JAX: only when asked

    if value in controller_names():
        return None
    return f"unknown controller; valid: {', '.join(controller_names())}"


def _model_path(value: str, args: Mapping[str, str]) -> str | None:
    """The bundle (empty: the shipped one) must be found and hold the controller's kind."""
    from mppi_ros.core.catalog import controller_names
    from mppi_ros.ros.controller.model_checks import check_model_path

    controller = args.get("controller", "step_mppi")
    if controller not in controller_names():
        return None  # named under controller
    return check_model_path(controller, value)


def _yaml_file(value: str, args: Mapping[str, str]) -> str | None:
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        return f"no such file: {value}"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        return f"{value} is not YAML: {err}"
    if data is not None and not isinstance(data, dict):
        return f"{value} holds no 'node: ros__parameters:' sections"
    return None


def _track(value: str, args: Mapping[str, str]) -> str | None:
    if value in builtin_track_names():
        return None
    for prefix in (PROCEDURAL_PREFIX, CIRCUIT_PREFIX):
        if value.startswith(prefix):
            seed = value[len(prefix) :]
            return None if seed.isdigit() else f"{prefix} needs an integer seed, got {value!r}"
    try:
        load_track(value, raceline="file")  # a CSV: read and checked, never optimised here
    except (TrackFormatError, ValueError, OSError) as err:
        return str(err)
    return None


def _accepted_by(fn: Callable[[str], object]) -> Callable[[str, Mapping[str, str]], str | None]:
    """A check whose reason is the ``ValueError`` that ``fn(value)`` raises."""

    def check(value: str, args: Mapping[str, str]) -> str | None:
        try:
            fn(value)
        except ValueError as err:
            return str(err)
        return None

    return check


def _choice(valid: tuple[str, ...]) -> Callable[[str, Mapping[str, str]], str | None]:
    def check(value: str, args: Mapping[str, str]) -> str | None:
        return None if value.lower() in valid else f"{value!r} is not one of {', '.join(valid)}"

    return check


CHECKS: dict[str, Callable[[str, Mapping[str, str]], str | None]] = {
    "controller": _controller,
    "model_path": _model_path,
    "params_file": _yaml_file,
    "vehicle_params_file": _yaml_file,
    "sim_params_file": _yaml_file,
    "track": _track,
    "allocator": _accepted_by(allocator_environment),
    "autostart": _choice(TRUE_FALSE),
    "use_lifecycle_manager": _choice(TRUE_FALSE),
    "target": _accepted_by(f1tenth_topics),
}


def launch_argument_problems(args: Mapping[str, str]) -> list[str]:
    """``"name: why"`` for each argument of ``args`` (launch argument name -> value) that
    cannot run; arguments without a check are not looked at."""
    problems = []
    for name, value in args.items():
        check = CHECKS.get(name)
        why = check(value, args) if check else None
        if why:
            problems.append(f"{name}:={value!r}: {why}")
    return problems


def check_launch_arguments(args: Mapping[str, str]) -> None:
    """Raises :class:`LaunchArgumentError` naming every bad argument of ``args``."""
    problems = launch_argument_problems(args)
    if problems:
        raise LaunchArgumentError(
            "mppi_ros: nothing was started; fix these launch arguments:\n  " + "\n  ".join(problems)
        )
