"""Actuation of the simulated car: what a command means as raw control.

Turns the commands the ``vehicle_simulator`` node accepts (raw control, twist, steering and
speed targets) into the plant's raw control through a first-order servo, and brakes the car
to a stop when commands stop. ROS-free: the node decodes the messages, this module does the
arithmetic.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mppi_ros.core.dynamics import DynamicsModel

MIN_TWIST_SPEED = 0.1  # m/s: below this a yaw rate is turned into steering as if at this speed
# Velocity state entry that each acceleration-like control channel drives (for braking).
BRAKED_VELOCITY = {"accel": "v", "ax": "vx", "ay": "vy"}


@dataclasses.dataclass(frozen=True)
class ServoLimits:
    """What the servo needs to turn steering/speed targets into raw single-track controls.

    Attributes:
        wheelbase: ``lf + lr`` (m).
        delta_min, delta_max: Steering angle limits (rad).
        sv_min, sv_max: Steering rate limits (rad/s).
        a_max: Acceleration limit (m/s^2).
        time_constant: Servo time constant ``tau`` (s).
    """

    wheelbase: float
    delta_min: float
    delta_max: float
    sv_min: float
    sv_max: float
    a_max: float
    time_constant: float

    @classmethod
    def from_params(cls, params: Any, time_constant: float) -> ServoLimits:
        """Limits from a single-track-like parameter pytree."""
        return cls(
            wheelbase=float(params.lf) + float(params.lr),
            delta_min=float(params.delta_min),
            delta_max=float(params.delta_max),
            sv_min=float(params.sv_min),
            sv_max=float(params.sv_max),
            a_max=float(params.a_max),
            time_constant=float(time_constant),
        )


def twist_to_targets(yaw_rate: float, speed: float, wheelbase: float) -> np.ndarray:
    """``[steering angle, speed]`` that give ``yaw_rate`` at ``speed`` (kinematic bicycle).

    The steering angle is ``atan(wheelbase * r / v)`` with ``|v|`` floored at
    :data:`MIN_TWIST_SPEED` (keeping the sign of ``v``, so reversing steers the right way).
    """
    safe_speed = math.copysign(max(abs(speed), MIN_TWIST_SPEED), speed)
    return np.array([math.atan(wheelbase * yaw_rate / safe_speed), speed])


def targets_to_control(
    targets: Sequence[float], steering: float, speed: float, limits: ServoLimits
) -> np.ndarray:
    """Raw control ``[steering rate, accel]`` of a first-order servo towards ``targets``.

    ``rate = clip((target - current) / tau)`` for the steering angle (target clipped to the
    steering limits) and for the speed, within the steering-rate and acceleration limits.
    """
    tau = limits.time_constant
    steering_target = min(max(float(targets[0]), limits.delta_min), limits.delta_max)
    steering_rate = (steering_target - steering) / tau
    accel = (float(targets[1]) - speed) / tau
    return np.array(
        [
            min(max(steering_rate, limits.sv_min), limits.sv_max),
            min(max(accel, -limits.a_max), limits.a_max),
        ]
    )


def braking_control(
    model: DynamicsModel,
    x: np.ndarray,
    pending_commands: np.ndarray,
    delay_steps: Sequence[int],
    dt: float,
    a_max: float,
) -> np.ndarray:
    """Raw control that brakes to a stop at most at ``a_max`` without reversing.

    Steering rates (and any channel that drives no velocity) are zero. Each acceleration
    channel cancels the velocity the car will have once the commands still queued in the
    command delay have been applied, so a delayed channel does not overshoot into reverse.

    Args:
        model: The plant model (channel and state names).
        x: Current state.
        pending_commands: The plant's command history, newest first.
        delay_steps: Per control channel, plant steps of delay.
        dt: Plant step (s).
        a_max: Largest deceleration (m/s^2).
    """
    control = np.zeros(model.control_dim)
    for channel, name in enumerate(model.control_names):
        velocity = BRAKED_VELOCITY.get(name)
        if velocity is None or velocity not in model.state_names:
            continue
        delay = int(delay_steps[channel])
        queued = float(np.sum(pending_commands[:delay, channel])) * dt
        expected = float(x[model.state_names.index(velocity)]) + queued
        control[channel] = -min(max(expected / dt, -a_max), a_max)
    return control


def command_to_control(
    kind: str,
    values: np.ndarray,
    steering: float,
    speed: float,
    limits: ServoLimits | None,
) -> np.ndarray:
    """The raw control for a decoded command (see ``conversions.decode_command``).

    Args:
        kind: ``"raw"`` (used as is), ``"twist"`` (``[yaw rate, speed]``) or ``"targets"``
            (``[steering angle, speed]``).
        values: The command values.
        steering: Current steering angle (rad).
        speed: Current speed (m/s).
        limits: Servo settings; required for ``twist`` and ``targets``.

    Raises:
        ValueError: For an unknown kind, or targets without servo limits.
    """
    values = np.asarray(values, float)
    if kind == "raw":
        return values
    if kind not in ("twist", "targets"):
        raise ValueError(f"unknown command kind {kind!r}")
    if limits is None:
        raise ValueError(f"{kind} commands need a model with a steering angle and a speed")
    if kind == "twist":
        values = twist_to_targets(float(values[0]), float(values[1]), limits.wheelbase)
    return targets_to_control(values, steering, speed, limits)


def command_problem(kind: str, values: np.ndarray, model: DynamicsModel) -> str | None:
    """Why a decoded command cannot be used (``"a command with NaN/inf"``, ...), or ``None``.

    Raw commands must hold one value per control channel of ``model``.
    """
    if not np.all(np.isfinite(values)):
        return "a command with NaN/inf"
    if kind == "raw" and len(values) != model.control_dim:
        names = ", ".join(model.control_names)
        return f"an array command of {len(values)} values; expected {model.control_dim} ({names})"
    return None


def vehicle_speed(model: DynamicsModel, x: np.ndarray) -> float:
    """The car's speed (m/s): the state's ``v``, else ``hypot(vx, vy)``, else 0."""
    names = model.state_names
    if "v" in names:
        return float(x[names.index("v")])
    if "vx" in names and "vy" in names:
        return math.hypot(x[names.index("vx")], x[names.index("vy")])
    return 0.0
