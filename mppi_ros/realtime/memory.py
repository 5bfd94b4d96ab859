"""Memory for a real-time loop: the C heap allocator of this process and of the node
processes it starts, returning freed heap to the OS, and the garbage collector's hold on
long-lived objects (no JAX, no ROS: the launch files import it).

glibc's malloc keeps freed memory in fragmented arenas: in the controller node, freeing a
replaced 22 MB XLA executable gave 1 MB back to the OS even after ``malloc_trim``, so every
shape change left resident memory behind. jemalloc returns it: through the same swap and
``num_samples`` change of ``mppi-ros bench ros`` resident memory moved -0.9 % with jemalloc
and +6.4 % with glibc (same session, 60 s runs). The controller process is started with
jemalloc where it is installed (``allocator`` ``auto``).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
from collections.abc import Callable
from typing import TypeVar

ALLOCATORS = ("auto", "glibc", "jemalloc")
JEMALLOC_CONF = "background_thread:true"
# jemalloc's "purge every arena" control (MALLCTL_ARENAS_ALL is 4096).
_JEMALLOC_PURGE_ALL = b"arena.4096.purge"
# Where Debian/Ubuntu's libjemalloc2 puts the library.
_JEMALLOC_PATHS = tuple(
    f"/usr/lib/{arch}-linux-gnu/libjemalloc.so.2" for arch in ("x86_64", "aarch64", "arm")
)


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library's symbols as loaded in this process (looked up once)."""
    return ctypes.CDLL(None, use_errno=True)


def release_free_heap() -> bool:
    """Returns the C heap's free memory to the OS (glibc ``malloc_trim``, or an immediate
    purge of every arena under jemalloc); False where the C library offers neither.

    An XLA compile frees most of what it allocated, but glibc keeps it in the compiling
    thread's arena: without this each background build left ~35-170 MB of resident memory
    behind (measured on Step-MPPI builds). Runs without the GIL; takes 5-35 ms.
    """
    lib = libc()
    mallctl = getattr(lib, "mallctl", None)
    if mallctl is not None:  # jemalloc is the process's allocator (LD_PRELOAD)
        mallctl(_JEMALLOC_PURGE_ALL, None, None, None, ctypes.c_size_t(0))
    trim = getattr(lib, "malloc_trim", None)
    if trim is not None:
        trim(0)
    return mallctl is not None or trim is not None


@functools.cache  # fixed when the process starts
def heap_allocator() -> str:
    """``jemalloc`` when this process allocates with jemalloc (preloaded), else ``glibc``."""
    return "jemalloc" if getattr(libc(), "mallctl", None) is not None else "glibc"


def jemalloc_library() -> str | None:
    """Path of an installed jemalloc shared library (Debian/Ubuntu ``libjemalloc2``), or
    None. ``MPPI_ROS_JEMALLOC`` names another one."""
    candidates = [os.environ.get("MPPI_ROS_JEMALLOC", ""), *_JEMALLOC_PATHS]
    return next((path for path in candidates if path and os.path.isfile(path)), None)


def allocator_environment(choice: str) -> dict[str, str]:
    """Environment variables that start a child process with heap allocator ``choice``:
    ``glibc``, ``jemalloc`` (its library must be installed) or ``auto`` (jemalloc when
    installed, else glibc).

    Raises:
        ValueError: Unknown choice, or ``jemalloc`` without the library.
    """
    if choice not in ALLOCATORS:
        raise ValueError(f"unknown allocator {choice!r}; valid: {', '.join(ALLOCATORS)}")
    library = jemalloc_library() if choice != "glibc" else None
    if choice == "jemalloc" and library is None:
        raise ValueError(
            "allocator 'jemalloc' needs libjemalloc.so.2 (apt install libjemalloc2, or set "
            "MPPI_ROS_JEMALLOC to the library's path)"
        )
    if library is None:
        return {}
    preload = " ".join(p for p in (library, os.environ.get("LD_PRELOAD", "")) if p)
    # Decay purging on jemalloc's own thread, not inline in whichever thread frees (the
    # control thread included); a MALLOC_CONF of the user's wins.
    conf = os.environ.get("MALLOC_CONF", JEMALLOC_CONF)
    return {"LD_PRELOAD": preload, "MALLOC_CONF": conf}


T = TypeVar("T")


def split_retired(retired: list[T], shared: Callable[[T], bool]) -> tuple[list[T], list[T]]:
    """``(those of retired for which shared() holds, the rest)``, in order.

    A function of its own so that no loop variable outlives the call: one left in the
    caller's frame kept the last retired controller (and its executable) alive past the
    caller's ``del``, so XLA's teardown ran later than the cycle gate had placed it.
    """
    flags = [shared(item) for item in retired]
    return (
        [item for item, flag in zip(retired, flags, strict=True) if flag],
        [item for item, flag in zip(retired, flags, strict=True) if not flag],
    )


def freeze_heap() -> None:
    """Collects, then moves every live object out of the cyclic garbage collector's view
    (``gc.freeze``) and leaves full collections to explicit calls.

    A full collection walks every tracked object with the GIL held: with JAX's caches that is
    50-90 ms, several missed cycles. Once the configured controller is frozen, a later call
    walks only what was made since (1-2 ms after a background build whose JAX caches were
    released); young-generation collections still run and stay sub-millisecond.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000_000)
