"""Lap and border-excursion counting, shared by the offline closed loop
(:func:`mppi_ros.sim.closed_loop.run_closed_loop`) and the ``vehicle_simulator`` node.

Plain Python on per-step samples, so both count the same way and the counting can be
unit-tested without a plant.
"""

from __future__ import annotations

from collections.abc import Iterable


class LapCounter:
    """Counts laps from the projected progress along a closed raceline.

    The progress (arc length in ``[0, length)``) is unwrapped into a cumulative distance from
    the start; a lap is counted each time that distance passes another full track length, so
    crossing the start line backwards and forwards again never counts twice.

    Attributes:
        track_length: Length of the raceline (m).
        distance: Unwrapped progress since the start (m); negative when driven backwards.
        lap_times: Duration (s) of each completed lap.
    """

    def __init__(self, track_length: float, progress: float = 0.0, time: float = 0.0) -> None:
        """Counts on a raceline of ``track_length`` (m) from ``progress`` (m) at ``time`` (s).

        Raises:
            ValueError: For a track length that is not positive.
        """
        if not track_length > 0.0:
            raise ValueError(f"track_length must be positive, got {track_length}")
        self.track_length = float(track_length)
        self.reset(progress, time)

    def reset(self, progress: float, time: float) -> None:
        """Starts counting again from ``progress`` (m) at ``time`` (s)."""
        self.distance = 0.0
        self.lap_times: list[float] = []
        self._last_progress = float(progress)
        self._lap_start = float(time)

    @property
    def laps(self) -> int:
        """Completed laps."""
        return len(self.lap_times)

    def update(self, progress: float, time: float) -> bool:
        """Adds a new progress sample; returns True when it completes a lap.

        Between two samples the car is taken to have moved less than half a track length
        (the shorter way round), which is what makes the unwrapping well defined.

        Args:
            progress: Projected arc length along the raceline, in ``[0, length)``.
            time: Current time (s), for the lap times.
        """
        length = self.track_length
        step = (float(progress) - self._last_progress + length / 2.0) % length - length / 2.0
        self._last_progress = float(progress)
        self.distance += step
        if self.distance >= (self.laps + 1) * length:
            self.lap_times.append(float(time) - self._lap_start)
            self._lap_start = float(time)
            return True
        return False


class ExcursionCounter:
    """Counts separate excursions: each rise of a violation from zero to above zero.

    Attributes:
        count: Excursions started so far.
        active: Whether the last sample was over the limit.
    """

    def __init__(self) -> None:
        self.count = 0
        self.active = False

    def reset(self) -> None:
        """Clears the count; the next sample over the limit starts a new excursion."""
        self.count = 0
        self.active = False

    def update(self, violation: float) -> bool:
        """Adds a sample; returns True when it starts a new excursion."""
        over = bool(violation > 0.0)  # NaN is not over
        started = over and not self.active
        self.active = over
        self.count += int(started)
        return started


def count_excursions(violations: Iterable[float]) -> int:
    """Number of separate excursions in a series of violation samples (see
    :class:`ExcursionCounter`; a series that starts over the limit counts from its start)."""
    counter = ExcursionCounter()
    for violation in violations:
        counter.update(float(violation))
    return counter.count
