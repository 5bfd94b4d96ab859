"""The control loop's health, kept by the control thread (no ROS): timing statistics and the
watchdog's fault bookkeeping."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import time

import numpy as np


class LoopStats:
    """Control-loop timing: latency and data-age windows, missed cycles, measured rate.

    A cycle is missed when the gap between two tick starts exceeds 1.5 periods (each whole
    extra period counts once).
    """

    def __init__(self, period: float, window: int = 2000) -> None:
        self.period = period
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.data_age_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.tick_starts: collections.deque[float] = collections.deque(maxlen=window)
        self.missed_cycles = 0
        self.cycles = 0
        self._last_start: float | None = None

    def tick(self, start: float) -> int:
        """Records a tick start (monotonic seconds); returns the cycles missed before it."""
        missed = 0
        if self._last_start is not None:
            gap = start - self._last_start
            if gap > 1.5 * self.period:
                missed = round(gap / self.period) - 1
        self._last_start = start
        self.missed_cycles += missed
        self.cycles += 1
        self.tick_starts.append(start)
        return missed

    def record(self, latency_s: float, data_age_s: float | None) -> None:
        self.latency_ms.append(latency_s * 1e3)
        if data_age_s is not None:
            self.data_age_ms.append(data_age_s * 1e3)

    def rate_hz(self) -> float:
        if len(self.tick_starts) < 2:
            return 0.0
        span = self.tick_starts[-1] - self.tick_starts[0]
        return (len(self.tick_starts) - 1) / span if span > 0 else 0.0

    def summary(self) -> dict[str, float]:
        def pct(values: collections.deque[float], q: float) -> float:
            return float(np.percentile(values, q)) if values else float("nan")

        return {
            "rate_hz": self.rate_hz(),
            "latency_p50_ms": pct(self.latency_ms, 50),
            "latency_p99_ms": pct(self.latency_ms, 99),
            "data_age_p99_ms": pct(self.data_age_ms, 99),
            "missed_cycles": float(self.missed_cycles),
            "cycles": float(self.cycles),
        }


@dataclasses.dataclass
class Watchdog:
    """Which fault (if any) holds the car, with once-per-cause logging.

    ``report(cause)`` returns True the first time a cause appears (log it then) and again only
    after ``relog_s``; ``clear()`` returns the cause that just ended, if any (log recovery).
    """

    relog_s: float = 5.0
    cause: str | None = None
    faults: int = 0
    _logged_at: dict[str, float] = dataclasses.field(default_factory=dict)

    def report(self, cause: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if cause != self.cause:
            self.faults += 1
        self.cause = cause
        kind = cause.split(":")[0]
        last = self._logged_at.get(kind)
        if last is None or now - last >= self.relog_s:
            self._logged_at[kind] = now
            return True
        return False

    def clear(self) -> str | None:
        ended, self.cause = self.cause, None
        if ended is not None:
            self._logged_at.pop(ended.split(":")[0], None)
        return ended


# The window over which the loop's rate is judged: long enough that one stall (a few hundred
# ms, which the controllers ride through) does not stop the car, short next to the seconds a
# controller held at a fraction of its rate takes to oscillate off the road.
RATE_WINDOW_S = 1.0
# A low rate clears only once the loop runs this much above the limit (no flicker at it).
RATE_RECOVERY = 1.25


def rate_fault(
    tick_starts: collections.deque[float],
    now: float,
    period: float,
    min_fraction: float,
    holding: bool,
    since: float = -math.inf,
) -> str | None:
    """``control_overrun`` when the loop ran fewer than ``min_fraction`` of the cycles due in
    the last :data:`RATE_WINDOW_S` since ``since`` (0: never). ``since``: when the loop last
    started driving; cycles that braked for another fault (a raising step is slow) do not
    count against it.

    A learned controller's commands are designed for one period; a plant holds each until the
    next, so a loop starved to a third of its rate holds every steering rate three times as
    long as planned (the shipped Step-MPPI oscillated off the road at 35 % of 100 Hz; at
    60 % it tracked as well as at full rate). ``holding``: this fault holds the car now.
    """
    if min_fraction <= 0.0 or not tick_starts:
        return None
    window = min(RATE_WINDOW_S, now - max(tick_starts[0], since))
    due = window / period
    if due < 10:  # just activated or recovered: too few cycles to judge
        return None
    ran = sum(1 for _ in itertools.takewhile(lambda t: t > now - window, reversed(tick_starts)))
    limit = min_fraction * (RATE_RECOVERY if holding else 1.0)
    if ran >= limit * due:
        return None
    return (
        f"control_overrun: the loop ran {ran} of the {due:.0f} cycles due in the last "
        f"{window:.1f} s (min_rate_fraction {min_fraction:g})"
    )
