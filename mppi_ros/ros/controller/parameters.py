"""The ``mppi_controller`` node's parameters: name, default (or the type of a value taken from
the loaded model) and descriptor. Which ones rebuild the controller, which ones the control
loop reads every cycle, and which ones set the live tuning."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from mppi_ros.core.catalog import controller_names, controller_spec
from mppi_ros.ros.common import describe
from mppi_ros.ros.controller.plausibility import PLAUSIBILITY_PARAMETERS

# name -> (default or a Parameter.Type for "taken from the model", descriptor).
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "controller": (
        "step_mppi",
        describe(
            f"Controller to run: one of {', '.join(controller_names())}; the learned ones "
            f"({', '.join(controller_names(lambda spec: spec.learned))}) run from a model "
            "bundle.",
            read_only=True,
        ),
    ),
    "model_path": (
        "",
        describe(
            "Model bundle folder or name for learned controllers; empty: the shipped "
            "models/f1tenth_<controller>. Setting it swaps the model at runtime (validated, "
            "compiled in the background; the old model drives until the swap)."
        ),
    ),
    "backend": (
        "jax",
        describe(
            "Inference backend: jax (XLA) or onnx (the bundle's controller.onnx on "
            "onnxruntime, CUDA when available; learned controllers). Switching rebuilds in "
            "the background and swaps between two cycles, like a model swap.",
            constraints="one of: jax, onnx",
        ),
    ),
    "control_rate": (
        100.0,
        describe("Control loop rate (Hz).", read_only=True, float_range=(1.0, 1000.0)),
    ),
    "num_samples": (
        0,
        describe(
            "Samples K; 0 keeps the controller's default. Changing it recompiles in the "
            "background, then swaps.",
            int_range=(0, 262144),
        ),
    ),
    "horizon": (
        0,
        describe(
            "Horizon H (mppi and soft_mpcritic); 0 keeps the default. Changing it recompiles "
            "in the background, then swaps.",
            int_range=(0, 1000),
        ),
    ),
    "temperature": (
        Parameter.Type.DOUBLE,
        describe(
            "Softmax temperature lambda (> 0). Default: the model's trained value.",
            float_range=(1e-6, 1e6),
        ),
    ),
    "noise_std": (
        Parameter.Type.DOUBLE_ARRAY,
        describe(
            "Sampling std per control (one value broadcasts); learned controllers scale their "
            "learned spread by it. Default: the model's value."
        ),
    ),
    "q_weights": (
        Parameter.Type.DOUBLE_ARRAY,
        describe("Diagonal state-error weights (one per state entry). Default: the model's value."),
    ),
    "r_weights": (
        Parameter.Type.DOUBLE_ARRAY,
        describe("Diagonal control weights (one per control). Default: the model's value."),
    ),
    "border_weight": (
        Parameter.Type.DOUBLE,
        describe("Weight of squared border violations.", float_range=(0.0, 1e9)),
    ),
    "border_margin": (
        Parameter.Type.DOUBLE,
        describe(
            "Safety margin (m) kept between the car's side and the road edge (the allowed band "
            "is the road minus the car's half-width and this margin).",
            float_range=(-2.0, 2.0),
        ),
    ),
    "reference_speed": (
        Parameter.Type.DOUBLE,
        describe(
            "Speed (m/s) at which the reference advances: the cap of a timed reference "
            "path's speed profile, the speed of an untimed one.",
            float_range=(0.01, 100.0),
        ),
    ),
    "speed_scale": (
        Parameter.Type.DOUBLE,
        describe(
            "Multiplies the speed profile of a timed reference path (1 = as published).",
            float_range=(0.0, 2.0),
        ),
    ),
    "max_speed": (
        Parameter.Type.DOUBLE,
        describe(
            "Speed limit (m/s) of the state box (never above the vehicle's v_max).",
            float_range=(0.01, 100.0),
        ),
    ),
    "state_timeout": (
        0.1,
        describe(
            "Odometry older than this (s) triggers a brake and an ERROR diagnostic.",
            float_range=(0.001, 10.0),
        ),
    ),
    "state_prediction": (
        0.1,
        describe(
            "Latency compensation: odometry is driven forward from its stamp to the control "
            "tick with the controller's model and the commands sent meanwhile, for at most "
            "this many seconds (an older stamp is predicted this far); 0 turns it off. Needs "
            "the odometry stamped on the node's clock (use_sim_time with a simulator's "
            "/clock).",
            float_range=(0.0, 0.5),
        ),
    ),
    "actuation_delays": (
        [0.0],
        describe(
            "Per control channel (one value broadcasts), seconds from a command to its effect "
            "at the vehicle (servo, ESC): the latency compensation and the safe stop's dead "
            "reckoning apply each command that much later. 0-0.5 s each.",
        ),
    ),
    "steering_joint": (
        "steering",
        describe(
            "Joint of sensor_msgs/JointState on joint_states whose position (rad) is the "
            "measured steering angle; used while no older than state_timeout. Without it the "
            "node integrates its own steering commands. Empty: never subscribe.",
            read_only=True,
        ),
    ),
    "brake_decel": (
        5.0,
        describe(
            "Deceleration (m/s^2) of the safe stop, which steers along the last valid "
            "reference meanwhile.",
            float_range=(0.1, 50.0),
        ),
    ),
    "allow_reverse": (
        False,
        describe(
            "Whether commands may drive the car backwards; false: no command (nor a recovery "
            "from a standstill) takes the speed below zero."
        ),
    ),
    "min_rate_fraction": (
        0.5,
        describe(
            "The safe stop holds the car while the control loop runs fewer than this fraction "
            "of its cycles over the last second (a starved CPU: commands designed for one "
            "period then act for several); 0: off.",
            float_range=(0.0, 1.0),
        ),
    ),
    "recovery_ramp_s": (
        0.5,
        describe(
            "After a fault, each control is limited to a fraction of its bound growing from "
            "0.2 to 1 over this many seconds (no saturated jump on recovery); 0: off.",
            float_range=(0.0, 10.0),
        ),
    ),
    "target_lead_time": (
        0.05,
        describe(
            "ackermann / twist_stamped: targets = estimate + rate * lead time (match the "
            "actuator's servo time constant).",
            float_range=(0.001, 1.0),
        ),
    ),
    "command_type": (
        "array",
        describe(
            "cmd message type: ackermann (ackermann_msgs/AckermannDriveStamped), twist_stamped "
            "(geometry_msgs/TwistStamped: speed, yaw rate) or array (std_msgs/Float64MultiArray: "
            "raw control).",
            read_only=True,
            constraints="one of: ackermann, twist_stamped, array",
        ),
    ),
    "frame_id": (
        "map",
        describe(
            "Frame of odometry poses and reference paths; other frames are rejected.",
            read_only=True,
        ),
    ),
    "seed": (0, describe("Seed of the controller's sampling.", read_only=True)),
    "reference_points": (
        2048,
        describe(
            "Point count the reference is resampled to (fixes compiled shapes).",
            read_only=True,
            int_range=(16, 100000),
        ),
    ),
    "max_path_points": (
        100000,
        describe(
            "Longest reference or border path (poses) converted; a longer one brakes with "
            "path_too_large before any work is done on it.",
            int_range=(3, 10_000_000),
        ),
    ),
    "autostart": (
        False,
        describe(
            "Configure and activate on start-up (without a lifecycle manager).", read_only=True
        ),
    ),
    "cpu_affinity": (
        Parameter.Type.INTEGER_ARRAY,
        describe(
            "CPUs the whole node process (control thread, XLA workers, executor) may run on, "
            "applied at configure; unset: inherited. Give the controller a core of its own and "
            "keep other processes off it for the lowest jitter.",
            read_only=True,
        ),
    ),
    "realtime_priority": (
        50,
        describe(
            "SCHED_FIFO priority of the control thread (XLA's worker threads get one less); "
            "0 keeps normal scheduling. Needs root, CAP_SYS_NICE or an rtprio limit; without "
            "them the node logs why and runs with normal scheduling.",
            read_only=True,
            int_range=(0, 98),
        ),
    ),
    "kept_replaced_steps": (
        0,
        describe(
            "Replaced compiled steps of another shape (a previous num_samples, horizon or "
            "architecture) kept while the loop runs, so that changing back is instant (each "
            "holds ~23 MB for Step-MPPI K=1024). 0 frees each right after a cycle ends once "
            "its replacement drives (one GIL-held XLA teardown, ~12 ms). Beyond this many the "
            "oldest is freed; all are freed when the loop stops. A swap to a model of the same "
            "architecture shares the running step and frees no executable.",
            read_only=True,
            int_range=(0, 64),
        ),
    ),
    "diagnostics_rate": (
        2.0,
        describe("Rate (Hz) of /diagnostics messages.", read_only=True, float_range=(0.1, 100.0)),
    ),
}
PARAMETERS.update(
    {
        name: (default, describe(text, float_range=bounds))
        for name, (default, text, bounds) in PLAUSIBILITY_PARAMETERS.items()
    }
)
REBUILD_PARAMETERS = ("model_path", "num_samples", "horizon", "backend")
LOOP_PARAMETERS = (
    "state_timeout",
    "frame_id",
    "command_type",
    "target_lead_time",
    "brake_decel",
    "allow_reverse",
    "recovery_ramp_s",
    "min_rate_fraction",
    "state_prediction",
    "actuation_delays",
    "max_path_points",
    *PLAUSIBILITY_PARAMETERS,
)


def declare_controller_parameters(
    node: Node, controller: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Declares ``controller``'s own parameters (see its spec): live tuning fields, unset so
    that the model's values apply until set, and read-only static config fields with the
    config's defaults. Returns their names ``(tuning, config)``; an unknown controller
    declares none (configure reports it)."""
    if controller not in controller_names():
        return (), ()
    spec = controller_spec(controller)
    for p in spec.tuning_parameters:
        integer = p.integer
        ranges = {"int_range" if integer else "float_range": p.bounds}
        descriptor = describe(f"{p.description} Default: the controller's.", **ranges)
        kind = Parameter.Type.INTEGER if integer else Parameter.Type.DOUBLE
        node.declare_parameter(p.name, kind, descriptor)
    for p in spec.config_parameters:
        default = spec.config_default(p.name)
        constraints = f"one of: {', '.join(p.choices)}" if p.choices else ""
        descriptor = describe(
            f"{p.description} Default: {default}.",
            read_only=True,
            int_range=p.bounds,
            constraints=constraints,
        )
        node.declare_parameter(p.name, default, descriptor)
    return (
        tuple(p.name for p in spec.tuning_parameters),
        tuple(p.name for p in spec.config_parameters),
    )


MAX_ACTUATION_DELAY_S = 0.5


def actuation_delays_problem(values: list[float], control_dim: int | None) -> str | None:
    """Why ``values`` cannot be the ``actuation_delays`` of a model with ``control_dim``
    controls (``None``: no model yet), or None."""
    if len(values) not in {1, control_dim or len(values)}:
        return f"actuation_delays needs 1 or {control_dim} values (one per control), got {values}"
    if not all(0.0 <= v <= MAX_ACTUATION_DELAY_S for v in values):  # NaN fails too
        return f"actuation_delays must each be in [0, {MAX_ACTUATION_DELAY_S}] s, got {values}"
    return None
