"""The safe stop's steering law and the command guards around a fault (NumPy, no ROS).

On a fault the node decelerates along the last valid reference: pure pursuit (the geometric
law ``delta = atan(2 W sin(alpha) / L)``) towards the reference point a lookahead ``L`` ahead
of the car. The car's pose is the latest odometry that passed its own checks (a fault of the
reference still has one), else the last good state driven forward by the controller's own
dynamics model with the brake's commands
(:meth:`mppi_ros.ros.controller.commands.CommandOutput.brake`). Holding the last steering angle
instead left the road in 5 of 11 brakes from 10 m/s.

After a fault, commands are ramped back in: each control is clipped to a fraction of its bound
that grows linearly from :data:`RAMP_FLOOR` to 1 over ``recovery_ramp_s``, so the first
command after a recovery is never a saturated jump.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from mppi_ros.core.dynamics import DynamicsModel
from mppi_ros.engine import CompiledController

LOOKAHEAD_TIME_S = 0.3  # lookahead distance per m/s of speed
LOOKAHEAD_MIN_M = 1.0
LOOKAHEAD_MAX_M = 4.0
RAMP_FLOOR = 0.2  # fraction of each control bound allowed on the first command after a fault
# Time constant of the steering towards the pursuit angle. Closing the whole gap within one
# period chattered between full left and full right rate against a measured angle that lags
# the commands (servo delay, transport): seen in `mppi-ros bench faults`.
STEER_TIME_S = 0.1


@dataclasses.dataclass(frozen=True)
class StopPose:
    """Where the car is (m, m, rad), for the stop's steering."""

    x: float
    y: float
    yaw: float


@dataclasses.dataclass(frozen=True)
class CommandLimits:
    """Host-side vehicle values the command encoding needs every cycle, read once per model
    (reading them from the tuning's device arrays each cycle costs a transfer each)."""

    control_names: tuple[str, ...]
    speed_index: int | None
    steering_limits: tuple[float, float] | None
    wheelbase: float
    control_low: tuple[float, ...] = ()
    control_high: tuple[float, ...] = ()
    pose_indices: tuple[int, int, int] | None = None  # x, y, heading in the state
    accel_index: int | None = None  # the control channel that drives the speed

    @classmethod
    def from_model(cls, model: DynamicsModel, params: Any) -> CommandLimits:
        names = model.state_names
        steering = (float(params.delta_min), float(params.delta_max)) if "delta" in names else None
        low, high = (tuple(float(v) for v in b) for b in model.control_bounds(params))
        pose = None
        if model.position_indices is not None and model.heading_index is not None:
            pose = (*model.position_indices, model.heading_index)
        speed_index = names.index("v") if "v" in names else None
        accel = "accel" in model.control_names and speed_index is not None
        return cls(
            control_names=tuple(model.control_names),
            speed_index=speed_index,
            steering_limits=steering,
            wheelbase=float(getattr(params, "lf", 0.5) + getattr(params, "lr", 0.5)),
            control_low=low,
            control_high=high,
            pose_indices=pose,
            accel_index=model.control_names.index("accel") if accel else None,
        )

    @classmethod
    def of(cls, compiled: CompiledController) -> CommandLimits:
        """The limits of ``compiled``'s model at its default parameters."""
        model = compiled.controller.model
        return cls.from_model(model, model.physical_params(compiled.default_tuning.model_params))

    def pose(self, state: np.ndarray) -> StopPose | None:
        """The car's pose in ``state`` (``None`` for a model without one)."""
        if self.pose_indices is None:
            return None
        i, j, h = self.pose_indices
        return StopPose(float(state[i]), float(state[j]), float(state[h]))


def pursuit_steering(
    pose: StopPose, reference_xy: np.ndarray, speed: float, wheelbase: float
) -> float | None:
    """The steering angle (rad, unclipped) that points the car at the closed reference
    ``reference_xy`` (``(N, 2)``) a lookahead ahead of its nearest point; ``None`` without a
    reference."""
    if len(reference_xy) < 2:
        return None
    here = np.array([pose.x, pose.y])
    nearest = int(np.argmin(np.sum((reference_xy - here) ** 2, axis=1)))
    lookahead = min(max(LOOKAHEAD_TIME_S * max(speed, 0.0), LOOKAHEAD_MIN_M), LOOKAHEAD_MAX_M)
    ahead = np.roll(reference_xy, -nearest, axis=0)
    steps = np.linalg.norm(np.diff(ahead, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    index = min(int(np.searchsorted(arc, lookahead)), len(ahead) - 1)
    dx, dy = ahead[index] - here
    alpha = math.atan2(dy, dx) - pose.yaw
    distance = max(math.hypot(dx, dy), 1e-6)
    return math.atan2(2.0 * wheelbase * math.sin(alpha), distance)


def ramp_fraction(since_recovery_s: float, ramp_s: float) -> float:
    """The fraction of each control bound allowed ``since_recovery_s`` after a fault ended."""
    if ramp_s <= 0.0 or since_recovery_s >= ramp_s:
        return 1.0
    return RAMP_FLOOR + (1.0 - RAMP_FLOOR) * max(since_recovery_s, 0.0) / ramp_s


def without_reverse(accel: float, speed: float, period: float) -> float:
    """The acceleration that does not take ``speed`` below zero within one period."""
    return max(accel, -max(speed, 0.0) / period)


def stop_control(
    limits: CommandLimits,
    pose: StopPose | None,
    speed: float,
    steering: float,
    reference_xy: np.ndarray | None,
    decel: float,
    period: float,
) -> tuple[np.ndarray, float]:
    """One period of the safe stop: the raw control (a deceleration of at most ``decel`` that
    stops without reversing, a steering rate towards :func:`pursuit_steering`'s angle) and the
    steering angle it leads to. Without a pose or reference the steering angle holds. A car
    rolling backwards (pushed, or after a spin) is braked towards zero the same way: a model
    without friction would otherwise roll on at constant speed."""
    action = np.zeros(len(limits.control_names))
    brake = min(decel, abs(speed) / period)
    action[-1 if limits.accel_index is None else limits.accel_index] = -math.copysign(brake, speed)
    speed = max(speed, 0.0)
    target = None
    if pose is not None and reference_xy is not None:
        target = pursuit_steering(pose, reference_xy, speed, limits.wheelbase)
    if target is not None and limits.steering_limits is not None and limits.control_low:
        lo, hi = limits.steering_limits
        rate = (min(max(target, lo), hi) - steering) / max(STEER_TIME_S, period)
        action[0] = min(max(rate, limits.control_low[0]), limits.control_high[0])
        steering = min(max(steering + action[0] * period, lo), hi)
    return action, steering
