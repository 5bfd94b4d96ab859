"""Shared fixtures. JAX's persistent compilation cache keeps repeated compiles cheap, and each
test session gets its own ROS domain so parallel runs never see each other."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Under pytest-xdist each worker draws DDS domains from its own slice of 1-101.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# One cache for both workers (each reuses the other's compiles); the test that watches a
# node's cache writes gives that node a directory of its own.
os.environ.setdefault("MPPI_ROS_JAX_CACHE", str(REPO / ".cache" / "jax"))
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
if _WORKER.startswith("gw"):
    _SLICE = 101 // max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    _LO = 1 + int(_WORKER[2:]) * _SLICE
    os.environ["MPPI_ROS_DOMAIN_RANGE"] = f"{_LO}-{_LO + _SLICE - 1}"
    os.environ["ROS_DOMAIN_ID"] = str(_LO)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from mppi_ros.realtime.jax_runtime import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def default_track():
    from mppi_ros.core.tracks import load_track

    return load_track("default")


def _cpu_quota() -> str:
    """The CPU limit of this process's cgroup (v2 ``cpu.max`` or v1 CFS quota), if any."""
    for path, parse in (
        ("/sys/fs/cgroup/cpu.max", lambda t: t.split()),
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", lambda t: [t.strip(), None]),
    ):
        try:
            quota, period = parse(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return "none"
        if period is None:
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        return f"{int(quota) / int(period):.2f} CPUs"
    return "unknown"


def pytest_terminal_summary(terminalreporter) -> None:
    """The machine the suite ran on: the graph tests' timing margins depend on it."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    terminalreporter.write_line(
        f"machine: {os.cpu_count()} CPUs visible, cgroup quota {_cpu_quota()}, "
        f"load average {load} (1, 5, 15 min)"
    )
