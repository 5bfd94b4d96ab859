"""What the ``mppi_controller`` node publishes on ``cmd``: the controller's action turned into
the configured message type, and the safe stop that brakes the car along the reference on a
fault."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from rclpy.duration import Duration
from rclpy.publisher import Publisher

from mppi_ros.core.controllers import TrackingTuning
from mppi_ros.core.prediction import CommandLog
from mppi_ros.engine import CompiledController
from mppi_ros.ros import conversions
from mppi_ros.ros.controller.safe_stop import (
    CommandLimits,
    ramp_fraction,
    stop_control,
    without_reverse,
)

__all__ = ["CommandLimits", "CommandOutput"]


class CommandOutput:
    """Encodes and publishes commands; integrates the steering angle the commands imply; on a
    fault, brakes along the last valid reference (:mod:`.safe_stop`), and ramps the commands
    back in after it.

    Args:
        publisher: The ``cmd`` publisher.
        period: The control period (s).
        live: The loop parameters the control thread reads every cycle (``command_type``,
            ``frame_id``, ``target_lead_time``, ``brake_decel``, ``state_prediction``,
            ``allow_reverse``, ``recovery_ramp_s``).
    """

    def __init__(self, publisher: Publisher, period: float, live: dict[str, Any]) -> None:
        self.publisher, self.period, self._live = publisher, period, live
        self._limits: CommandLimits | None = None
        self.steering = 0.0  # the angle the commands imply, or the last measured one
        self.speed_estimate = 0.0
        self.sent = CommandLog(2)  # controls with their stamps, for latency compensation
        # The last known state and when (ROS s), for the safe stop.
        self._state: tuple[np.ndarray, float] | None = None
        self._braking = False
        self._recovered_at: float | None = None  # ROS seconds of the first command after a fault
        # After :meth:`stop`'s brake nothing else goes out until :meth:`start`: a control
        # cycle still running when the loop was told to stop (a join that timed out under
        # load) once sent a drive command after the exit brake.
        self._lock = threading.Lock()
        self._stopped = False

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
        start = max(measured_at, now - span)
        controls, durations = self.sent.schedule(start, now, delays=self._delays())
        return compiled.predict_state(state, controls, durations, tuning)

    def _delays(self) -> np.ndarray:
        """Per control channel, the actuation delay (s) commands take effect after."""
        delays = np.asarray(self._live["actuation_delays"], np.float64)
        return np.broadcast_to(delays, (self.sent.control_dim,))

    def start(self) -> None:
        """Lets :meth:`publish` and :meth:`brake` send again (activation)."""
        with self._lock:
            self._stopped = False

    def stop(self, stamp, *brake_args) -> None:
        """The last command until :meth:`start`: a :meth:`brake` (same arguments after the
        stamp); commands from a cycle still running are dropped."""
        with self._lock:
            self._stopped = True
            self._brake(stamp, *brake_args)

    def flush(self, timeout_s: float) -> bool:
        """Waits until the subscribers acknowledged every command (reliable QoS), at most
        ``timeout_s``: the process exits right after the brake on the way out."""
        return self.publisher.wait_for_all_acked(Duration(seconds=timeout_s))

    def publish(self, action: np.ndarray, state: np.ndarray, stamp) -> None:
        """The command for ``action`` at ``state``: raw control, or targets led by
        ``target_lead_time`` (ackermann / twist); guarded by :meth:`_guard`. Dropped after
        :meth:`stop`."""
        with self._lock:
            if not self._stopped:
                self._publish(action, state, stamp)

    def _publish(self, action: np.ndarray, state: np.ndarray, stamp) -> None:
        limits, period = self.limits, self.period
        lead = float(self._live["target_lead_time"])
        speed = float(state[limits.speed_index]) if limits.speed_index is not None else 0.0
        self.speed_estimate = speed
        now = conversions.time_to_seconds(stamp)
        self._state = (np.asarray(state, np.float32), now)
        action = self._guard(np.array(action, np.float64), speed, now)
        if limits.steering_limits is not None:
            lo, hi = limits.steering_limits
            self.steering = min(max(self.steering + float(action[0]) * period, lo), hi)
        target_speed = speed + float(action[-1]) * lead
        if not self._live["allow_reverse"]:
            target_speed = max(target_speed, 0.0)
        targets = (
            min(max(self.steering + float(action[0]) * (lead - period), -math.pi), math.pi),
            target_speed,
        )
        self._send(action, targets, stamp)

    def _guard(self, action: np.ndarray, speed: float, now: float) -> np.ndarray:
        """Ramps the controls back in after a fault (each within a growing fraction of its
        bound) and keeps the acceleration from reversing the car unless ``allow_reverse``."""
        limits = self.limits
        if self._braking:
            self._braking, self._recovered_at = False, now
        if self._recovered_at is not None and limits.control_low:
            fraction = ramp_fraction(now - self._recovered_at, float(self._live["recovery_ramp_s"]))
            if fraction >= 1.0:
                self._recovered_at = None
            else:
                low, high = np.asarray(limits.control_low), np.asarray(limits.control_high)
                action = np.clip(action, low * fraction, high * fraction)
        if limits.accel_index is not None and not self._live["allow_reverse"]:
            i = limits.accel_index
            action[i] = without_reverse(float(action[i]), speed, self.period)
        return action

    def brake(self, stamp, *brake_args) -> None:
        """:meth:`_brake`, unless :meth:`stop` sent the last command."""
        with self._lock:
            if not self._stopped:
                self._brake(stamp, *brake_args)

    def _brake(
        self,
        stamp,
        state: np.ndarray | None = None,
        reference_xy: np.ndarray | None = None,
        compiled: CompiledController | None = None,
        tuning: TrackingTuning | None = None,
    ) -> None:
        """Decelerates at ``brake_decel`` without reversing, steering along ``reference_xy``
        (the last valid reference) from ``state`` (odometry that passed its own checks), else
        from the last known state driven forward by ``compiled``'s model with the commands
        sent since; without either it holds the steering angle."""
        limits, period = self.limits, self.period
        decel = float(self._live["brake_decel"])
        now = conversions.time_to_seconds(stamp)
        if limits is None:  # before any model (unused: configure sets one)
            self._send(np.zeros(2), (self.steering, 0.0), stamp)
            return
        if state is not None:
            self._state = (np.asarray(state, np.float32), now)
        elif self._state is not None and compiled is not None and tuning is not None:
            # The dynamics model, not a kinematic bicycle: dead-reckoned kinematically, a
            # stop from 10 m/s in a corner ended up to 1.7 rad and 5 m off (the car slips).
            last, since = self._state
            controls, durations = self.sent.schedule(since, now, delays=self._delays())
            self._state = (compiled.predict_state(last, controls, durations, tuning), now)
        pose = None
        if self._state is not None:
            pose = limits.pose(self._state[0])
            if limits.speed_index is not None:  # the deceleration holds while the car moves
                self.speed_estimate = float(self._state[0][limits.speed_index])
        speed = max(self.speed_estimate, 0.0)
        self.speed_estimate = max(speed - decel * period, 0.0)
        action, self.steering = stop_control(
            limits, pose, speed, self.steering, reference_xy, decel, period
        )
        lead = float(self._live["target_lead_time"])
        self._braking = True
        self._send(action, (self.steering, max(speed - decel * lead, 0.0)), stamp)

    def _send(self, action: np.ndarray, targets: tuple[float, float], stamp) -> None:
        limits = self.limits
        msg = conversions.encode_command(
            self._live["command_type"],
            action,
            targets,
            stamp,
            self._live["frame_id"],
            limits.wheelbase if limits else 1.0,
            limits.control_names if limits else ("steering_rate", "accel"),
        )
        self.publisher.publish(msg)
        self.sent.record(conversions.time_to_seconds(stamp), action)
