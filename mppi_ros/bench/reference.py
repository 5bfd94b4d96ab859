"""Command-line options of the closed-loop benchmarks (no JAX imported here)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mppi_ros.core.speed import SpeedSettings

# Literal copies of mppi_ros.core.speed.SPEED_PROFILES and mppi_ros.core.tracks.RACELINE_CHOICES
# (a test keeps them equal): building the command line must not import JAX.
SPEED_PROFILES = ("track", "friction", "constant")
RACELINE_CHOICES = ("auto", "file", "optimise")
DEFAULT_CIRCUIT_CONTROLLERS = ("step_mppi", "dpc", "pure_pursuit", "mppi@1024")
# Generated circuits: training uses seeds 1000-1239, validation 5000-5007.
FIRST_HELD_OUT_SEED = 9000


def add_speed_arguments(
    p: argparse.ArgumentParser, profile: str, reference_speed: float = 10.0
) -> None:
    """``--speed-profile``, ``--speed-scale``, ``--reference-speed``, ``--raceline``."""
    p.add_argument(
        "--speed-profile",
        choices=SPEED_PROFILES,
        default=profile,
        help="track: the file's speed profile; friction: computed from curvature, mu and the "
        "acceleration limits; constant: --reference-speed everywhere (default: %(default)s)",
    )
    p.add_argument("--speed-scale", type=float, default=1.0, help="multiplies the profile")
    p.add_argument(
        "--reference-speed", type=float, default=reference_speed, help="constant speed (m/s)"
    )
    p.add_argument(
        "--raceline",
        choices=RACELINE_CHOICES,
        default="auto",
        help="optimise: the project's minimum-curvature raceline (kept the car's half-width "
        "plus a margin from the edges); file: the file's; auto: the file's, optimised when "
        "only a centerline is given",
    )


def speed_settings(args: argparse.Namespace) -> SpeedSettings:
    """The :class:`SpeedSettings` of parsed :func:`add_speed_arguments` options."""
    from mppi_ros.core.speed import SpeedSettings

    return SpeedSettings(
        profile=args.speed_profile,
        scale=args.speed_scale,
        reference_speed=args.reference_speed,
        raceline=args.raceline,
    )


def add_circuit_arguments(p: argparse.ArgumentParser) -> None:
    """The command-line options of ``mppi-ros bench circuits``."""
    p.add_argument(
        "--controllers",
        type=lambda s: tuple(x for x in s.split(",") if x),
        default=DEFAULT_CIRCUIT_CONTROLLERS,
        help="comma-separated NAME[@SAMPLES] or bundle folders (default: %(default)s)",
    )
    p.add_argument("--circuits", type=int, default=20, help="generated held-out circuits")
    p.add_argument("--first-seed", type=int, default=FIRST_HELD_OUT_SEED)
    p.add_argument(
        "--track",
        action="append",
        default=[],
        help="a raceline/centerline CSV (or any track name) instead of the generated set; "
        "repeatable",
    )
    add_speed_arguments(p, profile="track", reference_speed=8.0)
    p.add_argument("--friction-scale", type=float, default=1.0)
    p.add_argument("--laps", type=int, default=1)
    p.add_argument("--control-period", type=float, default=0.05)
    p.add_argument("--plant-dt", type=float, default=0.01)
    p.add_argument("--steer-delay-steps", type=int, default=2)
    p.add_argument("--horizon", type=int, default=None, help="classic MPPI horizon")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="PNG grid of the paths")
