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
    car brakes to a stop at ``timeout_decel`` (never reversing, steering held); the
    diagnostics say ``command_timeout``.
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
The ROS-free bookkeeping (:mod:`mppi_ros.sim.laps`, ``.pacing``, ``.actuation``) is tested alone.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from mppi_ros.core.dynamics import get_dynamics
from mppi_ros.core.tracks import load_track, project
from mppi_ros.realtime.jax_runtime import enable_compilation_cache
from mppi_ros.ros.common import RELIABLE_LATEST, describe, run_node
from mppi_ros.ros.conversions import (
    command_message_class,
    decode_command,
    make_joint_state,
    seconds_to_time,
    state_to_odometry,
)
from mppi_ros.ros.simulator_parameters import PARAMETERS
from mppi_ros.sim.actuation import (
    ServoLimits,
    braking_control,
    command_problem,
    command_to_control,
    vehicle_speed,
)
from mppi_ros.sim.closed_loop import Plant, PlantState, SimConfig, plant_params, start_state
from mppi_ros.sim.laps import ExcursionCounter, LapCounter
from mppi_ros.sim.pacing import RealTimePacer

NODE_NAME = "vehicle_simulator"
DIAGNOSTICS_PERIOD = 0.5  # s (2 Hz)

# rclcpp's ClockQoS: what every ROS time source subscribes with.
CLOCK_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
)


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
        for name, (default, description, options) in PARAMETERS.items():
            self.declare_parameter(
                name, default, describe(description, **{"read_only": True, **options})
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
        problem = command_problem(kind, values, self._plant.model)
        if problem is not None:
            self.get_logger().warn(f"ignoring {problem}", throttle_duration_sec=1.0)
            return
        self._command = (kind, values)
        self._command_tick = self._tick
        self._commands_received += 1

    def _command_timeout(self) -> float:
        return float(self.get_parameter("command_timeout").value)

    def _current_control(self) -> np.ndarray:
        timeout_ticks = self._command_timeout() / self._dt
        if self._command is None or self._tick - self._command_tick > timeout_ticks:
            model, delays = self._plant.model, self._plant.config.command_delay_steps
            decel = min(float(self.get_parameter("timeout_decel").value), self._a_max)
            return braking_control(model, self._x, self._history, delays, self._dt, decel)
        kind, values = self._command
        steering = float(self._x[self._steering_index]) if self._servo else 0.0
        speed = float(self._x[self._speed_index]) if self._servo else 0.0
        return command_to_control(kind, values, steering, speed, self._servo)

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
        state = self._plant_state
        x, history, violation, progress, lateral_error = jax.device_get(
            (state.x, state.command_history, violation, progress, lateral_error)
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

    def _publish_diagnostics(self) -> None:
        laps = self._laps
        status = DiagnosticStatus(
            name=self.get_name(), hardware_id=f"simulated {self._plant.model.name}"
        )
        command_age = (self._tick - self._command_tick) * self._dt if self._command else None
        if self._lost:
            status.level, status.message = DiagnosticStatus.ERROR, "car lost (off the track)"
        elif command_age is not None and command_age > self._command_timeout():
            status.level = DiagnosticStatus.WARN  # what a vehicle interface reports
            status.message = f"command_timeout: no command for {command_age:.2f} s, braking"
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
            "speed": f"{vehicle_speed(self._plant.model, self._x):.3f}",
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
