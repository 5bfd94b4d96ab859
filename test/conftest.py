"""Shared fixtures. JAX's persistent compilation cache keeps repeated compiles cheap, and each
test session gets its own ROS domain so parallel runs never see each other."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPPI_ROS_JAX_CACHE", str(REPO / ".cache" / "jax"))
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from mppi_ros.runtime import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def default_track():
    from mppi_ros.core.tracks import load_track

    return load_track("default")
