"""Parameters of the ``vehicle_simulator`` node (:mod:`mppi_ros.ros.simulator_node`)."""

from __future__ import annotations

from typing import Any

from rclpy.parameter import Parameter

from mppi_ros.ros.conversions import COMMAND_TYPES

# name -> (default, or a Parameter.Type for none; description; options of ``describe``).
# Parameters are read-only unless their options say ``read_only=False``.
PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "track": ("default", "Built-in track name or CSV path", {}),
    "dynamics": ("single_track", "Plant model (dynamics registry name)", {}),
    "dt": (0.01, "Plant step (s), RK4; one step per tick", dict(float_range=(1e-4, 1.0))),
    "real_time_factor": (
        1.0,
        "Simulated seconds per wall-clock second (tick period = dt / factor)",
        dict(read_only=False, float_range=(0.01, 100.0)),
    ),
    "command_type": (
        "array",
        f"Type of cmd: {', '.join(COMMAND_TYPES)}",
        dict(constraints="one of " + ", ".join(COMMAND_TYPES)),
    ),
    "command_delay_steps": (
        [2, 0],
        "Per control channel, plant steps between a command and its effect",
        dict(constraints=">= 0 each"),
    ),
    "process_noise_std": (
        Parameter.Type.DOUBLE_ARRAY,
        "Per state entry, std of additive noise per sqrt(s); unset: no noise",
        {},
    ),
    "friction_scale": (
        1.0,
        "Multiplies the tyre friction coefficient",
        dict(read_only=False, float_range=(0.05, 5.0)),
    ),
    "initial_speed": (
        0.0,
        "Speed (m/s) at the start line, at start and on reset",
        dict(read_only=False, float_range=(-5.0, 20.0)),
    ),
    "servo_time_constant": (
        0.05,
        "Time constant (s) of the servo that follows twist/ackermann targets; >= dt",
        dict(read_only=False, float_range=(1e-4, 10.0)),
    ),
    "command_timeout": (
        0.5,
        "Simulated seconds without a command after which the car brakes to a stop",
        dict(read_only=False, float_range=(1e-3, 3600.0)),
    ),
    "timeout_decel": (
        5.0,
        "Deceleration (m/s^2, at most the model's a_max) of that stop; the steering is held",
        dict(read_only=False, float_range=(0.1, 100.0)),
    ),
    "publish_clock": (False, "Publish the simulated time on /clock and stamp odom with it", {}),
    "steering_joint": (
        "steering",
        "Joint name of the steering angle on joint_states; empty: not published",
        {},
    ),
    "frame_id": ("map", "Odometry frame", {}),
    "child_frame_id": ("base_link", "Vehicle frame", {}),
    "seed": (0, "Seed of the process noise", dict(int_range=(0, 2**31 - 1))),
    "car_half_width": (
        0.155,
        "Half width (m) of the car for border violations",
        dict(float_range=(0.0, 5.0)),
    ),
    "lost_distance": (
        5.0,
        "Distance (m) from the raceline beyond which the car is reported lost",
        dict(read_only=False, float_range=(0.01, 1000.0)),
    ),
}
