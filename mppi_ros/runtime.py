"""Process-wide JAX settings shared by the CLI, the nodes and the tests."""

from __future__ import annotations

import os
from pathlib import Path

import jax


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache (repeat runs skip XLA compilation).

    The directory is ``$MPPI_ROS_JAX_CACHE``, else ``~/.cache/mppi_ros/jax``; setting
    ``MPPI_ROS_JAX_CACHE=off`` disables it.
    """
    choice = directory or os.environ.get("MPPI_ROS_JAX_CACHE")
    if choice == "off":
        return None
    path = Path(choice) if choice else Path.home() / ".cache" / "mppi_ros" / "jax"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def synchronous_cpu_dispatch() -> None:
    """Runs CPU computations on the calling thread instead of JAX's dispatch threads.

    With asynchronous dispatch (JAX's default) a call only enqueues the computation and
    normal-priority worker threads run it, so a real-time control thread's priority and CPU
    placement do not reach the compute, and every step pays two thread hand-offs. Only for
    processes that block on each result anyway (the controller node does).
    """
    jax.config.update("jax_cpu_enable_async_dispatch", False)
