"""softMPCritic training (paper Algorithm 2): amortised fitted Q-iteration with MPPI.

Each environment step plans with MPPI warm-started from the shifted previous plan and stores
``(s, a, r, s', terminated, plan)``. Each update (one per step) samples a batch, recomputes the
MPPI soft value at ``s'`` warm-started from the STORED plan (shifted by one) with the target
Q-network, writes the refined plan back into the buffer, regresses ``Q(s, a)`` on
``c + gamma (1 - terminated) V(s')`` (costs = negated rewards), soft-updates the target network
(``tau`` every ``target_every`` steps) and fits the dynamics ensemble by MSE on state changes
(a second, independent batch). Planning, buffer writes and both updates are one compiled
function per environment step; the environment runs in Python (MuJoCo).

``cold_start`` replaces the stored warm start by a zero plan and runs ``target_iterations``
iterations (the paper's Table I ablation).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization, struct

from mppi_ros.core.bundle import load_soft_mpcritic_bundle, save_soft_mpcritic_bundle
from mppi_ros.core.controllers.soft_mpcritic import (
    CriticProblem,
    CriticWeights,
    PlanResult,
    SoftMPCriticConfig,
    SoftTuning,
    control_step,
    draw_members,
    improve,
    initial_plan,
    make_soft_tuning,
    shift_plan,
)
from mppi_ros.core.dynamics.ensemble import EnsembleModel, Normalizer
from mppi_ros.core.speed import SpeedSettings
from mppi_ros.training.config import config_to_dict, dataclass_from_dict, load_yaml_config
from mppi_ros.training.gym_tasks import get_task
from mppi_ros.training.trainer import (
    CHECKPOINT,
    METRICS,
    TrainingError,
    _progress_bar,
    command_line,
    read_checkpoint,
    write_checkpoint,
)
from mppi_ros.training.vehicle_task import VEHICLE_TASK, VehicleTaskConfig, VehicleTrackingEnv

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SoftMPCriticTrainConfig:
    """Everything one training run depends on (YAML: ``mppi-ros train soft-mpcritic``).

    Defaults are the paper's Gaussian-prior settings (the softMPCritic paper). ``task`` is a
    gymnasium id or ``f1tenth-tracking`` (the vehicle task, set up by ``vehicle``).

    ``noise_std`` (one entry per action) replaces ``sqrt(noise_var)`` where actions have
    different units (the vehicle's steering rate and acceleration). ``learning_starts``: the
    first steps only fill the buffer (the untrained planner explores), then the ensemble's
    input and output statistics are set from it and learning starts; 0 (the paper's
    Algorithm 2) learns from the first step with identity statistics.
    """

    task: str = "InvertedDoublePendulum-v5"
    total_steps: int = 50_000
    seed: int = 0
    num_samples: int = 200
    target_samples: int = 20
    horizon: int = 4
    iterations: int = 1
    target_iterations: int = 1
    cold_start: bool = False
    prior: str = "gaussian"
    member_sampling: str = "step"
    temperature: float = 0.1
    noise_var: float = 0.1
    discount: float = 0.99
    ensemble_size: int = 4
    critics: int = 1
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 3e-4
    batch_size: int = 32
    tau: float = 0.005
    target_every: int = 2
    buffer_size: int = 1_000_000
    checkpoint_every: int = 10_000
    noise_std: tuple[float, ...] = ()
    learning_starts: int = 0
    vehicle: VehicleTaskConfig = dataclasses.field(default_factory=VehicleTaskConfig)

    def __post_init__(self) -> None:
        positive = ("total_steps", "num_samples", "target_samples", "horizon", "iterations")
        for name in (*positive, "target_iterations", "ensemble_size", "batch_size", "buffer_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.tau <= 1 or self.target_every < 1:
            raise ValueError("tau must lie in (0, 1] and target_every be >= 1")
        make_soft_tuning(1, self.temperature, self.noise_var, self.discount)  # validates
        self.online_config()  # validates prior / member_sampling

    def online_config(self) -> SoftMPCriticConfig:
        return SoftMPCriticConfig(
            self.num_samples, self.horizon, self.iterations, self.prior, self.member_sampling
        )

    def target_config(self) -> SoftMPCriticConfig:
        return SoftMPCriticConfig(
            self.target_samples,
            self.horizon,
            self.target_iterations,
            self.prior,
            self.member_sampling,
        )

    def tuning(self, act_dim: int) -> SoftTuning:
        tuning = make_soft_tuning(act_dim, self.temperature, self.noise_var, self.discount)
        if self.noise_std:
            if len(self.noise_std) != act_dim or min(self.noise_std) <= 0:
                raise ValueError(
                    f"noise_std needs {act_dim} positive entries, got {self.noise_std}"
                )
            tuning = tuning.replace(noise_std=jnp.asarray(self.noise_std, jnp.float32))
        return tuning

    @property
    def is_vehicle(self) -> bool:
        return self.task == VEHICLE_TASK

    @property
    def capacity(self) -> int:
        return min(self.buffer_size, self.total_steps)


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

    def reset_plan(self, key: Array) -> Array:
        cfg = self.config
        return initial_plan(key, cfg.online_config(), cfg.tuning(self.problem.act_dim))

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


_NO_METRICS = StepMetrics(*(float("nan"),) * 4)  # episodes before learning starts

METRIC_FIELDS = (
    "step",
    "episode",
    "return",
    "length",
    "terminated",
    "steps_per_s",
    "wall_s",
    "q_loss",
    "model_loss",
    "target_value",
    "plan_change",
)


@dataclasses.dataclass
class SoftMPCriticResult:
    bundle: Path
    steps: int
    episodes: int
    returns: list[float]
    steps_per_s: float
    wall_s: float


class SoftMPCriticTrainer:
    """Runs Algorithm 2 on a gymnasium task; writes ``out/training/{metrics.csv, checkpoint}``
    and the bundle ``out/{manifest.json, params.msgpack}``.

    ``--resume`` restores the networks, optimisers, replay buffer (with its refined plans),
    PRNG key and counters from the last checkpoint; the interrupted episode starts afresh.
    """

    def __init__(self, config: SoftMPCriticTrainConfig, out: str | Path) -> None:
        self.config = config
        self.learner = make_learner(config)
        self.out = Path(out)
        self.work = self.out / "training"

    def make_env(self):
        """The training environment (a gymnasium env, or the vehicle tracking env)."""
        cfg = self.config
        if cfg.is_vehicle:
            return VehicleTrackingEnv(cfg.vehicle, self.learner.problem)
        env = get_task(cfg.task).make_env()
        env.action_space.seed(cfg.seed)
        return env

    # ----- checkpoints -----------------------------------------------------------------------

    def _fresh(self) -> dict[str, Any]:
        return {
            "train": self.learner.init(jax.random.PRNGKey(self.config.seed)),
            "episodes": 0,
            "wall_s": 0.0,
            "returns": np.zeros(0),
        }

    def save_checkpoint(self, run: dict[str, Any]) -> None:
        host = jax.device_get(run)
        host["returns"] = np.asarray(host["returns"], np.float64)
        info = {"step": int(host["train"].step), "config": config_to_dict(self.config)}
        write_checkpoint(self.work, host, info)

    def load_checkpoint(self) -> dict[str, Any]:
        raw = read_checkpoint(self.work, config_to_dict(self.config), may_change="total_steps")
        template = jax.device_get(self._fresh())
        template["returns"] = np.asarray(raw["returns"])  # grows with the run
        return serialization.from_state_dict(template, raw)

    # ----- loop ------------------------------------------------------------------------------

    def run(self, resume: bool = False, progress: bool = True, log=print) -> SoftMPCriticResult:
        cfg, learner = self.config, self.learner
        if not resume and (self.work / CHECKPOINT).exists():
            raise TrainingError(
                f"{self.out} already holds a training run; pass --resume or pick a new --out"
            )
        run = self.load_checkpoint() if resume else self._fresh()
        if not resume:
            self.work.mkdir(parents=True, exist_ok=True)
            with open(self.work / METRICS, "w", newline="") as f:
                csv.writer(f).writerow(METRIC_FIELDS)
        state: TrainState = run["train"]
        start_step = int(state.step)
        env = self.make_env()
        obs, _ = env.reset(seed=cfg.seed + start_step)
        key = jax.random.fold_in(state.key, 1)
        key, k_plan = jax.random.split(key)
        plan = learner.reset_plan(k_plan)
        returns = list(np.asarray(run["returns"]))
        episode_return, length = 0.0, 0
        bar = _progress_bar(cfg.total_steps, start_step, progress)
        started, wall0 = time.perf_counter(), float(run["wall_s"])
        metrics = None
        with open(self.work / METRICS, "a", newline="") as f:
            writer = csv.writer(f)
            for step in range(start_step, cfg.total_steps):
                key, k_act, k_reset = jax.random.split(key, 3)
                result, next_plan = learner.act(
                    state.weights, jnp.asarray(obs, jnp.float32), plan, k_act
                )
                action = np.asarray(result.action)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                transition = (
                    jnp.asarray(obs, jnp.float32),
                    result.action,
                    jnp.float32(-reward),
                    jnp.asarray(next_obs, jnp.float32),
                    jnp.float32(terminated),
                    result.plan,
                )
                if step < cfg.learning_starts:
                    state = learner.store(state, transition)
                    if step + 1 == cfg.learning_starts:
                        state = learner.normalise_ensemble(state)
                else:
                    state, metrics = learner.learn(state, transition)
                episode_return += float(reward)
                length += 1
                plan = next_plan
                obs = next_obs
                bar.update(1)
                if terminated or truncated:
                    returns.append(episode_return)
                    run["episodes"] += 1
                    elapsed = time.perf_counter() - started
                    m = jax.device_get(metrics) if metrics is not None else _NO_METRICS
                    writer.writerow(
                        [
                            step + 1,
                            run["episodes"],
                            round(episode_return, 3),
                            length,
                            int(terminated),
                            round((step + 1 - start_step) / elapsed, 2),
                            round(wall0 + elapsed, 2),
                            float(m.q_loss),
                            float(m.model_loss),
                            float(m.target_value),
                            float(m.plan_change),
                        ]
                    )
                    f.flush()
                    bar.set_postfix(ret=f"{episode_return:.0f}", refresh=False)
                    episode_return, length = 0.0, 0
                    plan = learner.reset_plan(k_reset)
                    obs, _ = env.reset()
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.total_steps:
                    run.update(
                        train=state,
                        wall_s=wall0 + time.perf_counter() - started,
                        returns=np.asarray(returns),
                    )
                    self.save_checkpoint(run)
        bar.close()
        elapsed = time.perf_counter() - started
        steps_per_s = (cfg.total_steps - start_step) / max(elapsed, 1e-9)
        log(f"{cfg.task}: {len(returns)} episodes, {steps_per_s:.0f} steps/s")
        bundle = self.write_bundle(state, returns, steps_per_s, wall0 + elapsed)
        return SoftMPCriticResult(
            bundle, cfg.total_steps, len(returns), returns, steps_per_s, wall0 + elapsed
        )

    def bundle_env(self) -> dict[str, Any]:
        if self.config.is_vehicle:
            return {"kind": "vehicle", "id": VEHICLE_TASK, **config_to_dict(self.config.vehicle)}
        return {"kind": "gymnasium", "id": self.config.task}

    def write_bundle(self, state: TrainState, returns, steps_per_s: float, wall_s: float) -> Path:
        last = returns[-10:]
        return save_soft_mpcritic_bundle(
            self.out,
            self.learner.problem,
            self.config.online_config(),
            self.config.tuning(self.learner.problem.act_dim),
            jax.device_get(state.weights),
            env=self.bundle_env(),
            dt=self.config.vehicle.dt if self.config.is_vehicle else 0.0,
            training={
                "command": command_line(),
                "config": config_to_dict(self.config),
                "metrics": {
                    "steps": self.config.total_steps,
                    "episodes": len(returns),
                    "last10_return_mean": float(np.mean(last)) if last else None,
                    "steps_per_s": round(steps_per_s, 1),
                    "wall_s": round(wall_s, 1),
                },
                "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            },
        )


def load_soft_mpcritic_config(path: str | Path, **overrides: Any) -> SoftMPCriticTrainConfig:
    """Reads a YAML config; ``overrides`` that are not ``None`` win."""
    return load_yaml_config(SoftMPCriticTrainConfig, path, **overrides)


def train_soft_mpcritic(
    config: SoftMPCriticTrainConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    log=print,
) -> SoftMPCriticResult:
    return SoftMPCriticTrainer(config, out).run(resume=resume, progress=progress, log=log)


def _run_episodes(env, plan_step, weights, config, tuning, episodes: int, seed: int):
    """Episodes of ``env`` under the online planner; ``(returns, lengths, steps_per_s)``."""
    key = jax.random.PRNGKey(seed)
    returns, lengths, steps = [], [], 0
    started = time.perf_counter()
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        key, k_plan = jax.random.split(key)
        plan = initial_plan(k_plan, config, tuning)
        total, length, done = 0.0, 0, False
        while not done:
            key, k_act = jax.random.split(key)
            obs_in = jnp.asarray(obs, jnp.float32)
            result, plan = plan_step(weights, tuning, obs_in, plan, k_act)
            obs, reward, terminated, truncated, _ = env.step(np.asarray(result.action))
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
        steps += length
    return returns, lengths, steps / (time.perf_counter() - started)


def evaluate_bundle(
    path: str | Path,
    episodes: int = 10,
    seed: int = 0,
    track: str = "default",
    laps: int = 1,
    speed_profile: str = "constant",
    speed_scale: float = 1.0,
    reference_speed: float | None = None,
) -> dict[str, Any]:
    """Runs a softMPCritic bundle with its online planner (no learning) in the environment of
    its manifest: a gymnasium task, or the vehicle task on ``track`` (episodes from random
    starts, as in training) plus a closed-loop run of ``laps`` laps from the start line
    (``mppi-ros bench closed-loop`` settings) whose summary keys join the report. That run
    follows ``speed_profile`` x ``speed_scale`` capped at ``reference_speed`` (None: the
    bundle's speed), or that constant speed.

    Returns:
        ``{"model", "env", "episodes", "return_mean", "return_std", "returns", "lengths",
        "steps_per_s"}`` (plus the closed-loop keys and ``"track"`` for a vehicle bundle).
    """
    bundle, problem, config, tuning = load_soft_mpcritic_bundle(path)
    plan_step = jax.jit(functools.partial(control_step, problem, config))
    vehicle = bundle.env.get("kind") == "vehicle"
    if vehicle:
        task_config = vehicle_config(bundle.env)
        env = VehicleTrackingEnv(task_config, problem, tracks=[track])
        name = f"{VEHICLE_TASK}:{track}"
    else:
        task = get_task(bundle.env["id"])
        env, name = task.make_env(), task.name
    returns, lengths, steps_per_s = _run_episodes(
        env, plan_step, bundle.weights, config, tuning, episodes, seed
    )
    report = {
        "model": bundle.model_id,
        "env": name,
        "episodes": episodes,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "returns": [round(r, 3) for r in returns],
        "lengths": lengths,
        "steps_per_s": steps_per_s,
    }
    if vehicle:
        report["track"] = track
        speed = SpeedSettings(
            speed_profile, speed_scale, reference_speed or task_config.reference_speed
        )
        report.update(_closed_loop(path, track, speed, laps, seed))
    return report


def vehicle_config(env: dict[str, Any]) -> VehicleTaskConfig:
    """The vehicle task settings a bundle's manifest ``env`` records."""
    values = {k: v for k, v in env.items() if k not in ("kind", "id")}
    return dataclass_from_dict(VehicleTaskConfig, values, "env")


def _closed_loop(path, track: str, speed: SpeedSettings, laps: int, seed: int) -> dict[str, Any]:
    """``mppi-ros bench closed-loop`` of the bundle alone: its summary keys."""
    from mppi_ros.bench import closed_loop

    bench = closed_loop.ClosedLoopBench(
        track=track, controllers=(str(path),), laps=laps, speed=speed, seed=seed
    )
    report, _ = closed_loop.run(bench)
    return {
        "reference_speed": speed.reference_speed,
        "speed_profile": speed.profile,
        "speed_scale": speed.scale,
        **report["results"][str(path)],
    }
