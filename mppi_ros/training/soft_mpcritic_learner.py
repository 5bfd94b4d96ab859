"""softMPCritic's learner (paper Algorithm 2): amortised fitted Q-iteration with MPPI.

Each environment step plans with MPPI warm-started from the shifted previous plan and stores
``(s, a, r, s', terminated, plan)``. Each update (one per step) samples a batch, recomputes the
MPPI soft value at ``s'`` warm-started from the STORED plan (shifted by one) with the target
Q-network, writes the refined plan back into the buffer, regresses ``Q(s, a)`` on
``c + gamma (1 - terminated) V(s')`` (costs = negated rewards), soft-updates the target network
(``tau`` every ``target_every`` steps) and fits the dynamics ensemble by MSE on state changes
(a second, independent batch). Planning, buffer writes and both updates are one compiled
function per environment step; the environment runs in Python (MuJoCo), driven by
:mod:`mppi_ros.training.soft_mpcritic`.

``cold_start`` replaces the stored warm start by a zero plan and runs ``target_iterations``
iterations (the paper's Table I ablation).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mppi_ros.core.controllers.soft_mpcritic import (
    CriticProblem,
    CriticWeights,
    PlanResult,
    control_step,
    draw_members,
    improve,
    shift_plan,
)
from mppi_ros.core.controllers.soft_mpcritic_start import episode_start
from mppi_ros.core.dynamics.ensemble import EnsembleModel, Normalizer
from mppi_ros.training.gym_tasks import get_task
from mppi_ros.training.soft_mpcritic_config import SoftMPCriticTrainConfig

Array = jax.Array


@struct.dataclass
class Replay:
    """Ring buffer on the device; ``plan`` is refined in place by target computations."""

    obs: Array
    act: Array
    cost: Array
    next_obs: Array
    terminated: Array
    plan: Array
    size: Array
    cursor: Array

    @classmethod
    def empty(cls, capacity: int, obs_dim: int, act_dim: int, plan_len: int) -> Replay:
        z = functools.partial(jnp.zeros, dtype=jnp.float32)
        return cls(
            obs=z((capacity, obs_dim)),
            act=z((capacity, act_dim)),
            cost=z((capacity,)),
            next_obs=z((capacity, obs_dim)),
            terminated=z((capacity,)),
            plan=z((capacity, plan_len, act_dim)),
            size=jnp.zeros((), jnp.int32),
            cursor=jnp.zeros((), jnp.int32),
        )

    def add(self, obs, act, cost, next_obs, terminated, plan) -> Replay:
        i = self.cursor
        capacity = self.obs.shape[0]
        return self.replace(
            obs=self.obs.at[i].set(obs),
            act=self.act.at[i].set(act),
            cost=self.cost.at[i].set(cost),
            next_obs=self.next_obs.at[i].set(next_obs),
            terminated=self.terminated.at[i].set(terminated),
            plan=self.plan.at[i].set(plan),
            size=jnp.minimum(self.size + 1, capacity),
            cursor=(i + 1) % capacity,
        )


@struct.dataclass
class TrainState:
    """Everything that changes during training (checkpointed as one msgpack tree)."""

    weights: CriticWeights
    target_q: Any
    q_opt: Any
    dynamics_opt: Any
    replay: Replay
    key: Array
    step: Array


@struct.dataclass
class StepMetrics:
    """Diagnostics of one :meth:`SoftMPCriticLearner.learn` update (the metrics CSV columns)."""

    q_loss: Array
    model_loss: Array
    target_value: Array
    plan_change: Array  # mean |refined - stored| of the written-back plans


@dataclasses.dataclass(frozen=True)
class SoftMPCriticLearner:
    """Static pieces of a run: the planning problem, configs and optimiser (hashable, so the
    compiled functions take it as a static argument)."""

    problem: CriticProblem
    config: SoftMPCriticTrainConfig

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.config.learning_rate)

    def init(self, key: Array) -> TrainState:
        k_weights, key = jax.random.split(key)
        weights = self.problem.init_weights(k_weights)
        opt = self.optimizer
        cfg = self.config
        return TrainState(
            weights=weights,
            target_q=jax.tree.map(jnp.copy, weights.q),  # own buffers (the step donates)
            q_opt=opt.init(weights.q),
            dynamics_opt=opt.init(weights.dynamics.net),
            replay=Replay.empty(
                cfg.capacity, self.problem.obs_dim, self.problem.act_dim, cfg.horizon + 1
            ),
            key=key,
            step=jnp.zeros((), jnp.int32),
        )

    @functools.partial(jax.jit, static_argnums=0)
    def reset_plan(self, weights: CriticWeights, obs: Array, key: Array) -> Array:
        """An episode's first plan, planned at its first observation (as in deployment)."""
        cfg = self.config
        tuning = cfg.tuning(self.problem.act_dim)
        return episode_start(self.problem, cfg.online_config(), weights, tuning, obs, key)

    @functools.partial(jax.jit, static_argnums=0)
    def act(
        self, weights: CriticWeights, obs: Array, plan: Array, key: Array
    ) -> tuple[PlanResult, Array]:
        """Online MPPI at ``obs`` from the warm-start ``plan``; also the next warm start."""
        cfg = self.config
        return control_step(
            self.problem,
            cfg.online_config(),
            weights,
            cfg.tuning(self.problem.act_dim),
            obs,
            plan,
            key,
        )

    def _targets(self, weights, target_q, replay: Replay, idx: Array, key: Array):
        cfg = self.config
        tuning = cfg.tuning(self.problem.act_dim)
        stored = replay.plan[idx]
        if cfg.cold_start:
            start = jnp.zeros_like(stored)
        else:
            start = jax.vmap(shift_plan)(stored)
        planner_weights = weights.replace(q=target_q)
        config = cfg.target_config()
        k_members, key = jax.random.split(key)
        members = draw_members(k_members, self.problem, config)  # shared by batch
        keys = jax.random.split(key, idx.shape[0])

        def target_plan(obs: Array, plan: Array, k: Array) -> PlanResult:
            s, context = self.problem.split(obs)
            return improve(
                self.problem, config, planner_weights, tuning, s, plan, k, members, context
            )

        result = jax.vmap(target_plan)(replay.next_obs[idx], start, keys)
        target = replay.cost[idx] + tuning.discount * (1.0 - replay.terminated[idx]) * result.value
        # Write back: slots 1..H of the stored plan are the refined plan's steps 0..H-1 at s'.
        written = jnp.concatenate([stored[:, :1], result.plan[:, :-1]], axis=1)
        return jax.lax.stop_gradient(target), stored, written, result

    @functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
    def store(self, state: TrainState, transition: tuple) -> TrainState:
        """Stores one transition without learning (the ``learning_starts`` phase)."""
        return state.replace(replay=state.replay.add(*transition))

    def normalise_ensemble(self, state: TrainState) -> TrainState:
        """Sets the ensemble's input and change statistics from the stored transitions."""
        replay, ensemble, problem = state.replay, self.problem.ensemble, self.problem
        n = int(replay.size)
        s = jax.vmap(problem.dynamics_state)(replay.obs[:n])
        s_next = jax.vmap(problem.dynamics_state)(replay.next_obs[:n])
        inputs = ensemble.member_input(s, replay.act[:n])
        changes = ensemble.change(s, s_next)
        dynamics = state.weights.dynamics.replace(
            inputs=Normalizer(jnp.mean(inputs, 0), jnp.std(inputs, 0) + 1e-6),
            deltas=Normalizer(jnp.mean(changes, 0), jnp.std(changes, 0) + 1e-6),
        )
        return state.replace(weights=state.weights.replace(dynamics=dynamics))

    @functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
    def learn(self, state: TrainState, transition: tuple) -> tuple[TrainState, StepMetrics]:
        """Stores one transition, then one Q update and one ensemble update (Algorithm 2)."""
        cfg, problem = self.config, self.problem
        replay = state.replay.add(*transition)
        key, k_q, k_plan, k_model = jax.random.split(state.key, 4)
        idx = jax.random.randint(k_q, (cfg.batch_size,), 0, replay.size)
        target, stored, written, result = self._targets(
            state.weights, state.target_q, replay, idx, k_plan
        )
        replay = replay.replace(plan=replay.plan.at[idx].set(written))

        def q_loss(q_params):
            features = jax.vmap(problem.observed_features)(replay.obs[idx])
            # each critic regresses the same target
            return problem.q_loss(q_params, features, replay.act[idx], target)

        loss_q, grads = jax.value_and_grad(q_loss)(state.weights.q)
        opt = self.optimizer
        updates, q_opt = opt.update(grads, state.q_opt, state.weights.q)
        q_params = optax.apply_updates(state.weights.q, updates)
        step = state.step + 1
        tau = jnp.where(step % cfg.target_every == 0, cfg.tau, 0.0)
        target_q = optax.incremental_update(q_params, state.target_q, tau)

        midx = jax.random.randint(k_model, (cfg.batch_size,), 0, replay.size)
        ensemble = problem.ensemble
        dynamics = state.weights.dynamics

        def model_loss(net):
            return ensemble.loss(
                dynamics.replace(net=net),
                jax.vmap(problem.dynamics_state)(replay.obs[midx]),
                replay.act[midx],
                jax.vmap(problem.dynamics_state)(replay.next_obs[midx]),
            )

        loss_m, grads = jax.value_and_grad(model_loss)(dynamics.net)
        updates, dynamics_opt = opt.update(grads, state.dynamics_opt, dynamics.net)
        net = optax.apply_updates(dynamics.net, updates)
        new_state = TrainState(
            weights=CriticWeights(q=q_params, dynamics=dynamics.replace(net=net)),
            target_q=target_q,
            q_opt=q_opt,
            dynamics_opt=dynamics_opt,
            replay=replay,
            key=key,
            step=step,
        )
        metrics = StepMetrics(
            q_loss=loss_q,
            model_loss=loss_m,
            target_value=jnp.mean(result.value),
            plan_change=jnp.mean(jnp.abs(written - stored)),
        )
        return new_state, metrics


def make_learner(config: SoftMPCriticTrainConfig) -> SoftMPCriticLearner:
    """The learner for ``config.task`` (a gymnasium task name or the vehicle task)."""
    if config.is_vehicle:
        problem = config.vehicle.problem(
            config.horizon, config.ensemble_size, tuple(config.hidden), config.critics
        )
        return SoftMPCriticLearner(problem, config)
    task = get_task(config.task)
    problem = CriticProblem(
        ensemble=EnsembleModel(
            task.obs_dim, task.act_dim, config.ensemble_size, tuple(config.hidden)
        ),
        stage_cost=task.stage_cost,
        action_low=task.action_low,
        action_high=task.action_high,
        q_hidden=tuple(config.hidden),
        critics=config.critics,
    )
    return SoftMPCriticLearner(problem, config)
