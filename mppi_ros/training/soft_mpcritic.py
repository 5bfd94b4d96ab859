"""softMPCritic training runs (paper Algorithm 2): the environment loop around the compiled
learner of :mod:`mppi_ros.training.soft_mpcritic_learner`, its checkpoints, metrics CSV and
the final bundle.

The settings are :mod:`mppi_ros.training.soft_mpcritic_config`, and evaluating a bundle is
:mod:`mppi_ros.training.soft_mpcritic_eval`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from mppi_ros.core.bundles import save_soft_mpcritic_bundle
from mppi_ros.training.checkpoint import CHECKPOINT, METRICS, read_checkpoint, write_checkpoint
from mppi_ros.training.common import TrainingError, command_line, progress_bar
from mppi_ros.training.config import config_to_dict
from mppi_ros.training.gym_tasks import get_task
from mppi_ros.training.soft_mpcritic_config import SoftMPCriticTrainConfig
from mppi_ros.training.soft_mpcritic_learner import StepMetrics, TrainState, make_learner
from mppi_ros.training.vehicle_task import VEHICLE_TASK, VehicleTrackingEnv

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
    """What a finished run produced: the bundle folder, counters and episode returns."""

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
        key, result, warm = learner.control(state.weights, state.key, obs, None, True)
        state = state.replace(key=key)
        returns = list(np.asarray(run["returns"]))
        episode_return, length = 0.0, 0
        bar = progress_bar(cfg.total_steps, start_step, progress)
        started, wall0 = time.perf_counter(), float(run["wall_s"])
        metrics = None
        with open(self.work / METRICS, "a", newline="") as f:
            writer = csv.writer(f)
            for step in range(start_step, cfg.total_steps):
                # The only host sync of a step: the action for the environment.
                next_obs, reward, terminated, truncated, _ = env.step(np.asarray(result.action))
                done = terminated or truncated
                act_obs = env.reset()[0] if done else next_obs
                if step < cfg.learning_starts:
                    transition = (obs, result.action, -reward, next_obs, terminated, result.plan)
                    state = learner.store(state, _float32(transition))
                    if step + 1 == cfg.learning_starts:
                        state = learner.normalise_ensemble(state)
                    key, result, warm = learner.control(
                        state.weights, state.key, act_obs, warm, done
                    )
                    state = state.replace(key=key)
                else:
                    host = learner.pack(obs, next_obs, -reward, terminated, done, act_obs)
                    state, metrics, result, warm = learner.step(
                        state, host, result.action, result.plan, warm
                    )
                episode_return += float(reward)
                length += 1
                obs = act_obs
                bar.update(1)
                if done:
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


def _float32(transition: tuple) -> tuple:
    """Host values of a transition as float32 (device arrays pass through)."""
    return tuple(x if isinstance(x, jax.Array) else np.float32(x) for x in transition)


def train_soft_mpcritic(
    config: SoftMPCriticTrainConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    log=print,
) -> SoftMPCriticResult:
    return SoftMPCriticTrainer(config, out).run(resume=resume, progress=progress, log=log)
