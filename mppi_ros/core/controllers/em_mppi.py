"""EM-MPPI: MPPI as expectation-maximisation, with several EM iterations per control step.

Derivation (standard EM on the inference view of control). Let ``O`` be the event "optimal"
with likelihood ``p(O | U) = exp(-J(U) / lambda)`` for a control sequence ``U``, and let
``q_theta`` be the sampling distribution. Maximising the log evidence

    L(theta) = log E_{U ~ q_theta}[exp(-J(U) / lambda)]

over ``theta`` is a maximum-likelihood problem with ``U`` latent. For any ``theta_t``,
Jensen's inequality gives the lower bound

    L(theta) >= E_{p_t}[log q_theta(U)] + H(p_t) + const,
    p_t(U) ∝ q_{theta_t}(U) exp(-J(U) / lambda),

tight at ``theta = theta_t``. E-step: ``p_t`` is represented by K samples of ``q_{theta_t}``
with self-normalised weights ``w_k = softmax(-J_k / lambda)`` (MPPI's weights). M-step: for an
exponential family ``q_theta(U) = h(U) exp(<eta, T(U)> - A(eta))`` the bound is maximised
where the model's expected sufficient statistics equal the weighted ones,
``grad A(eta) = sum_k w_k T(U_k)`` (moment matching): for a Gaussian the weighted mean and
covariance. Each iteration therefore cannot decrease ``L`` (EM's monotonicity; with damping
``alpha`` the step moves a fraction of the way in the mean parameters, which keeps the
increase when ``A`` is strongly convex on the segment). One iteration with a fixed covariance
and ``alpha = 1`` is classic MPPI.

Rate (Gaussian, fixed covariance ``Sigma``, quadratic cost ``J = (u - u*)' P (u - u*) / 2``,
exact E-step): the tilted distribution is Gaussian with mean
``(Sigma^-1 + P / lambda)^-1 (Sigma^-1 mu + P u* / lambda)``, so
``mu' - u* = (I + Sigma P / lambda)^-1 (mu - u*)``: linear convergence with the rate
``rho = max eig (I + Sigma P / lambda)^-1``, fast when the exploration covariance is large
against the posterior covariance ``lambda P^-1``, and ``L`` itself is
``-(mu - u*)' (Sigma + lambda P^-1)^-1 (mu - u*) / 2 + const``, increasing as ``mu`` contracts.
With damping the rate is ``1 - alpha (1 - rho)`` per eigen-direction.

Families: ``gaussian_diag`` and ``gaussian_full`` (a Cholesky factor per horizon step; the
controls are clipped to the box as in classic MPPI and the moments are those of the clipped
samples), and ``squashed_gaussian`` for box-limited controls: ``u = c + h tanh(z)`` with
``z`` Gaussian, an exact change of variables; the moments are matched in ``z``, so no sample
or command leaves the box.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mppi_ros.core.controllers.base import (
    ConfigParameter,
    Observation,
    TrackingTuning,
    TuningParameter,
    update_tuning,
)
from mppi_ros.core.controllers.mppi import (
    HorizonPlanner,
    rollout,
    safe_softmax_weights,
    shift_plan,
)

Array = jax.Array
FAMILIES = ("gaussian_diag", "gaussian_full", "squashed_gaussian")
_JITTER = 1e-6


@dataclasses.dataclass(frozen=True)
class EMMPPIConfig:
    """Static settings (changing any recompiles).

    Attributes:
        dynamics, num_samples, horizon, dt, integrator, substeps, include_nominal,
            replan_period: As :class:`~mppi_ros.core.controllers.mppi.MPPIConfig`.
        family: Sampling family, one of :data:`FAMILIES`.
        max_em_iterations: Upper bound of the live ``em_iterations`` (the noise of one step
            has room for this many).
    """

    dynamics: str = "single_track"
    num_samples: int = 1024
    horizon: int = 40
    dt: float = 0.05
    integrator: str = "rk4"
    substeps: int = 1
    family: str = "gaussian_diag"
    max_em_iterations: int = 4
    include_nominal: bool = True
    replan_period: float | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; valid: {', '.join(FAMILIES)}")
        if min(self.num_samples, self.horizon, self.substeps, self.max_em_iterations) < 1:
            raise ValueError("num_samples, horizon, substeps and max_em_iterations must be >= 1")
        if not self.dt > 0:
            raise ValueError(f"dt must be positive, got {self.dt}")


@struct.dataclass
class EMTuning(TrackingTuning):
    """:class:`TrackingTuning` plus EM's live values (no recompilation).

    Attributes:
        em_iterations: EM iterations per control step (1 .. ``max_em_iterations``).
        damping: Fraction ``alpha`` of the M-step taken for the mean (1: full step).
        covariance_damping: The same for the covariance (0: fixed covariance).
        std_floor: Smallest sampling std, relative to ``noise_std``.
        std_ceiling: Largest sampling std, relative to ``noise_std``.
    """

    em_iterations: Array
    damping: Array
    covariance_damping: Array
    std_floor: Array
    std_ceiling: Array

    def validity_checks(self):
        fraction = lambda v: (v >= 0) & (v <= 1)
        return [
            *super().validity_checks(),
            ("em_iterations", self.em_iterations, lambda v: v >= 1, ">= 1"),
            ("damping", self.damping, lambda v: (v > 0) & (v <= 1), "in (0, 1]"),
            ("covariance_damping", self.covariance_damping, fraction, "in [0, 1]"),
            ("std_floor", self.std_floor, lambda v: v > 0, "> 0"),
            ("std_ceiling", self.std_ceiling, lambda v: v >= self.std_floor, ">= std_floor"),
        ]


EM_CONFIG_PARAMETERS = (
    ConfigParameter("family", "EM-MPPI sampling family.", choices=FAMILIES),
    ConfigParameter(
        "max_em_iterations",
        "Most EM iterations per step (the noise of a step has room for this many).",
        bounds=(1, 64),
    ),
)
EM_TUNING_PARAMETERS = (
    TuningParameter(
        "em_iterations",
        "EM iterations per control step (each a full set of rollouts); above the compiled "
        "max_em_iterations only that many run.",
        (1, 64),
    ),
    TuningParameter("damping", "Fraction of the M-step taken for the mean (1: full).", (1e-3, 1.0)),
    TuningParameter(
        "covariance_damping",
        "Fraction of the M-step taken for the covariance (0: fixed covariance).",
        (0.0, 1.0),
    ),
    TuningParameter("std_floor", "Smallest sampling std, relative to noise_std.", (1e-3, 100.0)),
    TuningParameter(
        "std_ceiling", "Largest sampling std, relative to noise_std (>= std_floor).", (1e-3, 100.0)
    ),
)


def em_tuning(base: TrackingTuning, **values) -> EMTuning:
    """``base`` with EM's values: those given, else ``base``'s own when it is an
    :class:`EMTuning`, else the defaults (2 iterations, full mean steps, half covariance steps,
    std within 0.2-3x ``noise_std``).

    Raises:
        ValueError: For an unknown field or a value out of range.
    """
    em = dict(em_iterations=2, damping=1.0, covariance_damping=0.5, std_floor=0.2, std_ceiling=3.0)
    unknown = set(values) - set(em)
    if unknown:
        raise ValueError(f"unknown EM tuning field(s) {sorted(unknown)}; valid: {sorted(em)}")
    if isinstance(base, EMTuning):
        return update_tuning(base, **values)
    em.update(values)
    fields = {f: getattr(base, f) for f in TrackingTuning.__dataclass_fields__}
    tuning = EMTuning(
        **fields,
        em_iterations=jnp.asarray(em["em_iterations"], jnp.int32),
        **{k: jnp.asarray(v, jnp.float32) for k, v in em.items() if k != "em_iterations"},
    )
    return update_tuning(tuning)  # validates


@struct.dataclass
class EMState:
    """Warm start: the mean and the spread (relative to ``noise_std``: a std ``(H, nu)``, or
    a Cholesky factor ``(H, nu, nu)`` for ``gaussian_full``), shifted after each call."""

    mean: Array
    spread: Array
    key: Array
    steps: Array


@struct.dataclass
class EMInfo:
    """Per EM iteration (NaN past ``em_iterations``): the Monte Carlo log evidence
    ``log mean exp(-J / lambda)``, the effective sample size and the covariance trace; and
    the rollout of the returned plan."""

    log_likelihood: Array
    effective_samples: Array
    covariance_trace: Array
    cost_min: Array
    predicted_states: Array


# ------------------------------------------------------------------ the EM iteration


def em_update(
    mean: Array, cov: Array, samples: Array, costs: Array, temperature: Array
) -> tuple[Array, Array, Array, Array]:
    """E-step and moment-matching M-step for Gaussian sufficient statistics.

    Args:
        mean: ``(..., d)`` current mean (broadcast against the samples).
        cov: The current covariance, diagonal ``(..., d)`` or full ``(..., d, d)``: the
            returned one has the same form.
        samples: ``(K, ..., d)``.
        costs: ``(K,)``.
        temperature: lambda.

    Returns:
        ``(weighted mean, weighted covariance, log evidence estimate, effective samples)``.
    """
    weights = safe_softmax_weights(costs, temperature)
    new_mean = jnp.tensordot(weights, samples, axes=1)
    dev = samples - new_mean
    if cov.ndim == mean.ndim:  # diagonal
        new_cov = jnp.tensordot(weights, dev**2, axes=1)
    else:
        new_cov = jnp.einsum("k,k...i,k...j->...ij", weights, dev, dev)
    finite = jnp.where(jnp.isfinite(costs), costs, jnp.inf)
    lowest = jnp.min(finite)
    log_evidence = -lowest / temperature + jnp.log(
        jnp.mean(jnp.exp(-(finite - lowest) / temperature))
    )
    return new_mean, new_cov, log_evidence, 1.0 / jnp.sum(weights**2)


def clamp_covariance(cov: Array, unit: Array, floor: Array, ceiling: Array, full: bool) -> Array:
    """``cov`` (variances, or full matrices when ``full``) with each std kept within
    ``[floor, ceiling] * unit``; correlations kept."""
    if not full:
        return jnp.clip(cov, (floor * unit) ** 2, (ceiling * unit) ** 2)
    std = jnp.sqrt(jnp.maximum(jnp.diagonal(cov, axis1=-2, axis2=-1), 1e-30))
    ratio = jnp.clip(std, floor * unit, ceiling * unit) / std
    return cov * ratio[..., :, None] * ratio[..., None, :]


def draw(mean: Array, spread: Array, unit: Array, noise: Array, full: bool) -> Array:
    """Samples ``(K, H, d)`` of the family from standard normal ``noise``: ``mean + unit *
    spread * noise``, or ``mean + (unit * spread) @ noise`` for Cholesky factors."""
    if full:
        return mean + jnp.einsum("hij,khj->khi", unit[:, None] * spread, noise)
    return mean + unit * spread * noise


def to_controls(z: Array, lo: Array, hi: Array, squashed: bool) -> Array:
    """The controls of samples ``z``: ``c + h tanh(z)`` (squashed), else ``z`` clipped."""
    if squashed:
        return 0.5 * (hi + lo) + 0.5 * (hi - lo) * jnp.tanh(z)
    return jnp.clip(z, lo, hi)


def _cholesky(cov: Array) -> Array:
    eye = jnp.eye(cov.shape[-1], dtype=cov.dtype)
    scale = jnp.maximum(jnp.max(jnp.diagonal(cov, axis1=-2, axis2=-1), axis=-1), 1e-12)
    return jnp.linalg.cholesky(cov + _JITTER * scale[..., None, None] * eye)


# ------------------------------------------------------------------ the controller


@dataclasses.dataclass(frozen=True)
class EMMPPI(HorizonPlanner):
    """EM-MPPI on the shared functional interface (see ``Controller``)."""

    config: EMMPPIConfig = EMMPPIConfig()
    name: str = "em_mppi"

    def __post_init__(self) -> None:
        if self.squashed:
            model = self.model
            lo, hi = model.control_bounds(model.default_params)
            if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
                raise ValueError(
                    f"family 'squashed_gaussian' needs finite control bounds; {model.name} has "
                    f"{np.asarray(lo).tolist()} .. {np.asarray(hi).tolist()}"
                )

    @property
    def full(self) -> bool:
        return self.config.family == "gaussian_full"

    @property
    def squashed(self) -> bool:
        return self.config.family == "squashed_gaussian"

    def default_tuning(self) -> EMTuning:
        base = self.planning_tuning()
        return em_tuning(base, em_iterations=min(2, self.config.max_em_iterations))

    def init(self, key: Array) -> EMState:
        h, nu = self.config.horizon, self.model.control_dim
        spread = jnp.broadcast_to(jnp.eye(nu), (h, nu, nu)) if self.full else jnp.ones((h, nu))
        return EMState(
            mean=jnp.zeros((h, nu)), spread=spread, key=key, steps=jnp.zeros((), jnp.int32)
        )

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """``(max_em_iterations, K, H, nu)`` standard normal noise per step."""
        cfg = self.config
        return (cfg.max_em_iterations, cfg.num_samples, cfg.horizon, self.model.control_dim)

    def step_with_noise(
        self, cstate: EMState, obs: Observation, tuning: EMTuning, eps: Array
    ) -> tuple[Array, EMState, EMInfo]:
        """:meth:`step` with the noise given (``noise_shape``)."""
        cfg, model = self.config, self.model
        lo, hi = model.control_bounds(tuning.model_params)
        half = 0.5 * (hi - lo)
        # The unit the spread is relative to: noise_std, in latent units when squashed.
        unit = tuning.noise_std / half if self.squashed else tuning.noise_std
        step_fn = self._step_fn()
        iterations = jnp.clip(tuning.em_iterations, 1, cfg.max_em_iterations)

        def controls_of(z: Array) -> Array:
            return to_controls(z, lo, hi, self.squashed)

        def costs_of(controls: Array) -> Array:
            run = jax.vmap(rollout, in_axes=(None, None, None, 0, None, None))
            return run(step_fn, model, obs.state, controls, obs, tuning)[0]

        def absolute(spread: Array) -> Array:  # the covariance in control (or latent) units
            if self.full:
                chol = unit[:, None] * spread
                return chol @ jnp.swapaxes(chol, -1, -2)
            return (unit * spread) ** 2

        def iteration(i, carry):
            mean, spread, trace = carry
            e = eps[i]
            if cfg.include_nominal:  # the current mean is sample 0 (not an indexed update)
                e = jnp.concatenate([jnp.zeros_like(e[:1]), e[1:]], axis=0)
            z = draw(mean, spread, unit, e, self.full)
            controls = controls_of(z)
            costs = costs_of(controls)
            cov = absolute(spread)
            samples = z if self.squashed else controls
            new_mean, new_cov, log_evidence, ess = em_update(
                mean, cov, samples, costs, tuning.temperature
            )
            # Convex combinations: a full step (1) gives the M-step's values exactly.
            alpha, beta = tuning.damping, tuning.covariance_damping
            mean = (1.0 - alpha) * mean + alpha * new_mean
            cov = (1.0 - beta) * cov + beta * new_cov
            cov = clamp_covariance(cov, unit, tuning.std_floor, tuning.std_ceiling, self.full)
            if self.full:
                spread = _cholesky(cov) / unit[:, None]
                cov_trace = jnp.sum(jnp.trace(cov, axis1=-2, axis2=-1))
            else:
                spread = jnp.sqrt(cov) / unit
                cov_trace = jnp.sum(cov)
            row = jnp.stack([log_evidence, ess, cov_trace, jnp.min(costs)])
            return mean, spread, trace.at[i].set(row)

        trace = jnp.full((cfg.max_em_iterations, 4), jnp.nan)

        def guarded(carry, i):  # a fixed trip count (ONNX export needs one); cond skips
            return jax.lax.cond(i < iterations, lambda c: iteration(i, c), lambda c: c, carry), None

        (mean, spread, trace), _ = jax.lax.scan(
            guarded, (cstate.mean, cstate.spread, trace), jnp.arange(cfg.max_em_iterations)
        )
        plan = controls_of(mean)
        _, predicted = rollout(step_fn, model, obs.state, plan, obs, tuning)
        info = EMInfo(
            log_likelihood=trace[:, 0],
            effective_samples=trace[:, 1],
            covariance_trace=trace[:, 2],
            cost_min=trace[:, 3],
            predicted_states=jnp.concatenate([obs.state[None], predicted], axis=0),
        )
        h = cfg.horizon
        fill = jnp.eye(model.control_dim) if self.full else jnp.ones(model.control_dim)
        flat = spread.reshape(h, -1)
        next_state = EMState(
            mean=shift_plan(mean, mean[-1], self.shift_steps),
            spread=shift_plan(flat, fill.reshape(-1), self.shift_steps).reshape(spread.shape),
            key=cstate.key,
            steps=cstate.steps + 1,
        )
        return plan[0], next_state, info
