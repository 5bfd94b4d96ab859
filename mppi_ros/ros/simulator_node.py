"""``vehicle_simulator`` node: the closed-loop plant of :mod:`mppi_ros.sim` behind ROS topics.

Each timer tick integrates one plant step (RK4, ``dt``) of
:class:`mppi_ros.sim.closed_loop.Plant`, with its command delay, process noise and friction
scaling, and publishes ``odom``; a tick that runs late integrates the missed steps too, so the
simulated time keeps pace with the wall clock times ``real_time_factor``.

Interface:
  * subscribes ``cmd``: ``array`` (std_msgs/Float64MultiArray, the raw control, e.g.
    ``[steering_rate, accel]``), ``twist_stamped`` (geometry_msgs/TwistStamped: speed and yaw
    rate) or ``ackermann`` (ackermann_msgs/AckermannDriveStamped: steering angle and speed),
    reliable, keep-last 1. Twist and Ackermann targets go through a first-order servo
    (``servo_time_constant``). Without a command for ``command_timeout`` simulated seconds the
    car brakes to a stop at ``a_max`` (never reversing) with zero steering rate.
  * publishes ``odom`` (nav_msgs/Odometry, SensorData QoS) every plant step, stamped with the
    simulated time when ``publish_clock`` (then also ``/clock``), else with the node clock;
    ``/diagnostics`` at 2 Hz: one status named after the node with ``laps``, ``lap_times``,
    ``border_violations``, ``lost``, ``sim_time``, ``progress_m``, ``lateral_error_m``,
    ``speed``, ``commands_received`` and ``steering``; ``joint_states``
    (sensor_msgs/JointState, SensorData QoS) with the steering angle as joint
    ``steering_joint``, every plant step with the odometry's stamp (models with a steering
    state; empty ``steering_joint``: not published).
  * service ``~/reset`` (std_srvs/Trigger): the car back at the start line at
    ``initial_speed``, counters cleared; the simulated time keeps running.

Laps are counted from the unwrapped progress along the raceline; ``border_violations`` counts
separate excursions of the car's body over an edge; ``lost`` becomes true when the car is more
than ``lost_distance`` from the raceline (it stays true until a reset; the simulation goes on).
The bookkeeping (laps, excursions, pacing, command conversion, braking) lives in the small
ROS-free helpers at the top of this module so that it can be unit-tested directly.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import (
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from mppi_ros.core.dynamics import DynamicsModel, get_dynamics
from mppi_ros.core.tracks import load_track, project
from mppi_ros.ros.common import RELIABLE_LATEST, describe, run_node
from mppi_ros.ros.conversions import (
    COMMAND_TYPES,
    command_message_class,
    decode_command,
    make_joint_state,
    seconds_to_time,
    state_to_odometry,
)
from mppi_ros.runtime import enable_compilation_cache
from mppi_ros.sim.closed_loop import Plant, PlantState, SimConfig, plant_params, start_state

NODE_NAME = "vehicle_simulator"
DIAGNOSTICS_PERIOD = 0.5  # s (2 Hz)
MAX_CATCH_UP_STEPS = 10  # plant steps one late tick may add to catch up with the wall clock
MIN_TWIST_SPEED = 0.1  # m/s: below this a yaw rate is turned into steering as if at this speed
# Velocity state entry that each acceleration-like control channel drives (for braking).
BRAKED_VELOCITY = {"accel": "v", "ax": "vx", "ay": "vy"}

# rclcpp's ClockQoS: what every ROS time source subscribes with.
CLOCK_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
)


# =========================================================================== pure helpers


class LapCounter:
    """Counts laps from the projected progress along a closed raceline.

    The progress (arc length in ``[0, length)``) is unwrapped into a cumulative distance from
    the start; a lap is counted each time that distance passes another full track length, so
    crossing the start line backwards and forwards again never counts twice.
    """

    def __init__(self, track_length: float, progress: float = 0.0, time: float = 0.0) -> None:
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
        return len(self.lap_times)

    def update(self, progress: float, time: float) -> bool:
        """Adds a new progress sample; returns True when it completes a lap.

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
    """Counts separate excursions: each rise of a violation from zero to above zero."""

    def __init__(self) -> None:
        self.count = 0
        self.active = False

    def reset(self) -> None:
        self.count = 0
        self.active = False

    def update(self, violation: float) -> bool:
        """Adds a sample; returns True when it starts a new excursion."""
        over = violation > 0.0
        started = over and not self.active
        self.active = over
        self.count += int(started)
        return started


class RealTimePacer:
    """How many plant steps a timer tick must integrate to keep pace with the wall clock.

    A timer whose callback runs late skips the periods it missed; the simulator instead
    catches up with extra plant steps (at most ``max_catch_up`` per tick, the rest is skipped)
    so that simulated time keeps advancing at ``dt / period`` times the wall clock.
    """

    def __init__(
        self, period: float, start: float | None = None, max_catch_up: int = MAX_CATCH_UP_STEPS
    ) -> None:
        """Paces ticks of ``period`` seconds from ``start`` (default: the first tick)."""
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


# =========================================================================== the node


def _describe(description: str, read_only: bool = True, **ranges) -> ParameterDescriptor:
    """Simulator parameters are static unless stated otherwise."""
    return describe(description, read_only=read_only, **ranges)


class VehicleSimulator(Node):
    """Simulates one vehicle: ``cmd`` in, ``odom`` (and optionally ``/clock``) out."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._declare_parameters()
        get = lambda name: self.get_parameter(name).value
        self._dt = float(get("dt"))
        self._frame_id = get("frame_id")
        self._child_frame_id = get("child_frame_id")
        self._publish_clock = bool(get("publish_clock"))
        command_type = get("command_type")
        command_class = command_message_class(command_type)  # ValueError: main() reports it

        model = get_dynamics(get("dynamics"))
        unset = Parameter("process_noise_std", Parameter.Type.DOUBLE_ARRAY, [])
        noise = list(self.get_parameter_or("process_noise_std", unset).value)
        if noise and len(noise) != model.state_dim:
            raise ValueError(
                f"process_noise_std needs {model.state_dim} entries "
                f"({', '.join(model.state_names)}), got {len(noise)}"
            )
        delays = tuple(int(d) for d in get("command_delay_steps"))
        if any(d < 0 for d in delays):
            raise ValueError(f"command_delay_steps must be >= 0, got {list(delays)}")
        self._track = load_track(get("track"))
        config = SimConfig(
            dynamics=get("dynamics"),
            plant_dt=self._dt,
            control_period=self._dt,
            command_delay_steps=delays,
            process_noise_std=tuple(float(s) for s in noise) if noise else None,
            friction_scale=float(get("friction_scale")),
            car_half_width=float(get("car_half_width")),
            seed=int(get("seed")),
        )
        arrays = self._track.arrays()
        self._plant = Plant(config, arrays)  # ValueError for delays that do not fit the model
        self._steering_index = _index_or_none(model.state_names, "delta")
        self._speed_index = _index_or_none(model.state_names, "v")
        if command_type != "array" and (self._steering_index is None or self._speed_index is None):
            raise ValueError(
                f"command_type {command_type!r} needs a model with a steering angle and a "
                f"speed; {model.name} has neither, use command_type 'array'"
            )
        self._params = self._plant.params
        self._servo: ServoLimits | None = None
        if self._steering_index is not None:
            self._servo = ServoLimits.from_params(self._params, get("servo_time_constant"))
        self._a_max = float(getattr(self._params, "a_max", 0.0))
        self._check_servo_time_constant(float(get("servo_time_constant")))

        position = jnp.array(model.position_indices or (0, 1))

        def step(plant_state: PlantState, command: jax.Array, tick: jax.Array, params: Any):
            key = jax.random.fold_in(jax.random.PRNGKey(config.seed), tick)
            plant_state, violation, _ = self._plant.advance(plant_state, command, key, params)
            where = project(arrays, plant_state.x[position])
            return plant_state, violation, where.progress, where.lateral_error

        self._step = jax.jit(step)
        self._project = jax.jit(lambda x: project(arrays, x[position]))

        self._tick = 0  # plant steps since start; the simulated time is tick * dt
        self._laps = LapCounter(self._track.length)
        self._excursions = ExcursionCounter()
        self._reset_vehicle()
        self._warm_up()

        self._odom_pub = self.create_publisher(Odometry, "odom", qos_profile_sensor_data)
        self._steering_joint = get("steering_joint") if self._steering_index is not None else ""
        self._joint_pub = (
            self.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
            if self._steering_joint
            else None
        )
        self._clock_pub = (
            self.create_publisher(Clock, "/clock", CLOCK_QOS) if self._publish_clock else None
        )
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._command_sub = self.create_subscription(
            command_class, "cmd", self._on_command, RELIABLE_LATEST
        )
        self._reset_srv = self.create_service(Trigger, "~/reset", self._on_reset)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._pacer = RealTimePacer(self._timer_period())
        self._tick_timer = self.create_timer(self._timer_period(), self._on_tick)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD, self._publish_diagnostics)
        self.get_logger().info(
            f"simulating {model.name} on {self._track.name!r} ({self._track.length:.1f} m) at "
            f"dt={self._dt:g} s x{get('real_time_factor'):g}, command_type={command_type}"
        )

    # ------------------------------------------------------------------ set-up

    def _declare_parameters(self) -> None:
        declare = self.declare_parameter
        declare("track", "default", _describe("Built-in track name or CSV path"))
        declare("dynamics", "single_track", _describe("Plant model (dynamics registry name)"))
        declare(
            "dt", 0.01, _describe("Plant step (s), RK4; one step per tick", float_range=(1e-4, 1.0))
        )
        declare(
            "real_time_factor",
            1.0,
            _describe(
                "Simulated seconds per wall-clock second (tick period = dt / factor)",
                read_only=False,
                float_range=(0.01, 100.0),
            ),
        )
        declare(
            "command_type",
            "array",
            _describe(
                f"Type of cmd: {', '.join(COMMAND_TYPES)}",
                constraints="one of " + ", ".join(COMMAND_TYPES),
            ),
        )
        declare(
            "command_delay_steps",
            [2, 0],
            _describe(
                "Per control channel, plant steps between a command and its effect",
                constraints=">= 0 each",
            ),
        )
        declare(
            "process_noise_std",
            Parameter.Type.DOUBLE_ARRAY,
            _describe("Per state entry, std of additive noise per sqrt(s); unset: no noise"),
        )
        declare(
            "friction_scale",
            1.0,
            _describe(
                "Multiplies the tyre friction coefficient", read_only=False, float_range=(0.05, 5.0)
            ),
        )
        declare(
            "initial_speed",
            0.0,
            _describe(
                "Speed (m/s) at the start line, at start and on reset",
                read_only=False,
                float_range=(-5.0, 20.0),
            ),
        )
        declare(
            "servo_time_constant",
            0.05,
            _describe(
                "Time constant (s) of the servo that follows twist/ackermann targets; >= dt",
                read_only=False,
                float_range=(1e-4, 10.0),
            ),
        )
        declare(
            "command_timeout",
            0.5,
            _describe(
                "Simulated seconds without a command after which the car brakes to a stop",
                read_only=False,
                float_range=(1e-3, 3600.0),
            ),
        )
        declare(
            "publish_clock",
            False,
            _describe("Publish the simulated time on /clock and stamp odom with it"),
        )
        declare(
            "steering_joint",
            "steering",
            _describe("Joint name of the steering angle on joint_states; empty: not published"),
        )
        declare("frame_id", "map", _describe("Odometry frame"))
        declare("child_frame_id", "base_link", _describe("Vehicle frame"))
        declare("seed", 0, _describe("Seed of the process noise", int_range=(0, 2**31 - 1)))
        declare(
            "car_half_width",
            0.155,
            _describe("Half width (m) of the car for border violations", float_range=(0.0, 5.0)),
        )
        declare(
            "lost_distance",
            5.0,
            _describe(
                "Distance (m) from the raceline beyond which the car is reported lost",
                read_only=False,
                float_range=(0.01, 1000.0),
            ),
        )

    def _check_servo_time_constant(self, time_constant: float) -> None:
        if time_constant < self._dt:
            raise ValueError(
                f"servo_time_constant {time_constant:g} s must be at least dt ({self._dt:g} s)"
            )

    def _timer_period(self) -> float:
        return self._dt / float(self.get_parameter("real_time_factor").value)

    def _warm_up(self) -> None:
        """Compiles the step once so the first tick is on time (the result is discarded)."""
        command = jnp.zeros(self._plant.model.control_dim, jnp.float32)
        jax.block_until_ready(self._step(self._plant_state, command, 0, self._params))

    def _reset_vehicle(self) -> None:
        """Puts the car at the start line and clears every counter (sim time keeps running)."""
        speed = float(self.get_parameter("initial_speed").value)
        model = self._plant.model
        self._plant_state = self._plant.initial_state(start_state(model, self._track, speed))
        self._x = np.asarray(self._plant_state.x, np.float64)
        self._history = np.zeros_like(np.asarray(self._plant_state.command_history))
        where = self._project(self._plant_state.x)
        self._progress = float(where.progress)
        self._lateral_error = float(where.lateral_error)
        self._laps.reset(self._progress, self._sim_time)
        self._excursions.reset()
        self._lost = False
        self._command: tuple[str, np.ndarray] | None = None
        self._command_tick = 0
        self._commands_received = 0

    @property
    def _sim_time(self) -> float:
        return self._tick * self._dt

    # ------------------------------------------------------------------ callbacks

    def _on_command(self, msg: Any) -> None:
        """Stores the latest command (converted to raw control on every tick)."""
        kind, values = decode_command(msg)
        if not np.all(np.isfinite(values)):
            self.get_logger().warn("ignoring a command with NaN/inf", throttle_duration_sec=1.0)
            return
        if kind == "raw" and len(values) != self._plant.model.control_dim:
            names = ", ".join(self._plant.model.control_names)
            self.get_logger().warn(
                f"ignoring an array command of {len(values)} values; expected "
                f"{self._plant.model.control_dim} ({names})",
                throttle_duration_sec=1.0,
            )
            return
        self._command = (kind, values)
        self._command_tick = self._tick
        self._commands_received += 1

    def _current_control(self) -> np.ndarray:
        timeout_ticks = float(self.get_parameter("command_timeout").value) / self._dt
        fresh = self._command is not None and self._tick - self._command_tick <= timeout_ticks
        if fresh:
            kind, values = self._command
            steering = float(self._x[self._steering_index]) if self._servo else 0.0
            speed = float(self._x[self._speed_index]) if self._servo else 0.0
            return command_to_control(kind, values, steering, speed, self._servo)
        return braking_control(
            self._plant.model,
            self._x,
            self._history,
            self._plant.config.command_delay_steps,
            self._dt,
            self._a_max,
        )

    def _on_tick(self) -> None:
        """Integrates the plant steps due by the wall clock (normally one) and publishes each."""
        steps, skipped = self._pacer.steps_due(time.monotonic())
        if skipped:
            self.get_logger().warn(
                f"simulation is behind real time: skipped {skipped} plant steps",
                throttle_duration_sec=5.0,
            )
        for _ in range(steps):
            self._step_and_publish()

    def _step_and_publish(self) -> None:
        """Integrates one plant step and publishes the new state."""
        control = jnp.asarray(self._current_control(), jnp.float32)
        self._plant_state, violation, progress, lateral_error = self._step(
            self._plant_state, control, self._tick, self._params
        )
        x, history, violation, progress, lateral_error = jax.device_get(
            (
                self._plant_state.x,
                self._plant_state.command_history,
                violation,
                progress,
                lateral_error,
            )
        )
        self._tick += 1
        self._x = np.asarray(x, np.float64)
        self._history = np.asarray(history)
        self._progress, self._lateral_error = float(progress), float(lateral_error)
        sim_time = self._sim_time
        if self._laps.update(self._progress, sim_time):
            self.get_logger().info(f"lap {self._laps.laps}: {self._laps.lap_times[-1]:.3f} s")
        if self._excursions.update(float(violation)):
            self.get_logger().warn(
                f"border violation #{self._excursions.count} at progress {self._progress:.1f} m",
                throttle_duration_sec=1.0,
            )
        lost_distance = float(self.get_parameter("lost_distance").value)
        if not self._lost and abs(self._lateral_error) > lost_distance:
            self._lost = True
            self.get_logger().error(
                f"car lost: {abs(self._lateral_error):.2f} m from the raceline "
                f"(lost_distance {lost_distance:g} m); still simulating"
            )
        stamp = (
            seconds_to_time(sim_time) if self._publish_clock else self.get_clock().now().to_msg()
        )
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        self._odom_pub.publish(
            state_to_odometry(
                self._x, self._plant.model, stamp, self._frame_id, self._child_frame_id
            )
        )
        if self._joint_pub is not None:
            self._joint_pub.publish(
                make_joint_state(self._steering_joint, self._x[self._steering_index], stamp)
            )

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._reset_vehicle()
        response.success = True
        response.message = f"car reset to the start of {self._track.name!r}"
        self.get_logger().info(response.message)
        return response

    def _speed(self) -> float:
        if self._speed_index is not None:
            return float(self._x[self._speed_index])
        names = self._plant.model.state_names
        if "vx" in names and "vy" in names:
            return math.hypot(self._x[names.index("vx")], self._x[names.index("vy")])
        return 0.0

    def _publish_diagnostics(self) -> None:
        laps = self._laps
        status = DiagnosticStatus(
            name=self.get_name(), hardware_id=f"simulated {self._plant.model.name}"
        )
        if self._lost:
            status.level, status.message = DiagnosticStatus.ERROR, "car lost (off the track)"
        elif self._excursions.active:
            status.level, status.message = DiagnosticStatus.WARN, "over a track border"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"{laps.laps} laps"
        values = {
            "laps": str(laps.laps),
            "lap_times": ",".join(f"{t:.3f}" for t in laps.lap_times),
            "border_violations": str(self._excursions.count),
            "lost": "true" if self._lost else "false",
            "sim_time": f"{self._sim_time:.3f}",
            "progress_m": f"{laps.distance:.3f}",
            "lateral_error_m": f"{self._lateral_error:.3f}",
            "speed": f"{self._speed():.3f}",
            "commands_received": str(self._commands_received),
        }
        if self._steering_index is not None:
            values["steering"] = f"{self._x[self._steering_index]:.4f}"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(msg)

    # ------------------------------------------------------------------ live parameters

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "servo_time_constant" and parameter.value < self._dt:
                return SetParametersResult(
                    successful=False,
                    reason=f"servo_time_constant must be at least dt ({self._dt:g} s)",
                )
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        names = {p.name for p in parameters}
        if "friction_scale" in names:
            scale = float(self.get_parameter("friction_scale").value)
            # Same pytree structure and shapes: the compiled step is reused, no recompilation.
            self._params = plant_params(self._plant.model, scale, self._dt)
        if "servo_time_constant" in names and self._servo is not None:
            self._servo = dataclasses.replace(
                self._servo, time_constant=float(self.get_parameter("servo_time_constant").value)
            )
        if "real_time_factor" in names:
            self.destroy_timer(self._tick_timer)
            self._pacer = RealTimePacer(self._timer_period())
            self._tick_timer = self.create_timer(self._timer_period(), self._on_tick)


def _index_or_none(names: Sequence[str], name: str) -> int | None:
    return names.index(name) if name in names else None


def main(args: list[str] | None = None) -> int:
    """Runs the node until Ctrl-C; returns the process exit code."""
    enable_compilation_cache()
    return run_node(VehicleSimulator, NODE_NAME, (ValueError, ParameterException), args)


if __name__ == "__main__":
    sys.exit(main())
