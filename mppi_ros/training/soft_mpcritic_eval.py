"""Evaluating a softMPCritic bundle (``mppi-ros eval``): episodes under its online planner in
the environment its manifest names, plus a closed-loop lap run for a vehicle bundle."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.core.controllers.soft_mpcritic import control_step
from mppi_ros.core.controllers.soft_mpcritic_start import episode_start
from mppi_ros.core.speed import SpeedSettings
from mppi_ros.training.config import dataclass_from_dict
from mppi_ros.training.gym_tasks import get_task, load_task_bundle
from mppi_ros.training.vehicle_task import VEHICLE_TASK, VehicleTaskConfig, VehicleTrackingEnv


def _run_episodes(env, plan_step, start, weights, tuning, episodes: int, seed: int):
    """Episodes of ``env`` under the online planner, each started by ``start`` (planning at
    its first observation); ``(returns, lengths, steps_per_s)``."""
    key = jax.random.PRNGKey(seed)
    returns, lengths, steps = [], [], 0
    started = time.perf_counter()
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        key, k_plan = jax.random.split(key)
        plan = start(weights, tuning, jnp.asarray(obs, jnp.float32), k_plan)
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
    seeds: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Runs a softMPCritic bundle with its online planner (no learning) in the environment of
    its manifest: a gymnasium task, or the vehicle task on ``track`` (episodes from random
    starts, as in training) plus a closed-loop run of ``laps`` laps from the start line
    (``mppi-ros bench closed-loop`` settings) whose summary keys join the report. That run
    follows ``speed_profile`` x ``speed_scale`` capped at ``reference_speed`` (None: the
    bundle's speed), or that constant speed.

    ``seeds``: evaluation seeds, ``episodes`` each (default: ``seed`` alone); episode ``e`` of
    seed ``s`` resets the environment with seed ``s + e``.

    Returns:
        ``{"model", "env", "episodes", "seeds", "return_mean", "return_std", "returns",
        "lengths", "per_seed", "worst", "steps_per_s"}`` (plus the closed-loop keys and
        ``"track"`` for a vehicle bundle).
    """
    bundle, problem, config, tuning = load_task_bundle(path)
    plan_step = jax.jit(functools.partial(control_step, problem, config))
    start = jax.jit(functools.partial(episode_start, problem, config))
    vehicle = bundle.env.get("kind") == "vehicle"
    if vehicle:
        task_config = vehicle_config(bundle.env)
        env = VehicleTrackingEnv(task_config, problem, tracks=[track])
        name = f"{VEHICLE_TASK}:{track}"
    else:
        task = get_task(bundle.env["id"])
        env, name = task.make_env(), task.name
    runs = {}
    for s in seeds or (seed,):
        runs[s] = _run_episodes(env, plan_step, start, bundle.weights, tuning, episodes, s)
    returns = [r for rets, _, _ in runs.values() for r in rets]
    lengths = [n for _, lens, _ in runs.values() for n in lens]
    worst_seed, worst_episode = min(
        ((s, e) for s, (rets, _, _) in runs.items() for e in range(len(rets))),
        key=lambda se: runs[se[0]][0][se[1]],
    )
    report = {
        "model": bundle.model_id,
        "env": name,
        "episodes": episodes,
        "seeds": list(runs),
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "returns": [round(r, 3) for r in returns],
        "lengths": lengths,
        "per_seed": {
            str(s): {"returns": [round(r, 3) for r in rets], "lengths": lens}
            for s, (rets, lens, _) in runs.items()
        },
        # The worst episode: env reset seed = seed + episode.
        "worst": {
            "seed": worst_seed,
            "episode": worst_episode,
            "return": round(runs[worst_seed][0][worst_episode], 3),
            "length": runs[worst_seed][1][worst_episode],
        },
        "steps_per_s": float(np.mean([sps for _, _, sps in runs.values()])),
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
