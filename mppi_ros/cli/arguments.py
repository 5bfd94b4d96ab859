"""Argument types and argument groups shared by the ``mppi-ros`` subcommands.

Parsing the command line must not import JAX or ROS: the heavy imports here happen inside
the functions that need them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mppi_ros.bench.reference import SPEED_PROFILES, add_speed_arguments

if TYPE_CHECKING:
    from mppi_ros.ros.graph import GraphSpeed


def _positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _csv_list(text: str) -> tuple[str, ...]:
    """A non-empty comma-separated list of names (argparse type)."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _int_list(text: str) -> tuple[int, ...]:
    """A non-empty comma-separated list of integers (argparse type)."""
    try:
        return tuple(int(t) for t in _csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _cpu_list(text: str) -> tuple[int, ...] | str:
    """``auto``, ``none`` or a comma-separated CPU list (``2,3``)."""
    if text in ("auto", "none"):
        return "auto" if text == "auto" else ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, none or CPUs like 2,3; got {text!r}"
        ) from None


def _parameter(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` with the value read as YAML (``0`` is an int, ``[1, 2]`` a list)."""
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"bad value for {name}: {err}") from None


def _emit(report: dict[str, Any], json_path: str | None) -> None:
    """Prints a report as JSON and, given ``json_path``, also writes it there.

    Args:
        report: The JSON-serialisable report.
        json_path: A file to write (parent folders are created), or ``None``.
    """
    text = json.dumps(report, indent=2)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text + "\n")
    print(text)


def _add_closed_loop_args(p: argparse.ArgumentParser, laps: int) -> None:
    """Adds the options of a simulated closed-loop benchmark.

    Args:
        p: The subcommand's parser.
        laps: The default of ``--laps``.
    """
    p.add_argument(
        "--track",
        default="default",
        help="built-in name, procedural:SEED, or a raceline/centerline CSV",
    )
    p.add_argument(
        "--controllers",
        type=_csv_list,
        default=("mppi",),
        help="comma-separated NAME[@SAMPLES]: mppi, step_mppi, dpc (shipped weights) or a "
        "bundle folder, e.g. mppi@16384,step_mppi,step_mppi@256,dpc",
    )
    p.add_argument("--laps", type=int, default=laps)
    add_speed_arguments(p, profile="constant")
    p.add_argument("--friction-scale", type=float, default=1.0)
    p.add_argument("--plant-dt", type=float, default=0.01)
    p.add_argument(
        "--control-period",
        type=float,
        default=None,
        help="seconds between controller calls, a multiple of --plant-dt (default: every plant "
        "step)",
    )
    p.add_argument(
        "--steer-delay-steps",
        type=int,
        default=2,
        help="plant steps between a steering command and its effect",
    )
    p.add_argument("--num-samples", type=int, default=None)
    p.add_argument("--horizon", type=int, default=None, help="classic MPPI horizon")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the JSON report here")
    p.add_argument("--plot", default=None, help="write a PNG of paths and errors here")


def _add_graph_speed_arguments(p: argparse.ArgumentParser) -> None:
    """The speed law of a node graph (:class:`mppi_ros.ros.graph.GraphSpeed`)."""
    p.add_argument(
        "--speed-profile",
        choices=SPEED_PROFILES,
        default="constant",
        help="constant: the controller's reference speed throughout; track: the track's speed "
        "profile (timed reference path); friction: one computed from curvature, mu and the "
        "acceleration limits (default: %(default)s)",
    )
    p.add_argument("--speed-scale", type=float, default=1.0, help="multiplies the profile")
    p.add_argument(
        "--reference-speed",
        type=float,
        default=None,
        help="constant speed, or the cap of a profile (m/s; default: the model's)",
    )


def _graph_speed(args: argparse.Namespace) -> GraphSpeed:
    """The :class:`~mppi_ros.ros.graph.GraphSpeed` of parsed speed options.

    Raises:
        ValueError: ``--speed-scale`` or ``--reference-speed`` is not positive.
    """
    from mppi_ros.ros.graph import GraphSpeed

    if not (args.speed_scale > 0 and (args.reference_speed is None or args.reference_speed > 0)):
        raise ValueError("--speed-scale and --reference-speed must be > 0")
    return GraphSpeed(args.speed_profile, args.speed_scale, args.reference_speed)
