"""Classic multi-step MPPI with warm start and optional EM covariance adaptation.

One call of :meth:`MPPI.step` samples ``K`` control sequences around the warm-start plan,
rolls them through the prediction model with one ``lax.scan``, weights them by
``softmax(-cost / temperature)`` and returns the first control of the weighted mean. With
``adapt_covariance`` the per-step sampling scale is updated by the weighted second moment
(the EM M-step, Step-MPPI paper eq. 12), blended with the previous scale.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mppi_ros.core.controllers.base import (
    Candidates,
    Observation,
    TrackingTuning,
    first_candidates,
    make_tuning,
    stage_cost,
    step_keys,
)
from mppi_ros.core.dynamics import DynamicsModel, get_dynamics

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MPPIConfig:
    """Static settings: changing any of them recompiles the step.

    Attributes:
        dynamics: Registry name of the prediction model.
        num_samples: Number of sampled control sequences K.
        horizon: Prediction horizon H (steps).
        dt: Prediction step (s).
        integrator: ``"rk4"`` or ``"euler"`` for the prediction model.
        substeps: Integration substeps per prediction step (stiff low-speed dynamics).
        adapt_covariance: Update the sampling scale by the weighted second moment.
        covariance_rate: Blend factor of the new scale (0 keeps the old, 1 takes the new).
        min_scale: Lower clamp of the adapted scale relative to ``noise_std``.
        max_scale: Upper clamp of the adapted scale relative to ``noise_std``.
        include_nominal: Keep the unperturbed warm-start plan as sample 0.
        replan_period: Seconds between calls (default ``dt``); the warm start advances by
            ``replan_period / dt`` steps per call, so replanning faster than ``dt`` stays
            time-aligned.
    """

    dynamics: str = "single_track"
    num_samples: int = 1024
    horizon: int = 40
    dt: float = 0.05
    integrator: str = "rk4"
    substeps: int = 1
    adapt_covariance: bool = False
    covariance_rate: float = 0.1
    min_scale: float = 0.5
    max_scale: float = 2.0
    include_nominal: bool = True
    replan_period: float | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.horizon < 1 or self.substeps < 1:
            raise ValueError("num_samples, horizon and substeps must be >= 1")
        if not self.dt > 0:
            raise ValueError(f"dt must be positive, got {self.dt}")
        if not 0.0 <= self.covariance_rate <= 1.0:
            raise ValueError("covariance_rate must lie in [0, 1]")
        if self.replan_period is not None and not 0 < self.replan_period <= self.horizon * self.dt:
            raise ValueError(
                f"replan_period must lie in (0, horizon * dt], got {self.replan_period}"
            )


@struct.dataclass
class MPPIState:
    """Warm start carried between steps (no hidden mutable state anywhere else).

    Attributes:
        plan: ``(H, nu)`` mean control sequence, shifted by one step after each call.
        scale: ``(H, nu)`` multiplier of ``tuning.noise_std`` (1 unless adapted).
        key: PRNG key used when ``step`` is called without one.
        steps: Number of steps taken.
    """

    plan: Array
    scale: Array
    key: Array
    steps: Array


@struct.dataclass
class MPPIInfo:
    """Diagnostics of one step."""

    cost_min: Array
    cost_mean: Array
    effective_samples: Array
    predicted_states: Array  # (H + 1, nx): rollout of the new plan from the measured state
    candidates: Candidates | None  # some sampled rollouts, their weights (visualisation)


def rollout(
    step_fn,
    model: DynamicsModel,
    x0: Array,
    controls: Array,
    obs: Observation,
    tuning: TrackingTuning,
) -> tuple[Array, Array]:
    """Rolls one control sequence out; returns (total cost, visited states ``(H, nx)``)."""

    def body(x: Array, inputs: tuple[Array, Array, Array]) -> tuple[Array, tuple[Array, Array]]:
        u, ref, border = inputs
        x_next = step_fn(x, u, tuning.model_params)
        return x_next, (x_next, stage_cost(model, x_next, u, ref, border, tuning))

    _, (states, costs) = jax.lax.scan(body, x0, (controls, obs.reference, obs.border))
    return jnp.sum(costs), states


def shift_plan(plan: Array, fill: Array, steps: float = 1.0) -> Array:
    """Advances the plan by ``steps`` model steps (may be fractional), padding with ``fill``.

    With ``steps = 1`` this drops the executed first step; a controller called every
    ``period < dt`` shifts by ``period / dt`` and interpolates linearly between plan steps.
    """
    padded = jnp.concatenate([plan, fill[None]], axis=0)
    if float(steps).is_integer():
        n = int(steps)
        return jnp.concatenate([padded[n:], jnp.repeat(fill[None], n - 1, axis=0)], axis=0)
    t = jnp.arange(plan.shape[0]) + steps
    i0 = jnp.clip(jnp.floor(t).astype(jnp.int32), 0, plan.shape[0])
    i1 = jnp.clip(i0 + 1, 0, plan.shape[0])
    frac = (t - jnp.floor(t))[:, None]
    return (1.0 - frac) * padded[i0] + frac * padded[i1]


def safe_softmax_weights(costs: Array, temperature: Array) -> Array:
    """Softmax of ``-cost / temperature``; non-finite costs get zero weight (all weights are
    uniform if every cost is non-finite, so the result stays finite)."""
    costs = jnp.where(jnp.isfinite(costs), costs, jnp.finfo(costs.dtype).max / 4)
    shifted = (costs - jnp.min(costs)) / temperature
    return jax.nn.softmax(-shifted)


class HorizonPlanner:
    """What the sampling planners over ``config.horizon`` steps of ``config.dt`` share (MPPI,
    EM-MPPI): the model, the warm-start shift per call, the rollout step and the noise-drawing
    ``step``. Subclasses are frozen dataclasses with a ``config`` holding ``dynamics``,
    ``horizon``, ``dt``, ``substeps``, ``integrator`` and ``replan_period``, and implement
    ``noise_shape`` and ``step_with_noise``."""

    config: Any

    @property
    def model(self) -> DynamicsModel:
        return get_dynamics(self.config.dynamics)

    @property
    def reference_horizon(self) -> int:
        return self.config.horizon

    @property
    def dt(self) -> float:
        return self.config.dt

    def with_replan_period(self, period: float):
        """This controller called every ``period`` seconds (its warm start shifts to match)."""
        return dataclasses.replace(
            self, config=dataclasses.replace(self.config, replan_period=period)
        )

    @property
    def shift_steps(self) -> float:
        """Plan steps the warm start advances per call."""
        period = self.config.replan_period
        return 1.0 if period is None else round(period / self.config.dt, 6)

    def planning_tuning(self) -> TrackingTuning:
        """The tracking tuning both planners start from (model parameters for their step)."""
        model = self.model
        step = self.config.dt / self.config.substeps
        return make_tuning(
            model,
            noise_std=jnp.array([1.5, 2.0])[: model.control_dim],
            temperature=100.0,
            model_params=model.params_for_step(model.default_params, step),
        )

    def _step_fn(self):
        base = self.model.discrete(self.config.dt / self.config.substeps, self.config.integrator)
        if self.config.substeps == 1:
            return base
        n = self.config.substeps
        return lambda x, u, p: jax.lax.fori_loop(0, n, lambda _, xs: base(xs, u, p), x)

    def step(self, cstate: Any, obs: Observation, tuning: TrackingTuning, key: Array | None = None):
        """One planning step with noise drawn from ``key`` (default: the state's key); returns
        ``(action, next_state, info)``."""
        key, next_key = step_keys(cstate.key, key)
        eps = jax.random.normal(key, self.noise_shape)
        action, cstate, info = self.step_with_noise(cstate, obs, tuning, eps)
        return action, cstate.replace(key=next_key), info


@dataclasses.dataclass(frozen=True)
class MPPI(HorizonPlanner):
    """Classic MPPI on the shared functional interface (see ``Controller``)."""

    config: MPPIConfig = MPPIConfig()
    name: str = "mppi"

    def default_tuning(self) -> TrackingTuning:
        return self.planning_tuning()

    def init(self, key: Array) -> MPPIState:
        shape = (self.config.horizon, self.model.control_dim)
        return MPPIState(
            plan=jnp.zeros(shape), scale=jnp.ones(shape), key=key, steps=jnp.zeros((), jnp.int32)
        )

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Shape of the standard normal noise one step consumes: ``(K, H, nu)``."""
        return (self.config.num_samples, self.config.horizon, self.model.control_dim)

    def step_with_noise(
        self, cstate: MPPIState, obs: Observation, tuning: TrackingTuning, eps: Array
    ) -> tuple[Array, MPPIState, MPPIInfo]:
        """:meth:`step` with the noise given (``noise_shape``; any K): what ONNX export
        traces. The stored key is passed through unchanged."""
        cfg, model = self.config, self.model
        u_min, u_max = model.control_bounds(tuning.model_params)
        sigma = tuning.noise_std * cstate.scale
        if cfg.include_nominal:
            # Not an indexed update: exports with a symbolic sample count.
            eps = jnp.concatenate([jnp.zeros_like(eps[:1]), eps[1:]], axis=0)
        controls = jnp.clip(cstate.plan + sigma * eps, u_min, u_max)

        step_fn = self._step_fn()
        costs, sampled = jax.vmap(rollout, in_axes=(None, None, None, 0, None, None))(
            step_fn, model, obs.state, controls, obs, tuning
        )
        weights = safe_softmax_weights(costs, tuning.temperature)
        plan = jnp.einsum("k,khu->hu", weights, controls)

        scale = cstate.scale
        if cfg.adapt_covariance:
            var = jnp.einsum("k,khu->hu", weights, (controls - plan) ** 2)
            nominal = jnp.maximum(tuning.noise_std, 1e-6)
            target = jnp.sqrt(var) / nominal
            scale = (1.0 - cfg.covariance_rate) * scale + cfg.covariance_rate * target
            scale = jnp.clip(scale, cfg.min_scale, cfg.max_scale)

        _, predicted = rollout(step_fn, model, obs.state, plan, obs, tuning)
        info = MPPIInfo(
            cost_min=jnp.min(costs),
            cost_mean=jnp.mean(jnp.where(jnp.isfinite(costs), costs, 0.0)),
            effective_samples=1.0 / jnp.sum(weights**2),
            predicted_states=jnp.concatenate([obs.state[None], predicted], axis=0),
            candidates=first_candidates(obs.state, sampled, weights),
        )
        next_state = MPPIState(
            plan=shift_plan(plan, plan[-1], self.shift_steps),
            scale=shift_plan(scale, jnp.ones_like(scale[-1]), self.shift_steps),
            key=cstate.key,
            steps=cstate.steps + 1,
        )
        return plan[0], next_state, info
