"""Speed profiles: friction- and acceleration-limited speed along a closed raceline.

A profile is part of the reference: the reference window advances along it (scaled and capped
live by the tuning), so a car slows for a hairpin before it reaches it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

GRAVITY = 9.81


@dataclasses.dataclass(frozen=True)
class ProfileLimits:
    """What bounds the speed along a raceline.

    Attributes:
        lateral_accel: Largest lateral acceleration ``v^2 |kappa|`` (m/s^2), e.g. ``mu g``.
        max_accel: Largest forward acceleration (m/s^2).
        max_decel: Largest braking deceleration (m/s^2, positive).
        max_speed: Speed cap (m/s).
        v_switch: Above this speed the forward acceleration falls as ``max_accel v_switch / v``
            (the single-track model's motor limit); ``None`` = no fall-off.
        friction_circle: Longitudinal and lateral acceleration share one budget
            (``ax^2 + ay^2 <= lateral_accel^2``), so the car does not brake at full force
            mid-corner.
    """

    lateral_accel: float = 8.0
    max_accel: float = 5.0
    max_decel: float = 7.0
    max_speed: float = 10.0
    v_switch: float | None = None
    friction_circle: bool = False

    def __post_init__(self) -> None:
        for name in ("lateral_accel", "max_accel", "max_decel", "max_speed"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and positive, got {value}")

    @classmethod
    def for_vehicle(
        cls, params: Any, max_speed: float = 10.0, friction_scale: float = 1.0
    ) -> ProfileLimits:
        """The limits of a single-track parameter set: ``mu g`` laterally (the model's full
        friction times ``friction_scale``), its acceleration limit with the ``v_switch``
        fall-off forwards and braking at ``a_max``."""
        mu = float(params.mu) * friction_scale
        return cls(
            lateral_accel=mu * GRAVITY,
            max_accel=float(params.a_max),
            max_decel=float(params.a_max),
            max_speed=max_speed,
            v_switch=float(params.v_switch),
            friction_circle=True,
        )


def _forward_accel(limits: ProfileLimits, v: float) -> float:
    if limits.v_switch is not None and v > limits.v_switch:
        return limits.max_accel * limits.v_switch / v
    return limits.max_accel


def _budget(limits: ProfileLimits, v: float, kappa: float, along: float) -> float:
    """Longitudinal acceleration left at speed ``v`` on curvature ``kappa``."""
    if not limits.friction_circle:
        return along
    lateral = v * v * abs(kappa)
    room = limits.lateral_accel**2 - lateral**2
    return min(along, math.sqrt(room)) if room > 0 else 0.0


def limited_profile(
    s: np.ndarray, kappa: np.ndarray, length: float, limits: ProfileLimits
) -> np.ndarray:
    """Curvature-limited speed profile with acceleration and braking limits on a closed loop.

    ``v <= sqrt(lateral_accel / |kappa|)`` and ``<= max_speed``, then a forward pass
    (accelerating) and a backward pass (braking) over two laps so the limits also hold across
    the start line.
    """
    v = np.minimum(
        limits.max_speed, np.sqrt(limits.lateral_accel / np.maximum(np.abs(kappa), 1e-6))
    )
    ds = np.diff(np.concatenate([s, [length]]))
    n = len(v)
    for _ in range(2):
        for i in range(n):  # forward: v_{i+1}^2 <= v_i^2 + 2 a ds
            j = (i + 1) % n
            a = _budget(limits, v[i], kappa[i], _forward_accel(limits, v[i]))
            v[j] = min(v[j], math.sqrt(v[i] ** 2 + 2.0 * a * ds[i]))
        for i in range(n - 1, -1, -1):  # backward: v_i^2 <= v_{i+1}^2 + 2 d ds
            j = (i + 1) % n
            d = _budget(limits, v[j], kappa[j], limits.max_decel)
            v[i] = min(v[i], math.sqrt(v[j] ** 2 + 2.0 * d * ds[i]))
    return v


def speed_profile(
    s: np.ndarray,
    kappa: np.ndarray,
    length: float,
    max_speed: float,
    lateral_accel: float = 8.0,
    max_accel: float = 5.0,
    max_decel: float = 7.0,
) -> np.ndarray:
    """:func:`limited_profile` with plain limits (the built-in tracks' generator)."""
    if max_speed <= 0:
        raise ValueError(f"max_speed must be positive, got {max_speed}")
    limits = ProfileLimits(lateral_accel, max_accel, max_decel, max_speed)
    return limited_profile(s, kappa, length, limits)


def accel_from_speed(s: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """Longitudinal acceleration ``v dv/ds`` of a speed profile (the CSV's ``ax_mps2``)."""
    ds = np.diff(np.concatenate([s, [s[-1] + (s[-1] - s[-2])]]))
    return speed * (np.roll(speed, -1) - speed) / np.maximum(ds, 1e-9)


def profile_lap_time(s: np.ndarray, speed: np.ndarray, length: float) -> float:
    """Time of one lap driven exactly at the profile (trapezoidal in arc length)."""
    ds = np.diff(np.concatenate([s, [length]]))
    mean_v = 0.5 * (speed + np.roll(speed, -1))
    if np.any(mean_v <= 0):
        return float("inf")
    return float(np.sum(ds / mean_v))
