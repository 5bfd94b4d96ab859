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
import numpy as np
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
from mppi_ros.training.replay_buffer import Replay, write
from mppi_ros.training.soft_mpcritic_config import SoftMPCriticTrainConfig

Array = jax.Array


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

    def _targets(self, weights, target_q, batch: tuple, key: Array):
        cfg = self.config
        tuning = cfg.tuning(self.problem.act_dim)
        _, _, cost, next_obs, terminated, stored = batch
        if cfg.cold_start:
            start = jnp.zeros_like(stored)
        else:
            start = jax.vmap(shift_plan)(stored)
        planner_weights = weights.replace(q=target_q)
        config = cfg.target_config()
        k_members, key = jax.random.split(key)
        members = draw_members(k_members, self.problem, config)  # shared by batch
        keys = jax.random.split(key, stored.shape[0])

        def target_plan(obs: Array, plan: Array, k: Array) -> PlanResult:
            s, context = self.problem.split(obs)
            return improve(
                self.problem, config, planner_weights, tuning, s, plan, k, members, context
            )

        result = jax.vmap(target_plan)(next_obs, start, keys)
        target = cost + tuning.discount * (1.0 - terminated) * result.value
        # Write back: slots 1..H of the stored plan are the refined plan's steps 0..H-1 at s'.
        written = jnp.concatenate([stored[:, :1], result.plan[:, :-1]], axis=1)
        return jax.lax.stop_gradient(target), stored, written, result

    def store(self, state: TrainState, transition: tuple) -> TrainState:
        """Stores one transition without learning (the ``learning_starts`` phase)."""
        return state.replace(replay=_store(state.replay, transition))

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

    def learn(self, state: TrainState, transition: tuple) -> tuple[TrainState, StepMetrics]:
        """Stores one transition, then one Q update and one ensemble update (Algorithm 2)."""
        core, metrics, idx, written = self._learn(without_replay(state), state.replay, transition)
        return core.replace(replay=write(state.replay, transition, idx, written)), metrics

    @functools.partial(jax.jit, static_argnums=0)
    def control(self, weights: CriticWeights, key: Array, obs: Array, warm, new_episode):
        """Online MPPI at ``obs`` from ``warm``, or from the planned episode start when
        ``new_episode`` (``warm`` may then be ``None``). Returns the next key, the result and
        the next warm start (for the steps that do not learn)."""
        key, k_start, k_act = jax.random.split(key, 3)
        start = lambda: self.reset_plan(weights, obs, k_start)
        if warm is None:
            warm = start()
        else:
            warm = jax.lax.cond(new_episode, start, lambda: warm)
        result, next_plan = self.act(weights, obs, warm, k_act)
        return key, result, next_plan

    def step(
        self, state: TrainState, host: np.ndarray, action: Array, plan: Array, warm: Array
    ) -> tuple[TrainState, StepMetrics, PlanResult, Array]:
        """One environment step of Algorithm 2 once the environment moved: :meth:`learn`
        from the transition and the next control step with the updated weights, in one
        compiled call with one host transfer (plus the buffer write).

        Args:
            host: :meth:`pack`'s vector: the observation, the next one, the cost, the
                termination flag, a new-episode flag and the observation to act at next (the
                next observation, or the reset one when the episode ended).
            action: The executed action (the last result's, on the device).
            plan: The plan stored with the transition (the last result's).
            warm: The next warm start (replaced by a planned start at a new episode).
        """
        core, metrics, idx, written, transition, result, next_plan = self.update_and_act(
            without_replay(state), state.replay, host, action, plan, warm
        )
        replay = write(state.replay, transition, idx, written)
        return core.replace(replay=replay), metrics, result, next_plan

    @functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
    def update_and_act(self, core: TrainState, replay: Replay, host, action, plan, warm):
        """The compiled part of :meth:`step` (``core``: :func:`without_replay`, donated;
        ``replay`` is only read). Returns the new core, the metrics, the sampled indices with
        their refined plans, the transition, the control result and the next warm start."""
        n = self.problem.obs_dim
        obs, next_obs, act_obs = host[:n], host[n : 2 * n], host[2 * n + 3 :]
        cost, terminated, new_episode = host[2 * n], host[2 * n + 1], host[2 * n + 2]
        transition = (obs, action, cost, next_obs, terminated, plan)
        core, metrics, idx, written = self._update(core, replay, transition)
        key, k_start, k_act = jax.random.split(core.key, 3)
        warm = jax.lax.cond(
            new_episode > 0.5,
            lambda: self.reset_plan(core.weights, act_obs, k_start),
            lambda: warm,
        )
        result, next_plan = self.act(core.weights, act_obs, warm, k_act)
        core = core.replace(key=key)
        return core, metrics, idx, written, transition, result, next_plan

    @staticmethod
    def pack(obs, next_obs, cost: float, terminated: bool, new_episode: bool, act_obs):
        """The host side of :meth:`step` as one float32 vector (a single transfer)."""
        flags = np.array([cost, terminated, new_episode], np.float32)
        parts = (np.asarray(obs), np.asarray(next_obs), flags, np.asarray(act_obs))
        return np.concatenate(parts, dtype=np.float32)

    @functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
    def _learn(self, core: TrainState, replay: Replay, transition: tuple):
        return self._update(core, replay, transition)

    def _update(self, core: TrainState, replay: Replay, transition: tuple):
        """The updates of :meth:`learn`, reading ``replay`` (as the transition's write will
        leave it) but not writing it; returns the state without its buffer, the metrics,
        and the sampled indices with their refined plans for :func:`write`."""
        cfg, problem = self.config, self.problem
        key, k_q, k_plan, k_model = jax.random.split(core.key, 4)
        idx, batch = replay.sample(k_q, cfg.batch_size, transition)
        _, model_batch = replay.sample(k_model, cfg.batch_size, transition)
        target, stored, written, result = self._targets(core.weights, core.target_q, batch, k_plan)

        def q_loss(q_params):
            features = jax.vmap(problem.observed_features)(batch[0])
            # each critic regresses the same target
            return problem.q_loss(q_params, features, batch[1], target)

        loss_q, grads = jax.value_and_grad(q_loss)(core.weights.q)
        opt = self.optimizer
        updates, q_opt = opt.update(grads, core.q_opt, core.weights.q)
        q_params = optax.apply_updates(core.weights.q, updates)
        step = core.step + 1
        tau = jnp.where(step % cfg.target_every == 0, cfg.tau, 0.0)
        target_q = optax.incremental_update(q_params, core.target_q, tau)

        ensemble = problem.ensemble
        dynamics = core.weights.dynamics
        m_obs, m_act, _, m_next, _, _ = model_batch

        def model_loss(net):
            return ensemble.loss(
                dynamics.replace(net=net),
                jax.vmap(problem.dynamics_state)(m_obs),
                m_act,
                jax.vmap(problem.dynamics_state)(m_next),
            )

        loss_m, grads = jax.value_and_grad(model_loss)(dynamics.net)
        updates, dynamics_opt = opt.update(grads, core.dynamics_opt, dynamics.net)
        net = optax.apply_updates(dynamics.net, updates)
        new_core = TrainState(
            weights=CriticWeights(q=q_params, dynamics=dynamics.replace(net=net)),
            target_q=target_q,
            q_opt=q_opt,
            dynamics_opt=dynamics_opt,
            replay=None,
            key=key,
            step=step,
        )
        metrics = StepMetrics(
            q_loss=loss_q,
            model_loss=loss_m,
            target_value=jnp.mean(result.value),
            plan_change=jnp.mean(jnp.abs(written - stored)),
        )
        return new_core, metrics, idx, written


@functools.partial(jax.jit, donate_argnums=0)
def _store(replay: Replay, transition: tuple) -> Replay:
    return replay.add(*transition)


def without_replay(state: TrainState) -> TrainState:
    """The state minus its buffer: the update calls donate this part and only read the
    buffer (see :mod:`~mppi_ros.training.replay_buffer`)."""
    return state.replace(replay=None)


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
