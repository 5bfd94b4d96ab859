"""Plausibility checks on the node's inputs, with declared thresholds (ROS parameters, read
every cycle). Plain numbers in, a fault string (``"cause: detail"``) or ``None`` out, so each
check is testable without ROS; :class:`mppi_ros.ros.controller.inputs.InputMonitor` applies
them to the messages."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

# A position jump holds the brake until the odometry has been continuous this long: one
# consistent message after a teleport is not yet trust.
JUMP_SETTLE_S = 0.2
# A failed placement check clears inside this fraction of its limit (hysteresis).
RECOVERY_MARGIN = 0.8
# Raceline points may lie this far outside the road the borders give (polyline rounding).
BORDER_TOLERANCE_M = 0.05

# name -> (default, description, range): declared as live node parameters.
PLAUSIBILITY_PARAMETERS: dict[str, tuple[float, str, tuple[float, float]]] = {
    "plausible_speed": (
        25.0,
        "Odometry faster than this (m/s, either direction) is implausible: brake.",
        (0.1, 200.0),
    ),
    "plausible_yaw_rate": (
        30.0,
        "Odometry turning faster than this (rad/s) is implausible: brake.",
        (0.1, 100.0),
    ),
    "plausible_jump": (
        1.0,
        "A position that moved this much (m) more than its speed allows since the previous "
        f"odometry is a jump: brake until the odometry has been continuous for {JUMP_SETTLE_S} s.",
        (0.01, 100.0),
    ),
    "quaternion_tolerance": (
        0.1,
        "Odometry whose orientation quaternion's norm differs from 1 by more than this: brake.",
        (1e-6, 1.0),
    ),
    "max_stamp_ahead": (
        0.5,
        "Odometry stamped more than this (s) ahead of the node's clock is dropped (it would "
        "make every later message look out of order) and named in the diagnostics.",
        (0.001, 100.0),
    ),
    "max_reference_distance": (
        5.0,
        "A car farther than this (m) from the nearest reference point: brake.",
        (0.1, 1000.0),
    ),
    "max_heading_error": (
        2.0,
        "A reference running against the car: its heading differs from the car's by more "
        "than this (rad) at the nearest point: brake.",
        (0.1, math.pi),
    ),
}


@dataclasses.dataclass(frozen=True)
class PlausibilityLimits:
    """The thresholds of :data:`PLAUSIBILITY_PARAMETERS`."""

    plausible_speed: float = 25.0
    plausible_yaw_rate: float = 30.0
    plausible_jump: float = 1.0
    quaternion_tolerance: float = 0.1
    max_stamp_ahead: float = 0.5
    max_reference_distance: float = 5.0
    max_heading_error: float = 2.0

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> PlausibilityLimits:
        """The limits from a mapping holding (at least) every field's name."""
        return cls(**{f.name: float(values[f.name]) for f in dataclasses.fields(cls)})


def quaternion_fault(x: float, y: float, z: float, w: float, tolerance: float) -> str | None:
    """A zero or non-unit orientation quaternion."""
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not abs(norm - 1.0) <= tolerance:  # also catches NaN
        return f"bad_quaternion: orientation norm {norm:.3g} (1 within {tolerance:g} expected)"
    return None


def motion_fault(speed: float, yaw_rate: float, limits: PlausibilityLimits) -> str | None:
    """A speed or yaw rate beyond what the car can do."""
    if abs(speed) > limits.plausible_speed:
        return f"implausible_speed: {speed:.1f} m/s (limit {limits.plausible_speed:g})"
    if abs(yaw_rate) > limits.plausible_yaw_rate:
        return f"implausible_yaw_rate: {yaw_rate:.1f} rad/s (limit {limits.plausible_yaw_rate:g})"
    return None


def jump_fault(
    moved: float, seconds: float, speed: float, previous_speed: float, limit: float
) -> str | None:
    """A position that moved ``moved`` m in ``seconds`` (between two odometry stamps) further
    than the faster of the two speeds explains by more than ``limit``."""
    allowed = max(abs(speed), abs(previous_speed)) * max(seconds, 0.0) + limit
    if moved > allowed:
        return (
            f"position_jump: odometry moved {moved:.2f} m in {seconds:.3f} s "
            f"(allowed {allowed:.2f})"
        )
    return None


def reference_fault(
    position: np.ndarray,
    yaw: float,
    reference_xy: np.ndarray,
    reference_psi: np.ndarray,
    limits: PlausibilityLimits,
    holding: bool = False,
) -> str | None:
    """A reference too far from the car, or running against its heading (``None`` also
    without a reference). ``holding``: the last check failed; it clears only inside
    ``RECOVERY_MARGIN`` of each limit, so a car stopped at a limit (spun off the road while
    the controller was frozen) stays stopped instead of creeping away between faults."""
    if len(reference_xy) == 0:
        return None
    margin = RECOVERY_MARGIN if holding else 1.0
    d2 = np.sum((reference_xy - position) ** 2, axis=1)
    nearest = int(np.argmin(d2))
    distance = math.sqrt(float(d2[nearest]))
    if distance > margin * limits.max_reference_distance:
        return (
            f"reference_far: the car is {distance:.1f} m from the reference "
            f"(limit {limits.max_reference_distance:g})"
        )
    error = abs(math.remainder(yaw - float(reference_psi[nearest]), 2.0 * math.pi))
    if error > margin * limits.max_heading_error:
        return (
            f"reference_reversed: the reference heads {math.degrees(error):.0f} deg away from "
            f"the car (limit {math.degrees(limits.max_heading_error):.0f})"
        )
    return None


def border_fault(border: np.ndarray) -> str | None:
    """Borders inconsistent with the reference: raceline points off the road they give.

    Args:
        border: ``(N, 4)`` rows ``(a, b, c_left, c_right)`` measured from each raceline point
            (:func:`mppi_ros.core.tracks.track.local_border`): the point is on the road when
            ``c_right <= 0 <= c_left``.
    """
    outside = np.maximum(-border[:, 2], border[:, 3])
    off = outside > BORDER_TOLERANCE_M
    if np.any(off):
        return (
            f"inconsistent_borders: {int(np.sum(off))} of {len(border)} reference points lie "
            f"outside the road the borders give (up to {float(outside.max()):.2f} m)"
        )
    return None
