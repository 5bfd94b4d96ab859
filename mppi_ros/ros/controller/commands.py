"""What the ``mppi_controller`` node publishes on ``cmd``: the controller's action turned into
the configured message type, and the brake that holds the car on a fault."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from rclpy.publisher import Publisher

from mppi_ros.core.controllers import TrackingTuning
from mppi_ros.core.dynamics import DynamicsModel
from mppi_ros.core.prediction import CommandLog
from mppi_ros.engine import CompiledController
from mppi_ros.ros import conversions


@dataclasses.dataclass(frozen=True)
class CommandLimits:
    """Host-side vehicle values the command encoding needs every cycle, read once per model
    (reading them from the tuning's device arrays each cycle costs a transfer each)."""

    control_names: tuple[str, ...]
    speed_index: int | None
    steering_limits: tuple[float, float] | None
    wheelbase: float

    @classmethod
    def from_model(cls, model: DynamicsModel, params: Any) -> CommandLimits:
        names = model.state_names
        steering = (float(params.delta_min), float(params.delta_max)) if "delta" in names else None
        return cls(
            control_names=tuple(model.control_names),
            speed_index=names.index("v") if "v" in names else None,
            steering_limits=steering,
            wheelbase=float(getattr(params, "lf", 0.5) + getattr(params, "lr", 0.5)),
        )

    @classmethod
    def of(cls, compiled: CompiledController) -> CommandLimits:
        """The limits of ``compiled``'s model at its default parameters."""
        model = compiled.controller.model
        return cls.from_model(model, model.physical_params(compiled.default_tuning.model_params))


class CommandOutput:
    """Encodes and publishes commands; integrates the steering angle the commands imply.

    Args:
        publisher: The ``cmd`` publisher.
        period: The control period (s).
        live: The loop parameters the control thread reads every cycle (``command_type``,
            ``frame_id``, ``target_lead_time``, ``brake_decel``, ``state_prediction``).
    """

    def __init__(self, publisher: Publisher, period: float, live: dict[str, Any]) -> None:
        self.publisher, self.period, self._live = publisher, period, live
        self._limits: CommandLimits | None = None
        self.steering = 0.0  # the angle the commands imply, or the last measured one
        self.speed_estimate = 0.0
        self.sent = CommandLog(2)  # controls with their stamps, for latency compensation

    @property
    def limits(self) -> CommandLimits | None:
        return self._limits

    @limits.setter
    def limits(self, limits: CommandLimits) -> None:
        if self._limits is None or limits.control_names != self._limits.control_names:
            self.sent = CommandLog(len(limits.control_names))
        self._limits = limits

    def predict(
        self,
        compiled: CompiledController,
        state: np.ndarray,
        measured_at: float,
        now: float,
        tuning: TrackingTuning,
    ) -> np.ndarray:
        """``state``, measured at ``measured_at``, driven forward to ``now`` (ROS seconds) with
        the commands sent meanwhile, over at most ``state_prediction`` seconds. A stamp in the
        future or older than ``state_timeout`` (odometry stamped on another clock) is used as
        it is: predicting across a clock offset would move the car by the offset."""
        span = float(self._live["state_prediction"])
        if span <= 0.0 or not 0.0 < now - measured_at <= float(self._live["state_timeout"]):
            return state
        controls, durations = self.sent.schedule(max(measured_at, now - span), now)
        return compiled.predict_state(state, controls, durations, tuning)

    def publish(self, action: np.ndarray, state: np.ndarray, stamp) -> None:
        """The command for ``action`` at ``state``: raw control, or targets led by
        ``target_lead_time`` (ackermann / twist)."""
        limits, period = self.limits, self.period
        lead = float(self._live["target_lead_time"])
        speed = float(state[limits.speed_index]) if limits.speed_index is not None else 0.0
        self.speed_estimate = speed
        if limits.steering_limits is not None:
            lo, hi = limits.steering_limits
            self.steering = min(max(self.steering + float(action[0]) * period, lo), hi)
        targets = (
            min(max(self.steering + float(action[0]) * (lead - period), -math.pi), math.pi),
            speed + float(action[-1]) * lead,
        )
        msg = conversions.encode_command(
            self._live["command_type"],
            action,
            targets,
            stamp,
            self._live["frame_id"],
            limits.wheelbase,
            limits.control_names,
        )
        self.publisher.publish(msg)
        self.sent.record(conversions.time_to_seconds(stamp), action)

    def brake(self, stamp) -> None:
        """Zero steering rate and a deceleration that stops without reversing."""
        period = self.period
        decel = float(self._live["brake_decel"])
        speed = max(self.speed_estimate, 0.0)
        accel = -min(decel, speed / period)
        self.speed_estimate = max(speed - decel * period, 0.0)
        action = np.zeros(len(self.limits.control_names) if self.limits else 2)
        action[-1] = accel
        msg = conversions.encode_command(
            self._live["command_type"],
            action,
            (self.steering, 0.0),
            stamp,
            self._live["frame_id"],
            1.0,
        )
        self.publisher.publish(msg)
        self.sent.record(conversions.time_to_seconds(stamp), action)
