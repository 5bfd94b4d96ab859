"""Real-time pacing of a fixed-step simulation driven by a wall-clock timer (used by the
``vehicle_simulator`` node)."""

from __future__ import annotations

MAX_CATCH_UP_STEPS = 10  # plant steps one late tick may add to catch up with the wall clock


class RealTimePacer:
    """How many plant steps a timer tick must integrate to keep pace with the wall clock.

    A timer whose callback runs late skips the periods it missed; the simulator instead
    catches up with extra plant steps (at most ``max_catch_up`` per tick, the rest is skipped)
    so that simulated time keeps advancing at ``dt / period`` times the wall clock.

    Attributes:
        period: Wall-clock seconds per plant step.
        start: Wall-clock time of step zero, or ``None`` until the first tick.
        max_catch_up: Most plant steps one tick integrates.
        steps_done: Plant steps integrated or skipped so far.
    """

    def __init__(
        self, period: float, start: float | None = None, max_catch_up: int = MAX_CATCH_UP_STEPS
    ) -> None:
        """Paces ticks of ``period`` seconds from ``start`` (default: the first tick).

        Raises:
            ValueError: For a period that is not positive.
        """
        if not period > 0.0:
            raise ValueError(f"period must be positive, got {period}")
        self.period = float(period)
        self.start = None if start is None else float(start)
        self.max_catch_up = int(max_catch_up)
        self.steps_done = 0

    def steps_due(self, now: float) -> tuple[int, int]:
        """``(steps to integrate now, steps skipped)`` for a tick at time ``now`` (s).

        Without a ``start`` time, the first tick defines it (and integrates one step).
        """
        if self.start is None:
            self.start = float(now) - self.period
        due = round((now - self.start) / self.period) - self.steps_done
        steps = min(max(due, 0), self.max_catch_up)
        skipped = max(due - steps, 0)
        self.steps_done += steps + skipped
        return steps, skipped
