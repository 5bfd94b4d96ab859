"""Counting JAX compilations through the public ``jax.monitoring`` events, so that a test can
assert that a call reused a compiled function (no private ``_cache_size``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import jax

_LOWERING = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_counts = threading.local()


def _listener(event: str, duration: float, **_: object) -> None:
    counter = getattr(_counts, "active", None)
    if event == _LOWERING and counter is not None:
        counter.append(duration)


jax.monitoring.register_event_duration_secs_listener(_listener)


@contextlib.contextmanager
def lowerings() -> Iterator[list[float]]:
    """Collects one entry per function JAX lowers to MLIR on this thread inside the block
    (a new trace of a jitted function, or an eager operation seen for the first time)."""
    counter: list[float] = []
    _counts.active = counter
    try:
        yield counter
    finally:
        _counts.active = None
