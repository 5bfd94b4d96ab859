"""Process-wide JAX settings shared by the CLI, the nodes and the tests: the only module of
mppi_ros that touches JAX internals (:func:`jax_internals_problems` says when a JAX upgrade
changed them).

``MPPI_ROS_REALTIME_OFF`` (comma-separated: ``sync_dispatch``, ``cache_release``) turns the
settings that rest on JAX internals off, to measure them against their removal
(``mppi-ros bench ros``)."""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
from jax._src import util as jax_util  # internal: see jax_cache_evictions

# Settings MPPI_ROS_REALTIME_OFF may turn off.
SWITCHES = ("sync_dispatch", "cache_release")


def switched_on(name: str) -> bool:
    """Whether the setting ``name`` (one of :data:`SWITCHES`) is on (the default).

    Raises:
        ValueError: For an unknown name in ``MPPI_ROS_REALTIME_OFF`` (listing the valid ones).
    """
    off = {n for n in os.environ.get("MPPI_ROS_REALTIME_OFF", "").split(",") if n}
    unknown = sorted(off - set(SWITCHES))
    if unknown:
        raise ValueError(
            f"MPPI_ROS_REALTIME_OFF names {unknown}; valid names: {', '.join(SWITCHES)}"
        )
    return name not in off


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


def synchronous_cpu_dispatch() -> None:
    """Runs CPU computations on the calling thread instead of JAX's dispatch threads.

    With asynchronous dispatch (JAX's default) a call only enqueues the computation and
    normal-priority worker threads run it, so a real-time control thread's priority and CPU
    placement do not reach the compute, and every step pays two thread hand-offs. Only for
    processes that block on each result anyway (the controller node does).
    """
    if switched_on("sync_dispatch"):
        jax.config.update(_ASYNC_DISPATCH_FLAG, False)


# Not in JAX's documented options (jax 0.7): checked by jax_internals_problems.
_ASYNC_DISPATCH_FLAG = "jax_cpu_enable_async_dispatch"


# JAX's caches that hold what a compile left behind, emptied first: each entry of these keeps
# the entries above it in the chain alive (executable <- MLIR module <- lowering <- jaxpr).
_EVICT_FIRST = ("_cached_compilation", "_cached_lowering_to_hlo", "_pjit_lower")
# Never emptied: the jitted functions of eager primitive calls (jnp on concrete arrays), whose
# executables live only as long as these entries. Emptied, every eager call of a kind seen
# before compiled again: validating a bundle on the executor thread then took 0.9 s (39
# compiles) instead of 0.03 s.
_KEEP = ("xla_primitive_callable",)


def _eviction_rank(name: str) -> int:
    return next((rank for rank, key in enumerate(_EVICT_FIRST) if key in name), len(_EVICT_FIRST))


def jax_cache_evictions() -> Iterator[tuple[bool, Callable[[], None]]]:
    """Small steps that together empty JAX's in-memory trace, lowering and compile caches, as
    ``(heavy, evict)`` pairs; nothing where this JAX keeps its caches elsewhere.

    JAX keeps the jaxpr, the MLIR module and a reference to the executable of every traced
    function for as long as the function lives (~95 MB for the controller's compile, and as
    much again for each later build). A running step does not need them: its jitted
    function's own C++ cache holds the executable. ``jax.clear_caches`` drops that too (the
    next call recompiles) and frees everything in one GIL-held cascade (50-100 ms); these
    steps evict one traced function at a time from JAX's weakly keyed caches, lowest stage
    first, so that no step frees a large tree (measured <= 2 ms; the plain LRU caches,
    cleared whole, are marked ``heavy``). Eager primitives keep their compiled functions
    (``_KEEP``). Internal JAX API (``jax._src.util._caches``), hence the fallback.
    """
    registry = getattr(jax_util, "_caches", None)
    if registry is None:
        return
    caches = sorted(list(registry.items()), key=lambda item: _eviction_rank(item[1]))
    for cache, name in caches:
        if any(key in name for key in _KEEP):
            continue
        # Only WeakrefLRUCache lists its keys safely (cache_keys of the multi-key variant
        # crashes); the others are cleared whole.
        if hasattr(cache, "evict_weakref") and hasattr(cache, "cache_keys"):
            for key in cache.cache_keys():
                if isinstance(key, tuple) and isinstance(key[0], weakref.ref):
                    yield False, functools.partial(_evict, cache, key[0])
        elif hasattr(cache, "cache_clear"):
            yield True, cache.cache_clear


def _evict(cache: Any, owner_ref: weakref.ref) -> None:
    """Evicts the entries of ``owner_ref``'s object; what that frees is freed in this call
    (no reference to the object outlives it)."""
    owner = owner_ref()
    if owner is not None:
        cache.evict_weakref(owner)


def release_jax_caches(before_each: Callable[[bool], None] | None = None) -> int:
    """Empties JAX's in-memory caches in small steps (:func:`jax_cache_evictions`), calling
    ``before_each(heavy)`` before each one (the controller node waits there for room between
    two control cycles); returns the number of steps.

    Compiled functions keep working without a recompile; tracing anything again (a later
    build) starts from empty caches.
    """
    steps = 0
    if not switched_on("cache_release"):
        return steps
    for heavy, evict in jax_cache_evictions():
        if before_each is not None:
            before_each(heavy)
        evict()
        steps += 1
    return steps


def jax_internals_problems() -> list[str]:
    """What this module relies on and the installed JAX no longer has (empty: all present).

    The settings degrade quietly where an internal is gone (no cache release, asynchronous
    dispatch), so a JAX upgrade is checked here instead: each entry names what changed.
    """
    problems = []
    registry = getattr(jax_util, "_caches", None)
    if registry is None or not hasattr(registry, "items"):
        return ["jax._src.util._caches (the registry of JAX's in-memory caches) is gone"]
    names = list(registry.values())
    for key in (*_EVICT_FIRST, *_KEEP):
        if not any(key in str(name) for name in names):
            problems.append(f"no JAX cache named like {key!r} in jax._src.util._caches")
    if not any(hasattr(c, "evict_weakref") and hasattr(c, "cache_keys") for c in registry):
        problems.append("no cache in jax._src.util._caches has evict_weakref and cache_keys")
    try:
        jax.config.read(_ASYNC_DISPATCH_FLAG)
    except (AttributeError, KeyError) as err:
        problems.append(f"the config flag {_ASYNC_DISPATCH_FLAG!r} is gone ({err})")
    return problems
