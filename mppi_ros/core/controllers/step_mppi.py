"""Step-MPPI and DPC on the shared controller interface.

Step-MPPI: a network maps track-frame features of (state, next reference, borders) to a
Gaussian ``N(mu, L L^T)``; K controls are drawn by reparameterisation ``u_k = mu + L eps_k``,
rolled ONE model step, scored by the stage cost, and averaged with ``softmax(-cost / lambda)``
weights. :func:`mppi_layer` is differentiable in ``(mu, L)``; its autodiff Jacobian equals the
closed form of the paper's Lemma 1 (eqs. 24-26), which a test checks.

DPC: the same network body without sampling; the action is the network's output.

Network weights live in the controller state (``cstate.weights``): they are arguments of the
compiled step, never closed over, so swapping a model is replacing a pytree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mppi_ros.core.controllers.base import (
    Candidates,
    Observation,
    TrackingTuning,
    candidate_count,
    first_candidates,
    make_tuning,
    stage_cost,
    step_keys,
)
from mppi_ros.core.controllers.mppi import safe_softmax_weights
from mppi_ros.core.dynamics import DynamicsModel, get_dynamics
from mppi_ros.core.networks import (
    DeterministicPolicy,
    DistributionPolicy,
    feature_dim,
    policy_features,
    preview_features,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class StepMPPIConfig:
    """Static settings (changing any recompiles).

    Attributes:
        dynamics: Prediction model name.
        num_samples: K; 0 is allowed for DPC (no sampling).
        dt: Model step (s) and spacing of the reference points.
        integrator: ``"rk4"`` or ``"euler"``.
        hidden: Widths of the MLP backbone.
        activation: ``gelu`` (paper), ``relu``, ``silu`` or ``tanh``.
        full_covariance: Learn off-diagonal Cholesky entries.
        preview: Reference points (in steps of ``dt`` past the next one) whose position,
            heading, speed and band the policy also sees (:func:`preview_features`); empty:
            the paper's one-point observation.
    """

    dynamics: str = "single_track"
    num_samples: int = 1024
    dt: float = 0.05
    integrator: str = "rk4"
    hidden: tuple[int, ...] = (256, 256, 256, 256, 256)
    activation: str = "gelu"
    full_covariance: bool = False
    preview: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "preview", tuple(int(k) for k in self.preview))
        if any(k < 1 for k in self.preview):
            raise ValueError(f"preview steps must be >= 1, got {self.preview}")
        if self.num_samples < 0:
            raise ValueError("num_samples must be >= 0")
        if not self.dt > 0:
            raise ValueError(f"dt must be positive, got {self.dt}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("hidden must list positive layer widths")


@struct.dataclass
class PolicyWeights:
    """Network parameters plus the input normalisation they were trained with."""

    params: Any
    input_mean: Array
    input_std: Array


@struct.dataclass
class LearnedState:
    """Controller state of Step-MPPI and DPC: weights, PRNG key, step count."""

    weights: PolicyWeights
    key: Array
    steps: Array


@struct.dataclass
class StepMPPIInfo:
    mean: Array
    chol: Array
    cost_min: Array
    effective_samples: Array
    predicted_states: Array  # (2, nx): the state and the predicted next state
    candidates: Candidates | None  # some samples' next states, their weights


def mppi_layer(
    mu: Array, chol: Array, eps: Array, cost_fn: Callable[[Array], Array], temperature: Array
) -> tuple[Array, Array, Array]:
    """Single-step MPPI update ``sum_k w_k u_k``, differentiable in ``mu`` and ``chol``.

    Args:
        mu: ``(nu,)`` sampling mean.
        chol: ``(nu, nu)`` lower-triangular Cholesky factor.
        eps: ``(K, nu)`` standard normal noise.
        cost_fn: ``u -> cost`` of one sample (one model step plus stage cost).
        temperature: lambda.

    Returns:
        The weighted control, the weights ``(K,)`` and the costs ``(K,)``.
    """
    samples = mu + eps @ chol.T
    costs = jax.vmap(cost_fn)(samples)
    weights = safe_softmax_weights(costs, temperature)
    return weights @ samples, weights, costs


def lemma1_jacobian(
    mu: Array, chol: Array, eps: Array, cost_fn: Callable[[Array], Array], temperature: Array
) -> tuple[Array, Array]:
    """Closed-form Jacobians of :func:`mppi_layer` (paper eqs. 24-26).

    Returns:
        ``du/dmu`` with shape ``(nu, nu)`` and ``du/dL`` with shape ``(nu, nu, nu)``
        (output index first, then the entry of L).
    """
    samples = mu + eps @ chol.T
    costs = jax.vmap(cost_fn)(samples)
    w = jax.nn.softmax(-(costs - costs.min()) / temperature)
    g = jax.vmap(jax.grad(cost_fn))(samples)  # dc_k / du_k, (K, nu)
    g_bar = w @ g
    dw_dmu = -(w[:, None] / temperature) * (g - g_bar)  # (K, nu)
    ge = g[:, :, None] * eps[:, None, :]  # dc_k/du_k eps_k^T, (K, nu, nu)
    dw_dl = -(w[:, None, None] / temperature) * (ge - jnp.einsum("k,kab->ab", w, ge))
    nu = mu.shape[0]
    du_dmu = jnp.einsum("ki,kj->ij", samples, dw_dmu) + jnp.sum(w) * jnp.eye(nu)
    du_dl = jnp.einsum("ki,kab->iab", samples, dw_dl) + jnp.einsum(
        "ia,k,kb->iab", jnp.eye(nu), w, eps
    )
    return du_dmu, du_dl


def one_step_cost(
    model: DynamicsModel, step_fn, obs: Observation, tuning: TrackingTuning
) -> Callable[[Array], Array]:
    """``u -> stage cost of f(x, u)`` against the first reference point."""

    def cost(u: Array) -> Array:
        x_next = step_fn(obs.state, u, tuning.model_params)
        return stage_cost(model, x_next, u, obs.reference[0], obs.border[0], tuning)

    return cost


@dataclasses.dataclass(frozen=True)
class _LearnedController:
    """What Step-MPPI and DPC share: config, network, features, weights handling."""

    config: StepMPPIConfig = StepMPPIConfig()
    weights: PolicyWeights | None = dataclasses.field(default=None, compare=False, hash=False)
    # (field, value) pairs the weights were trained with, applied by default_tuning().
    tuning_defaults: tuple[tuple[str, Any], ...] = ()

    @property
    def model(self) -> DynamicsModel:
        return get_dynamics(self.config.dynamics)

    @property
    def reference_horizon(self) -> int:
        return 1 + max(self.config.preview, default=0)

    @property
    def dt(self) -> float:
        return self.config.dt

    def network(self):
        raise NotImplementedError

    def default_tuning(self) -> TrackingTuning:
        model = self.model
        return make_tuning(
            model,
            model_params=model.params_for_step(model.default_params, self.config.dt),
            **dict(self.tuning_defaults),
        )

    def features(self, obs: Observation) -> Array:
        model, ref = self.model, obs.reference[0]
        parts = [policy_features(model, obs.state, ref, obs.border[0])]
        parts += [
            preview_features(model, ref, obs.reference[k], obs.border[k])
            for k in self.config.preview
        ]
        return jnp.concatenate(parts)

    def init_weights(self, key: Array) -> PolicyWeights:
        """Fresh random weights with identity normalisation."""
        n = feature_dim(self.model, len(self.config.preview))
        lo, hi = self.model.control_bounds(self.model.default_params)
        params = self.network().init(key, jnp.zeros((1, n)), lo, hi)["params"]
        return PolicyWeights(params=params, input_mean=jnp.zeros(n), input_std=jnp.ones(n))

    def init(self, key: Array) -> LearnedState:
        key, wkey = jax.random.split(key)
        weights = self.weights if self.weights is not None else self.init_weights(wkey)
        return LearnedState(weights=weights, key=key, steps=jnp.zeros((), jnp.int32))

    def normalised_features(self, weights: PolicyWeights, obs: Observation) -> Array:
        return (self.features(obs) - weights.input_mean) / weights.input_std


@dataclasses.dataclass(frozen=True)
class StepMPPI(_LearnedController):
    """Step-MPPI: learned sampling distribution + single-step MPPI."""

    name: str = "step_mppi"

    def network(self) -> DistributionPolicy:
        c = self.config
        return DistributionPolicy(
            control_dim=self.model.control_dim,
            hidden=c.hidden,
            activation=c.activation,
            full_covariance=c.full_covariance,
        )

    def distribution(
        self, weights: PolicyWeights, obs: Observation, tuning: TrackingTuning
    ) -> tuple[Array, Array]:
        lo, hi = self.model.control_bounds(tuning.model_params)
        return self.network().apply(
            {"params": weights.params}, self.normalised_features(weights, obs), lo, hi
        )

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Shape of the standard normal noise one step consumes: ``(K, nu)``."""
        return (self.config.num_samples, self.model.control_dim)

    def step(
        self,
        cstate: LearnedState,
        obs: Observation,
        tuning: TrackingTuning,
        key: Array | None = None,
    ) -> tuple[Array, LearnedState, StepMPPIInfo]:
        key, next_key = step_keys(cstate.key, key)
        eps = jax.random.normal(key, self.noise_shape)
        action, cstate, info = self.step_with_noise(cstate, obs, tuning, eps)
        return action, cstate.replace(key=next_key), info

    def step_with_noise(
        self, cstate: LearnedState, obs: Observation, tuning: TrackingTuning, eps: Array
    ) -> tuple[Array, LearnedState, StepMPPIInfo]:
        """:meth:`step` with the noise given (``noise_shape``): what ONNX export traces."""
        model = self.model
        mu, chol = self.distribution(cstate.weights, obs, tuning)
        # tuning.noise_std scales the learned spread live (1 = as trained).
        chol = chol * tuning.noise_std[:, None]
        step_fn = model.discrete(self.config.dt, self.config.integrator)
        cost_fn = one_step_cost(model, step_fn, obs, tuning)
        u, weights, costs = mppi_layer(mu, chol, eps, cost_fn, tuning.temperature)
        lo, hi = model.control_bounds(tuning.model_params)
        action = jnp.clip(u, lo, hi)
        info = StepMPPIInfo(
            mean=mu,
            chol=chol,
            cost_min=jnp.min(costs),
            effective_samples=1.0 / jnp.sum(weights**2),
            predicted_states=jnp.stack(
                [obs.state, step_fn(obs.state, action, tuning.model_params)]
            ),
            candidates=self._candidates(step_fn, obs.state, mu + eps @ chol.T, weights, tuning),
        )
        return action, cstate.replace(steps=cstate.steps + 1), info

    def _candidates(self, step_fn, x0: Array, samples: Array, weights: Array, tuning):
        """The first samples' next states (the step's cost sees one model step)."""
        m = candidate_count(samples.shape[0])
        if m is None:
            return None
        few = samples[:m]
        nxt = jax.vmap(lambda u: step_fn(x0, u, tuning.model_params))(few)
        return first_candidates(x0, nxt[:, None, :], weights)


@dataclasses.dataclass(frozen=True)
class DPC(_LearnedController):
    """Differentiable predictive control baseline: the network's output is the action."""

    name: str = "dpc"

    def network(self) -> DeterministicPolicy:
        c = self.config
        return DeterministicPolicy(
            control_dim=self.model.control_dim, hidden=c.hidden, activation=c.activation
        )

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """DPC draws no noise."""
        return ()

    def step(
        self,
        cstate: LearnedState,
        obs: Observation,
        tuning: TrackingTuning,
        key: Array | None = None,
    ) -> tuple[Array, LearnedState, dict]:
        _, next_key = step_keys(cstate.key, key)
        action, cstate, info = self.step_with_noise(cstate, obs, tuning, None)
        return action, cstate.replace(key=next_key), info

    def step_with_noise(
        self, cstate: LearnedState, obs: Observation, tuning: TrackingTuning, eps: None
    ) -> tuple[Array, LearnedState, dict]:
        """:meth:`step` without a PRNG key (DPC ignores ``eps``)."""
        lo, hi = self.model.control_bounds(tuning.model_params)
        w = cstate.weights
        action = self.network().apply(
            {"params": w.params}, self.normalised_features(w, obs), lo, hi
        )
        return action, cstate.replace(steps=cstate.steps + 1), {}
