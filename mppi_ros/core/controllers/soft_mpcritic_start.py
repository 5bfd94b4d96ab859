"""How a softMPCritic episode starts: its first plan is planned at its first state.

Training (:mod:`mppi_ros.training.soft_mpcritic`), evaluation (``mppi-ros eval``) and the
node's first step (:class:`~mppi_ros.core.controllers.soft_mpcritic_tracking.SoftMPCritic`)
all start this way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mppi_ros.core.controllers.soft_mpcritic import (
    CriticProblem,
    CriticWeights,
    SoftMPCriticConfig,
    SoftTuning,
    improve,
)

Array = jax.Array

# Planner calls at an episode's first state before its first action (see start_plan).
START_IMPROVEMENTS = 4


def initial_plan(key: Array, config: SoftMPCriticConfig, tuning: SoftTuning) -> Array:
    """A plan drawn from N(0, Sigma): the reference implementation's episode start."""
    return (
        jax.random.normal(key, (config.horizon + 1, tuning.noise_std.shape[0])) * tuning.noise_std
    )


def start_plan(
    problem: CriticProblem,
    config: SoftMPCriticConfig,
    weights: CriticWeights,
    tuning: SoftTuning,
    s0: Array,
    key: Array,
    context: Any = None,
    improvements: int = START_IMPROVEMENTS,
) -> Array:
    """An episode's first plan: planned at its first state, not drawn.

    :func:`improve` runs ``improvements`` times at ``s0``, from the prior mean (zeros) and each
    from the last one's plan, unshifted (the state has not moved). A single random draw from
    the prior made the first action of an episode as good as that draw: the shipped double
    pendulum fell after 13 steps in one start of thirty. Training, evaluation and the node
    start episodes this way.
    """
    plan = jnp.zeros((config.horizon + 1, problem.act_dim), jnp.float32)

    def body(plan: Array, key: Array) -> tuple[Array, None]:
        return improve(problem, config, weights, tuning, s0, plan, key, context=context).plan, None

    plan, _ = jax.lax.scan(body, plan, jax.random.split(key, improvements))
    return plan


def episode_start(
    problem: CriticProblem,
    config: SoftMPCriticConfig,
    weights: CriticWeights,
    tuning: SoftTuning,
    obs: Array,
    key: Array,
) -> Array:
    """:func:`start_plan` at observation ``obs`` (a gymnasium task's or the vehicle task's)."""
    s0, context = problem.split(obs)
    return start_plan(problem, config, weights, tuning, s0, key, context)
