"""Generated circuits cached as F1TENTH CSVs, so hundreds of training circuits are generated
once per machine (a few seconds each) and not at the start of every run."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mppi_ros.core.tracks import (
    CIRCUIT_PREFIX,
    Track,
    generate_circuit,
    load_raceline_csv,
    save_track,
)

# Bump when the generator or the raceline optimiser changes what a seed produces.
GENERATOR_VERSION = 1


def cache_dir() -> Path:
    """``$MPPI_ROS_CACHE/circuits-vN`` (default ``~/.cache/mppi_ros``)."""
    root = os.environ.get("MPPI_ROS_CACHE") or Path.home() / ".cache" / "mppi_ros"
    return Path(root) / f"circuits-v{GENERATOR_VERSION}"


def cached_circuit(seed: int) -> Track:
    """``circuit:SEED``, read from the cache or generated and written to it."""
    directory = cache_dir()
    raceline = directory / f"circuit_{seed}_raceline.csv"
    if raceline.exists():
        track = load_raceline_csv(raceline)
        return dataclasses.replace(track, name=f"{CIRCUIT_PREFIX}{seed}")
    track = generate_circuit(seed)
    save_track(track, directory)
    return track
