"""Pieces both training loops (BPTT and softMPCritic) share: their error type, the command
line recorded in a bundle's manifest, and the progress bar."""

from __future__ import annotations

import shlex
import sys
from typing import Any


class TrainingError(RuntimeError):
    """A training run cannot start or continue (bad resume, diverged loss...)."""


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """A ``tqdm`` bar over training steps (imported here: only training loops need tqdm)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def command_line() -> str:
    """The command that started this process, for the manifest."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("cli.py", "mppi-ros", "__main__.py")):
        argv[0] = "mppi-ros"
    return shlex.join(argv)
