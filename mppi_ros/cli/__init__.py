"""The `mppi-ros` command: benchmarks, demo, track tools.

mppi-ros bench closed-loop --track default --controllers mppi --laps 2 --json out.json
mppi-ros bench latency --controllers mppi --num-samples 1024,16384 --json lat.json
mppi-ros train step-mppi|dpc --config config/train/f1tenth_step_mppi.yaml --out models/NAME
mppi-ros export onnx MODEL [--out FILE]
mppi-ros demo
mppi-ros tracks list | generate [--out DIR] | show NAME --plot FILE.png
"""

# The docstring above is the description of ``mppi-ros --help``. Subcommands live by family:
# arguments (shared option types and groups), bench, training (train, eval) and tools (demo,
# export, inspect, tracks); each registers its parsers with ``add_parsers``.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mppi_ros.cli import bench, tools, training


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``mppi-ros`` command; each subcommand sets ``func``."""
    parser = argparse.ArgumentParser(
        prog="mppi-ros", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bench.add_parsers(sub)
    training.add_parsers(sub)
    tools.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``mppi-ros ARGV``; returns the exit status (2 for bad user input)."""
    args = build_parser().parse_args(argv)
    from mppi_ros.realtime.jax_runtime import enable_compilation_cache

    enable_compilation_cache()
    try:
        return args.func(args)
    except ValueError as err:  # bad user input: one clear line, no traceback
        print(f"mppi-ros: error: {err}", file=sys.stderr)
        return 2
