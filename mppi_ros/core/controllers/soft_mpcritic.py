"""softMPCritic (paper Algorithm 1): MPPI over a short horizon with a learned dynamics
ensemble and a terminal soft Q-function.

A plan holds ``H + 1`` actions: ``a_0 .. a_{H-1}`` drive the rollout, ``a_H`` is the action at
which the terminal ``Q(s_H, a_H)`` is evaluated. For each of ``K`` samples ``eps ~ N(0, Sigma)``
(per step and action entry) the sample cost is

    S = sum_{t<H} gamma^t c(s_t, a_t, s_{t+1}) + gamma^H Q(s_H, a_H) + prior(eps),

with actions ``a = clip(u + eps)`` fed to the model (the update uses the unclipped noise).
Gaussian prior ``N(0, Sigma)``: ``prior = lambda sum_{t<=H} gamma^t u_t^T Sigma^-1 eps_t``;
uniform prior over the action box: ``prior = -lambda/2 sum_{t<=H} gamma^t eps_t^T Sigma^-1
eps_t`` and samples leaving the box get zero weight. Weights ``softmax(-S / lambda)``; the plan
moves by the weighted mean of ``eps``; the soft value (free energy, in cost units) is

    V = -lambda log mean_k exp(-S_k / lambda) + correction,

where the correction is ``lambda/2 sum gamma^t u_t^T Sigma^-1 u_t`` (Gaussian; it makes the
importance-sampled estimate unbiased for ``-lambda log E_prior exp(-J / lambda)`` when
``gamma = 1``) or the log-density ratio constant of the uniform prior. Costs are negated
rewards: ``Q`` and ``V`` are costs-to-go.

Everything is a pure function of explicit arguments: learned weights (``CriticWeights``),
live tuning (``SoftTuning``: lambda, Sigma, gamma) and the warm-start plan. The caller jits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mppi_ros.core.dynamics.ensemble import EnsembleModel, EnsembleParams
from mppi_ros.core.networks import QNetwork

Array = jax.Array
StageCost = Callable[[Array, Array, Array], Array]  # (s, a, s_next) -> cost

PRIORS = ("gaussian", "uniform")
MEMBER_SAMPLING = ("step", "sample")


@dataclasses.dataclass(frozen=True)
class SoftMPCriticConfig:
    """Static planner settings (changing one recompiles).

    Attributes:
        num_samples: Sampled sequences K per iteration.
        horizon: Model steps H (the plan has H + 1 actions).
        iterations: MPPI iterations per call (each redraws noise around the updated plan).
        prior: ``"gaussian"`` (prior N(0, Sigma)) or ``"uniform"`` (prior uniform on the box).
        member_sampling: ``"step"``: one ensemble member per rollout step shared by all samples
            (as the reference code; one member evaluated per step); ``"sample"``: a member per
            sample and step (every member evaluated).
    """

    num_samples: int = 200
    horizon: int = 4
    iterations: int = 1
    prior: str = "gaussian"
    member_sampling: str = "step"

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.horizon < 1 or self.iterations < 1:
            raise ValueError("num_samples, horizon and iterations must be >= 1")
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; valid priors: {', '.join(PRIORS)}")
        if self.member_sampling not in MEMBER_SAMPLING:
            raise ValueError(
                f"unknown member_sampling {self.member_sampling!r}; valid: "
                f"{', '.join(MEMBER_SAMPLING)}"
            )


@struct.dataclass
class SoftTuning:
    """Live values (arguments of the compiled step; changing them never recompiles).

    Attributes:
        temperature: lambda > 0.
        noise_std: ``(nu,)`` standard deviations (Sigma = diag(noise_std^2)).
        discount: gamma in (0, 1].
    """

    temperature: Array
    noise_std: Array
    discount: Array


def make_soft_tuning(
    act_dim: int, temperature: float = 0.1, noise_var: float = 0.1, discount: float = 0.99
) -> SoftTuning:
    """Tuning with the paper's Gaussian-prior defaults (lambda 0.1, Sigma 0.1 I, gamma 0.99).

    Raises:
        ValueError: For a non-positive temperature or variance, or a discount outside (0, 1].
    """
    if not temperature > 0 or not noise_var > 0 or not 0 < discount <= 1:
        raise ValueError(
            f"need temperature > 0, noise_var > 0 and 0 < discount <= 1; got {temperature}, "
            f"{noise_var}, {discount}"
        )
    return SoftTuning(
        temperature=jnp.float32(temperature),
        noise_std=jnp.full((act_dim,), np.sqrt(noise_var), jnp.float32),
        discount=jnp.float32(discount),
    )


@struct.dataclass
class CriticWeights:
    """Learned weights: the Q-network (cost units) and the dynamics ensemble."""

    q: Any
    dynamics: EnsembleParams


@dataclasses.dataclass(frozen=True)
class CriticProblem:
    """What the planner needs besides weights and tuning (static, hashable).

    Attributes:
        ensemble: The dynamics ensemble.
        stage_cost: ``(s, a, s_next) -> cost`` (a negated analytic reward, or a tracking cost).
        action_low: Lower action bounds.
        action_high: Upper action bounds.
        q_hidden: Hidden widths of the Q-network.
        critics: Independent Q-networks; with 2 the planner and the targets use the larger
            (more pessimistic, in cost units) of the two, as in clipped double Q-learning.
        value_rescaling: The network outputs ``h(Q)`` with ``h(x) = sign(x)(sqrt(|x| + 1) - 1)
            + 1e-3 x`` (Pohlen et al. 2018) and is regressed on ``h(target)``: costs-to-go
            spanning 0.1 (on the line) to 1e4 (off the track) then fit with comparable
            relative precision. The network sees actions divided by the half-width of the
            action box either way (1 for the gymnasium tasks).
    """

    ensemble: EnsembleModel
    stage_cost: StageCost
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    q_hidden: tuple[int, ...] = (256, 256)
    critics: int = 1
    value_rescaling: bool = False

    def __post_init__(self) -> None:
        if self.critics not in (1, 2):
            raise ValueError(f"critics must be 1 or 2, got {self.critics}")

    @property
    def obs_dim(self) -> int:
        """Size of an observation (what the replay buffer stores)."""
        return self.ensemble.obs_dim

    @property
    def act_dim(self) -> int:
        return self.ensemble.act_dim

    @property
    def critic_dim(self) -> int:
        """Size of the Q-network's state input."""
        return self.obs_dim

    # ----- observation hooks. A gymnasium task's observation is its state and needs no
    # context (these defaults); a tracking problem overrides them to plan in the frame of an
    # observation and score against the reference window it carries.

    def split(self, obs: Array) -> tuple[Array, Any]:
        """``(planner start state, context)`` of an observation."""
        return obs, None

    def dynamics_state(self, obs: Array) -> Array:
        """The state the ensemble learns from (``s`` and ``s'`` of a transition share a
        frame)."""
        return obs

    def stage(self, s: Array, a: Array, s_next: Array, t: Array, context: Any) -> Array:
        """Cost of step ``t`` of a rollout."""
        del t, context
        return self.stage_cost(s, a, s_next)

    def critic_features(self, s: Array, t: Array | int, context: Any) -> Array:
        """Q-network input for state ``s`` at rollout step ``t`` (0: the observation)."""
        del t, context
        return s

    def observed_features(self, obs: Array) -> Array:
        """Q-network input of an observation (Q regression on stored transitions)."""
        s, context = self.split(obs)
        return self.critic_features(s, 0, context)

    @property
    def q_network(self) -> QNetwork:
        return QNetwork(tuple(self.q_hidden))

    def bounds(self) -> tuple[Array, Array]:
        return jnp.asarray(self.action_low, jnp.float32), jnp.asarray(self.action_high, jnp.float32)

    def init_weights(self, key: Array) -> CriticWeights:
        kq, kd = jax.random.split(key)
        obs, act = jnp.zeros(self.critic_dim), jnp.zeros(self.act_dim)
        if self.critics == 1:
            q = self.q_network.init(kq, obs, act)
        else:  # parameters stacked on a leading critic axis
            q = jax.vmap(lambda k: self.q_network.init(k, obs, act))(
                jax.random.split(kq, self.critics)
            )
        return CriticWeights(q=q, dynamics=self.ensemble.init(kd))

    def raw_q_values(self, q_params: Any, s: Array, a: Array) -> Array:
        """Every critic's network output, stacked on a leading axis of size ``critics``."""
        low, high = self.bounds()
        a = a / jnp.maximum(0.5 * (high - low), 1e-6)
        if self.critics == 1:
            return self.q_network.apply(q_params, s, a)[None]
        return jax.vmap(lambda p: self.q_network.apply(p, s, a))(q_params)

    def q_values(self, q_params: Any, s: Array, a: Array) -> Array:
        """Every critic's ``Q(s, a)`` (cost units), stacked on a leading critic axis."""
        raw = self.raw_q_values(q_params, s, a)
        return inverse_value_rescaling(raw) if self.value_rescaling else raw

    def q_loss(self, q_params: Any, s: Array, a: Array, target: Array) -> Array:
        """Mean squared error of every critic against ``target`` (rescaled when enabled)."""
        raw = self.raw_q_values(q_params, s, a)
        goal = value_rescaling(target) if self.value_rescaling else target
        return jnp.mean((raw - goal) ** 2)

    def q_value(self, q_params: Any, s: Array, a: Array) -> Array:
        """``Q(s, a)`` in cost units (the pessimistic maximum over critics)."""
        return jnp.max(self.q_values(q_params, s, a), axis=0)


RESCALING_EPS = 1e-3


def value_rescaling(x: Array) -> Array:
    """``h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x``."""
    return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + RESCALING_EPS * x


def inverse_value_rescaling(y: Array) -> Array:
    """The exact inverse of :func:`value_rescaling`."""
    eps = RESCALING_EPS
    root = (jnp.sqrt(1.0 + 4.0 * eps * (jnp.abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return jnp.sign(y) * (root**2 - 1.0)


@struct.dataclass
class PlanResult:
    """One planner call.

    Attributes:
        plan: ``(H + 1, nu)`` updated plan (unclipped; not yet shifted).
        action: ``clip(plan[0])``, the control to apply.
        value: Soft value ``V(s0)`` (cost units) from the last iteration's samples.
        cost_min: Lowest sample cost of the last iteration.
        effective_samples: ``1 / sum w^2`` of the last iteration.
    """

    plan: Array
    action: Array
    value: Array
    cost_min: Array
    effective_samples: Array


def sample_costs(
    problem: CriticProblem,
    config: SoftMPCriticConfig,
    weights: CriticWeights,
    tuning: SoftTuning,
    s0: Array,
    plan: Array,
    eps: Array,
    members: Array,
    context: Any = None,
) -> Array:
    """Discounted rollout cost plus terminal Q of each sample, without the prior term.

    Args:
        eps: ``(K, H + 1, nu)`` noise.
        members: ``(H,)`` member per step (``member_sampling == "step"``) or ``(H, K)``.
        context: The observation's context (:meth:`CriticProblem.split`).

    Returns:
        ``(K,)`` costs ``J``.
    """
    low, high = problem.bounds()
    actions = jnp.clip(plan + eps, low, high)  # (K, H+1, nu)
    k = eps.shape[0]
    ensemble = problem.ensemble

    def body(carry, inputs):
        s, total, factor = carry
        a, member, t = inputs
        if config.member_sampling == "step":
            s_next = ensemble.predict_member(weights.dynamics, member, s, a)
        else:
            every = ensemble.predict_all(weights.dynamics, s, a)  # (E, K, nx)
            s_next = every[member, jnp.arange(k)]
        cost = jax.vmap(lambda *x: problem.stage(*x, t, context))(s, a, s_next)
        return (s_next, total + factor * cost, factor * tuning.discount), None

    start = (jnp.broadcast_to(s0, (k, s0.shape[-1])), jnp.zeros(k), jnp.ones(()))
    h = config.horizon
    steps = (jnp.swapaxes(actions[:, :-1], 0, 1), members, jnp.arange(h))
    (s_h, total, factor), _ = jax.lax.scan(body, start, steps)
    features = jax.vmap(lambda x: problem.critic_features(x, h, context))(s_h)
    return total + factor * problem.q_value(weights.q, features, actions[:, -1])


def _discounts(tuning: SoftTuning, length: int) -> Array:
    return tuning.discount ** jnp.arange(length, dtype=jnp.float32)


def improve(
    problem: CriticProblem,
    config: SoftMPCriticConfig,
    weights: CriticWeights,
    tuning: SoftTuning,
    s0: Array,
    plan: Array,
    key: Array,
    members: Array | None = None,
    context: Any = None,
) -> PlanResult:
    """``config.iterations`` MPPI iterations from ``plan`` at state ``s0`` (Algorithm 1).

    Args:
        context: What the stage costs and the critic need besides the state (a tracking
            problem's reference window; ``None`` for a gymnasium task).
        members: Optional ensemble members per iteration, ``(iterations, H)`` or
            ``(iterations, H, K)`` (see :func:`draw_members`); drawn from ``key`` when omitted.
            A batch of planners (``vmap``) sharing one draw evaluates one member per step, as
            the reference implementation does.
    """
    low, high = problem.bounds()
    lam, inv_var = tuning.temperature, 1.0 / tuning.noise_std**2
    k, h, nu = config.num_samples, config.horizon, problem.act_dim
    disc = _discounts(tuning, h + 1)  # (H + 1,)
    k_members, key = jax.random.split(key)
    if members is None:
        members = draw_members(k_members, problem, config)

    def iteration(plan: Array, inputs: tuple[Array, Array]):
        k_eps, members = inputs
        eps = jax.random.normal(k_eps, (k, h + 1, nu)) * tuning.noise_std
        costs = sample_costs(problem, config, weights, tuning, s0, plan, eps, members, context)
        if config.prior == "gaussian":
            prior = lam * jnp.einsum("t,tu,ktu->k", disc, plan * inv_var, eps)
            correction = 0.5 * lam * jnp.einsum("t,tu->", disc, plan**2 * inv_var)
            valid = jnp.ones(k, bool)
        else:
            prior = -0.5 * lam * jnp.einsum("t,ktu->k", disc, eps**2 * inv_var)
            log_q_norm = -0.5 * (nu * jnp.log(2 * jnp.pi) + jnp.sum(jnp.log(tuning.noise_std**2)))
            correction = lam * jnp.sum(disc) * (log_q_norm + jnp.sum(jnp.log(high - low)))
            raw = plan + eps
            inside = jnp.all((raw >= low) & (raw <= high), axis=(1, 2))
            valid = jnp.where(jnp.any(inside), inside, True)  # none inside: use all
        total = costs + prior
        total = jnp.where(valid & jnp.isfinite(total), total, jnp.inf)
        baseline = jnp.min(total)
        logits = -(total - baseline) / lam
        log_mean = jax.nn.logsumexp(logits) - jnp.log(k)  # samples outside p's support count
        w = jax.nn.softmax(logits)
        value = baseline - lam * log_mean + correction
        new_plan = plan + jnp.einsum("k,ktu->tu", w, eps)
        return new_plan, (value, baseline, 1.0 / jnp.sum(w**2))

    keys = jax.random.split(key, config.iterations)
    plan, (values, mins, ess) = jax.lax.scan(iteration, plan, (keys, members))
    return PlanResult(
        plan=plan,
        action=jnp.clip(plan[0], low, high),
        value=values[-1],
        cost_min=mins[-1],
        effective_samples=ess[-1],
    )


def draw_members(key: Array, problem: CriticProblem, config: SoftMPCriticConfig) -> Array:
    """Uniform ensemble member indices, ``(iterations, H)`` or ``(iterations, H, K)``."""
    shape = (config.iterations, config.horizon)
    if config.member_sampling == "sample":
        shape += (config.num_samples,)
    return jax.random.randint(key, shape, 0, problem.ensemble.members)


def shift_plan(plan: Array) -> Array:
    """Warm start for the next state: drop the executed action, append zeros."""
    return jnp.concatenate([plan[1:], jnp.zeros_like(plan[:1])], axis=0)


def control_step(
    problem: CriticProblem,
    config: SoftMPCriticConfig,
    weights: CriticWeights,
    tuning: SoftTuning,
    obs: Array,
    plan: Array,
    key: Array,
) -> tuple[PlanResult, Array]:
    """Receding-horizon use: :func:`improve` at observation ``obs``, plus the shifted plan for
    the next state (both inside one compiled call when the caller jits this)."""
    s0, context = problem.split(obs)
    result = improve(problem, config, weights, tuning, s0, plan, key, context=context)
    return result, shift_plan(result.plan)
