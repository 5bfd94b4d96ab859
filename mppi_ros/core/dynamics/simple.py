"""Kinematic bicycle and planar double integrator."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from mppi_ros.core.dynamics.base import DynamicsModel
from mppi_ros.core.dynamics.single_track import (
    SingleTrackParams,
    constrain_accel,
    constrain_steering_rate,
    single_track_bounds,
)

Array = jax.Array


def kinematic_bicycle_derivative(x: Array, u: Array, p: SingleTrackParams) -> Array:
    """State ``[px, py, delta, v, yaw]``; rear-axle reference, F1TENTH input constraints."""
    delta, v, yaw = x[2], x[3], x[4]
    sv = constrain_steering_rate(delta, u[0], p)
    acc = constrain_accel(v, u[1], p)
    return jnp.stack(
        [v * jnp.cos(yaw), v * jnp.sin(yaw), sv, acc, v * jnp.tan(delta) / (p.lf + p.lr)]
    )


KINEMATIC_BICYCLE = DynamicsModel(
    name="kinematic_bicycle",
    state_names=("px", "py", "delta", "v", "yaw"),
    control_names=("steering_rate", "accel"),
    derivative=kinematic_bicycle_derivative,
    default_params=SingleTrackParams(),
    control_bounds=single_track_bounds,
    angle_indices=(4,),
    position_indices=(0, 1),
    heading_index=4,
    speed_index=3,
)


@struct.dataclass
class DoubleIntegratorParams:
    """Point mass with a box acceleration limit and optional linear drag."""

    a_max: float = 5.0
    drag: float = 0.0


def double_integrator_derivative(x: Array, u: Array, p: DoubleIntegratorParams) -> Array:
    """State ``[px, py, vx, vy]``, control ``[ax, ay]`` clipped to +-a_max."""
    acc = jnp.clip(u, -p.a_max, p.a_max) - p.drag * x[2:4]
    return jnp.concatenate([x[2:4], acc])


def double_integrator_bounds(p: DoubleIntegratorParams) -> tuple[Array, Array]:
    return -p.a_max * jnp.ones(2), p.a_max * jnp.ones(2)


DOUBLE_INTEGRATOR = DynamicsModel(
    name="double_integrator",
    state_names=("px", "py", "vx", "vy"),
    control_names=("ax", "ay"),
    derivative=double_integrator_derivative,
    default_params=DoubleIntegratorParams(),
    control_bounds=double_integrator_bounds,
    position_indices=(0, 1),
)
