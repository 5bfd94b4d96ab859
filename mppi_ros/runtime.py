"""Process-wide JAX settings shared by the CLI, the nodes and the tests."""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import jax

# Compiles shorter than this are not written to the persistent cache.
CACHE_MIN_COMPILE_S = 0.5


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
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def persistent_cache_writes(enabled: bool) -> None:
    """Whether compiles write the persistent compilation cache (reads are unaffected).

    Writing serialises the executable in one C++ call that holds the GIL (~20 ms for a
    Step-MPPI step, seen in the controller's stall log inside ``put_executable_and_time``), so
    the controller node turns writes off while its control loop runs.
    """
    threshold = CACHE_MIN_COMPILE_S if enabled else float("inf")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", threshold)


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library's symbols as loaded in this process (looked up once)."""
    return ctypes.CDLL(None, use_errno=True)


def release_free_heap() -> bool:
    """Returns the C heap's free memory to the OS (glibc ``malloc_trim``); False where the C
    library has none.

    An XLA compile frees most of what it allocated, but glibc keeps it in the compiling
    thread's arena: without this each background build left ~35-170 MB of resident memory
    behind (measured on Step-MPPI builds). Runs without the GIL; takes 5-35 ms.
    """
    trim = getattr(libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def synchronous_cpu_dispatch() -> None:
    """Runs CPU computations on the calling thread instead of JAX's dispatch threads.

    With asynchronous dispatch (JAX's default) a call only enqueues the computation and
    normal-priority worker threads run it, so a real-time control thread's priority and CPU
    placement do not reach the compute, and every step pays two thread hand-offs. Only for
    processes that block on each result anyway (the controller node does).
    """
    jax.config.update("jax_cpu_enable_async_dispatch", False)
