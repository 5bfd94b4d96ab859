"""Dynamics model description and time discretisation shared by every model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Derivative = Callable[[Array, Array, Any], Array]
StepFn = Callable[[Array, Array, Any], Array]


@dataclasses.dataclass(frozen=True)
class DynamicsModel:
    """A continuous-time model ``x_dot = derivative(x, u, params)`` plus its metadata.

    Attributes:
        name: Registry name.
        state_names: Names of the state entries, in order.
        control_names: Names of the control entries, in order.
        derivative: Pure function ``(x, u, params) -> x_dot``; applies input constraints.
        default_params: Parameter pytree (a ``flax.struct`` dataclass); leaves may be changed at
            run time without recompiling.
        control_bounds: Pure function ``params -> (u_min, u_max)``.
        angle_indices: State entries that are angles (wrapped before errors are squared).
        position_indices: State entries holding planar position (x, y), if any.
        heading_index: State entry holding the heading, if any.
        speed_index: State entry holding the forward speed, if any.
    """

    name: str
    state_names: tuple[str, ...]
    control_names: tuple[str, ...]
    derivative: Derivative
    default_params: Any
    control_bounds: Callable[[Any], tuple[Array, Array]]
    angle_indices: tuple[int, ...] = ()
    position_indices: tuple[int, int] | None = None
    heading_index: int | None = None
    speed_index: int | None = None
    stable_params: Callable[[Any, float], Any] | None = None

    def params_for_step(self, params: Any, dt: float) -> Any:
        """Parameters adjusted so that an explicit integrator with step ``dt`` stays stable
        (e.g. the single-track model hands over to its kinematic branch at a higher speed
        when the step is long). Identity for models that need no adjustment."""
        return params if self.stable_params is None else self.stable_params(params, dt)

    def physical_params(self, params: Any) -> Any:
        """The physical parameters (steering limits, wheelbase, top speed) behind ``params``:
        ``params`` itself, except for a learned model whose parameters are its weights."""
        return params

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def control_dim(self) -> int:
        return len(self.control_names)

    def discrete(self, dt: float, method: str = "rk4") -> StepFn:
        """Returns ``f(x, u, params) -> x_next`` integrating over ``dt`` with zero-order-hold u.

        Args:
            dt: Step length in seconds (static: baked into the compiled function).
            method: ``"rk4"`` or ``"euler"``.

        Raises:
            ValueError: For an unknown method or a non-positive ``dt``.
        """
        return discretize(self.derivative, dt, method)


def rk4(derivative: Derivative, x: Array, u: Array, params: Any, dt: Any) -> Array:
    """One classic Runge-Kutta step of length ``dt`` (a float or a traced value) holding ``u``."""
    k1 = derivative(x, u, params)
    k2 = derivative(x + 0.5 * dt * k1, u, params)
    k3 = derivative(x + 0.5 * dt * k2, u, params)
    k4 = derivative(x + dt * k3, u, params)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def discretize(derivative: Derivative, dt: float, method: str = "rk4") -> StepFn:
    """Turns a continuous-time derivative into a discrete step (see ``DynamicsModel.discrete``)."""
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    if method == "euler":

        def euler_step(x: Array, u: Array, params: Any) -> Array:
            return x + dt * derivative(x, u, params)

        return euler_step
    if method == "rk4":

        def rk4_step(x: Array, u: Array, params: Any) -> Array:
            return rk4(derivative, x, u, params, dt)

        return rk4_step
    raise ValueError(f"unknown integration method {method!r}; valid methods: 'euler', 'rk4'")


def wrap_angle(angle: Array) -> Array:
    """Wraps angles to (-pi, pi].

    ``atan2(sin, cos)`` rather than a modulo: exact for large angles too, and it exports to
    ONNX with a symbolic sample count (the exporter's ``rem`` needs static shapes).
    """
    wrapped = jnp.arctan2(jnp.sin(angle), jnp.cos(angle))
    # float32 pi exceeds pi, so atan2 lands an input of pi on -pi: fold the boundary back.
    return jnp.where(wrapped <= -jnp.pi + 1e-6, wrapped + 2.0 * jnp.pi, wrapped)
