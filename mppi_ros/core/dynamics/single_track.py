"""CommonRoad dynamic single-track ("ST") model with F1TENTH parameters.

State ``x = [px, py, delta, v, yaw, yaw_rate, beta]``, control ``u = [steering_rate, accel]``.
Below a low speed the slip dynamics (1/v terms) are replaced by the kinematic bicycle with
slip; the two are blended with a C1 smoothstep over a small speed band so that the model and
its gradients stay finite and continuous at every speed, including v = 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from mppi_ros.core.dynamics.base import DynamicsModel

Array = jax.Array
GRAVITY = 9.81


@struct.dataclass
class SingleTrackParams:
    """Vehicle parameters (defaults: the F1TENTH car). All leaves are live."""

    mu: float = 1.0489
    c_sf: float = 4.718
    c_sr: float = 5.4562
    lf: float = 0.15875
    lr: float = 0.17145
    h: float = 0.074
    m: float = 3.74
    inertia: float = 0.04712
    delta_min: float = -0.4189
    delta_max: float = 0.4189
    sv_min: float = -3.2
    sv_max: float = 3.2
    v_min: float = -5.0
    v_max: float = 20.0
    v_switch: float = 7.319
    a_max: float = 9.51
    width: float = 0.31
    length: float = 0.58
    # Blend band (m/s) between the kinematic and dynamic branches; F1TENTH gym switches at 0.5.
    kinematic_blend_low: float = 0.4
    kinematic_blend_high: float = 0.6


def constrain_steering_rate(delta: Array, steering_rate: Array, p: SingleTrackParams) -> Array:
    """Zero when the steering angle is at a limit and the rate pushes further, else clipped."""
    at_limit = ((delta <= p.delta_min) & (steering_rate <= 0.0)) | (
        (delta >= p.delta_max) & (steering_rate >= 0.0)
    )
    return jnp.where(at_limit, 0.0, jnp.clip(steering_rate, p.sv_min, p.sv_max))


def constrain_accel(v: Array, accel: Array, p: SingleTrackParams) -> Array:
    """Zero at a speed limit pushing further; else clipped to [-a_max, a_pos(v)]."""
    safe_v = jnp.maximum(v, p.v_switch)
    a_pos = jnp.where(v > p.v_switch, p.a_max * p.v_switch / safe_v, p.a_max)
    at_limit = ((v <= p.v_min) & (accel <= 0.0)) | ((v >= p.v_max) & (accel >= 0.0))
    return jnp.where(at_limit, 0.0, jnp.clip(accel, -p.a_max, a_pos))


def _smoothstep(z: Array) -> Array:
    z = jnp.clip(z, 0.0, 1.0)
    return z * z * (3.0 - 2.0 * z)


def single_track_derivative(x: Array, u: Array, p: SingleTrackParams) -> Array:
    """Time derivative of the single-track state with input constraints applied."""
    delta, v, yaw, yaw_rate, beta = x[2], x[3], x[4], x[5], x[6]
    sv = constrain_steering_rate(delta, u[0], p)
    acc = constrain_accel(v, u[1], p)
    wheelbase = p.lf + p.lr

    # Dynamic branch, evaluated with a speed kept above the blend band so 1/v never blows up
    # (its result is discarded there; the safe value keeps gradients finite). Reversing always
    # uses the kinematic branch: with v < 0 the ST yaw-rate pole -k/v turns unstable.
    v_dyn = jnp.maximum(v, p.kinematic_blend_low)
    front_load = GRAVITY * p.lr - acc * p.h
    rear_load = GRAVITY * p.lf + acc * p.h
    yaw_acc = (
        p.mu
        * p.m
        / (p.inertia * wheelbase)
        * (
            p.lf * p.c_sf * front_load * delta
            + (p.lr * p.c_sr * rear_load - p.lf * p.c_sf * front_load) * beta
            - (p.lf**2 * p.c_sf * front_load + p.lr**2 * p.c_sr * rear_load) * yaw_rate / v_dyn
        )
    )
    beta_rate = (
        p.mu
        / (v_dyn * wheelbase)
        * (
            p.c_sf * front_load * delta
            - (p.c_sr * rear_load + p.c_sf * front_load) * beta
            + (p.c_sr * rear_load * p.lr - p.c_sf * front_load * p.lf) * yaw_rate / v_dyn
        )
        - yaw_rate
    )
    dynamic = jnp.stack(
        [v * jnp.cos(yaw + beta), v * jnp.sin(yaw + beta), sv, acc, yaw_rate, yaw_acc, beta_rate]
    )

    # Kinematic bicycle with slip (F1TENTH gym's low-speed branch). Written without tan and
    # arctan (beta_k = arctan(ratio tan delta) enters only through its sine and cosine): on
    # XLA's CPU backend each costs about three sines, and this runs 4x per RK4 step per sample.
    sin_d, cos_d = jnp.sin(delta), jnp.cos(delta)
    tan_d = sin_d / cos_d
    cos_d2 = cos_d * cos_d
    ratio = p.lr / wheelbase
    slip_tan = tan_d * ratio  # tan(beta_k)
    cos_bk = jax.lax.rsqrt(1.0 + slip_tan * slip_tan)
    sin_bk = slip_tan * cos_bk
    beta_k_rate = ratio * sv * cos_bk * cos_bk / cos_d2
    yaw_rate_k = v * cos_bk * tan_d / wheelbase
    yaw_acc_k = (
        acc * cos_bk * tan_d - v * sin_bk * beta_k_rate * tan_d + v * cos_bk * sv / cos_d2
    ) / wheelbase
    cos_yaw, sin_yaw = jnp.cos(yaw), jnp.sin(yaw)
    kinematic = jnp.stack(
        [
            v * (cos_yaw * cos_bk - sin_yaw * sin_bk),
            v * (sin_yaw * cos_bk + cos_yaw * sin_bk),
            sv,
            acc,
            yaw_rate_k,
            yaw_acc_k,
            beta_k_rate,
        ]
    )

    blend = _smoothstep(
        (v - p.kinematic_blend_low) / (p.kinematic_blend_high - p.kinematic_blend_low)
    )
    return blend * dynamic + (1.0 - blend) * kinematic


def single_track_bounds(p: SingleTrackParams) -> tuple[Array, Array]:
    return jnp.array([p.sv_min, -p.a_max]), jnp.array([p.sv_max, p.a_max])


# RK4's stability limit on the negative real axis is about -2.78; keep a margin.
_RK4_STABLE_STEP = 2.5


def stable_blend_params(p: SingleTrackParams, dt: float) -> SingleTrackParams:
    """Raises the kinematic/dynamic blend band so RK4 with step ``dt`` stays stable.

    The yaw-rate equation has a pole at about ``-k / v`` with
    ``k = mu m (lf^2 C_Sf g lr + lr^2 C_Sr g lf) / (I L)`` (~113 for F1TENTH): explicit RK4
    diverges when ``k dt / v > 2.78``, e.g. below ~2.3 m/s at dt = 0.05 s. Below that speed the
    kinematic branch (no 1/v terms, accurate at low speed) takes over.
    """
    k = (
        p.mu
        * p.m
        / (p.inertia * (p.lf + p.lr))
        * (p.lf**2 * p.c_sf * GRAVITY * p.lr + p.lr**2 * p.c_sr * GRAVITY * p.lf)
    )
    low = max(float(p.kinematic_blend_low), float(k) * dt / _RK4_STABLE_STEP)
    width = float(p.kinematic_blend_high) - float(p.kinematic_blend_low)
    return p.replace(kinematic_blend_low=low, kinematic_blend_high=low + max(width, 0.2 * low))


SINGLE_TRACK = DynamicsModel(
    name="single_track",
    state_names=("px", "py", "delta", "v", "yaw", "yaw_rate", "beta"),
    control_names=("steering_rate", "accel"),
    derivative=single_track_derivative,
    default_params=SingleTrackParams(),
    control_bounds=single_track_bounds,
    angle_indices=(4,),
    position_indices=(0, 1),
    heading_index=4,
    speed_index=3,
    stable_params=stable_blend_params,
)
