"""`mppi-ros bench soft-mpcritic-speed`: softMPCritic training throughput for one config.

Three measurements in one process:

- **whole run**: a real training run (:class:`~mppi_ros.training.soft_mpcritic.
  SoftMPCriticTrainer`) of ``steps`` environment steps, timed from building the learner to
  the written bundle (compilation included), and from the process's start (imports too);
- **steady state**: the steps/s between 20 % of the run and its last episode (the metrics CSV);
- **profile**: ``profile_steps`` more steps of the same loop with a filled buffer, split into
  the compiled step (timed alone with ``block_until_ready``), the environment and the
  host side (Python, transfers: the rest), and the step's matrix-multiply FLOPs against
  this machine's measured matmul rate (the roofline: what the step would take at that rate).

The persistent compilation cache is whatever the CLI set (``MPPI_ROS_JAX_CACHE=off`` for a
cold run); the report names it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.training.checkpoint import METRICS
from mppi_ros.training.config import config_to_dict
from mppi_ros.training.soft_mpcritic import SoftMPCriticTrainer
from mppi_ros.training.soft_mpcritic_config import SoftMPCriticTrainConfig
from mppi_ros.training.soft_mpcritic_learner import without_replay

STEADY_FROM = 0.2  # steady state: from this fraction of the run


@dataclasses.dataclass(frozen=True)
class SpeedBench:
    """What to run: ``config`` for ``config.total_steps`` steps into ``out``."""

    config: SoftMPCriticTrainConfig
    out: Path
    profile_steps: int = 300

    def __post_init__(self) -> None:
        if self.profile_steps < 10:
            raise ValueError(f"profile_steps must be >= 10, got {self.profile_steps}")
        if (self.out / "training" / METRICS).exists():
            raise ValueError(f"{self.out} already holds a run; pick a new --out")


def process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``), else ``None``."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")


def steady_steps_per_s(metrics_csv: Path, total_steps: int) -> dict[str, float] | None:
    """Steps/s between the first episode end past :data:`STEADY_FROM` of the run and the
    last one, from the run's metrics CSV (``None`` with fewer than two such episodes)."""
    with open(metrics_csv, newline="") as f:
        rows = [(int(r["step"]), float(r["wall_s"])) for r in csv.DictReader(f)]
    later = [r for r in rows if r[0] >= STEADY_FROM * total_steps]
    if len(later) < 2 or later[-1][1] <= later[0][1]:
        return None
    (s0, w0), (s1, w1) = later[0], later[-1]
    return {"from_step": s0, "to_step": s1, "steps_per_s": round((s1 - s0) / (w1 - w0), 1)}


def dot_flops(jaxpr: jax.extend.core.Jaxpr) -> float:
    """Matrix-multiply FLOPs of one evaluation of ``jaxpr``: ``dot_general`` counted with
    the trip counts of the scans around it (XLA's cost analysis counts a loop body once),
    the cheaper branch of a ``cond`` (a training step's common path: no new episode)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            k = math.prod(lhs[d] for d in lhs_contract)
            total += 2.0 * k * math.prod(eqn.outvars[0].aval.shape)
            continue
        inner = [p for p in eqn.params.values() if _is_jaxpr(p)]
        inner += [b for p in eqn.params.values() if isinstance(p, tuple) for b in p if _is_jaxpr(b)]
        flops = [dot_flops(getattr(j, "jaxpr", j)) for j in inner]
        if not flops:
            continue
        if name == "cond":
            total += min(flops)
        else:
            total += sum(flops) * (eqn.params["length"] if name == "scan" else 1)
    return total


def _is_jaxpr(value: Any) -> bool:
    return isinstance(value, (jax.extend.core.Jaxpr, jax.extend.core.ClosedJaxpr))


def matmul_gflops(rows: int, width: int, repeats: int = 200) -> float:
    """This machine's rate (GFLOP/s, best of three) for ``(rows, width) @ (width, width)``
    products, the shape of a training step's largest layer."""
    x, w = jnp.ones((rows, width)), jnp.ones((width, width)) / width
    f = jax.jit(lambda x, w: jnp.tanh(x @ w) @ w)
    f(x, w).block_until_ready()
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeats):
            y = f(x, w)
        y.block_until_ready()
        best = min(best, (time.perf_counter() - t) / repeats)
    return 4.0 * rows * width * width / best / 1e9


def profile(trainer: SoftMPCriticTrainer, state, steps: int) -> dict[str, Any]:
    """The training loop of ``trainer`` for ``steps`` more steps from ``state`` (a buffer
    filled by the run), each part timed; the compiled step alone; its FLOPs and roofline."""
    learner, env = trainer.learner, trainer.make_env()
    obs, _ = env.reset(seed=trainer.config.seed + 1)
    key, result, warm = learner.control(state.weights, state.key, obs, None, True)
    state = state.replace(key=key)
    env_s = total_s = 0.0
    for i in range(steps + 1):
        t0 = time.perf_counter()
        action = np.asarray(result.action)
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        t2 = time.perf_counter()
        done = terminated or truncated
        act_obs = env.reset()[0] if done else next_obs
        host = learner.pack(obs, next_obs, -reward, terminated, done, act_obs)
        state, _, result, warm = learner.step(state, host, result.action, result.plan, warm)
        obs = act_obs
        if i:  # the first step's wait includes the previous (untimed) compile
            env_s, total_s = env_s + t2 - t1, total_s + time.perf_counter() - t0
    np.asarray(result.action)
    core, rest = without_replay(state), (state.replay, host, result.action, result.plan, warm)
    flops = dot_flops(jax.make_jaxpr(learner.update_and_act)(core, *rest).jaxpr)
    core = jax.block_until_ready(learner.update_and_act(core, *rest)[0])
    t = time.perf_counter()
    for _ in range(steps):
        core = learner.update_and_act(core, *rest)[0]  # the core is donated: feed it back
    jax.block_until_ready(core)
    compute_s = (time.perf_counter() - t) / steps
    cfg = trainer.config
    gflops = matmul_gflops(cfg.batch_size * cfg.target_samples, max(cfg.hidden))
    step_s = total_s / steps
    return {
        "steps": steps,
        "step_ms": round(1e3 * step_s, 3),
        "compiled_step_ms": round(1e3 * compute_s, 3),
        "env_ms": round(1e3 * env_s / steps, 3),
        "host_ms": round(1e3 * max(step_s - compute_s - env_s / steps, 0.0), 3),
        "steps_per_s": round(1.0 / step_s, 1),
        "matmul_mflop_per_step": round(flops / 1e6, 1),
        "matmul_gflops_measured": round(gflops, 1),
        "roofline_steps_per_s": round(gflops * 1e9 / flops, 1),
    }


def run(bench: SpeedBench, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the three measurements; returns the report (see the module docstring)."""
    cfg = bench.config
    t0 = time.perf_counter()
    trainer = SoftMPCriticTrainer(cfg, bench.out)
    result = trainer.run(progress=False, log=log)
    wall = time.perf_counter() - t0
    age = process_age_s()
    steady = steady_steps_per_s(bench.out / "training" / METRICS, cfg.total_steps)
    log(f"whole run {cfg.total_steps / wall:.1f} steps/s; profiling {bench.profile_steps} steps")
    state = trainer.load_checkpoint()["train"]
    cache = jax.config.jax_compilation_cache_dir
    return {
        "config": config_to_dict(cfg),
        "steps": cfg.total_steps,
        "whole_run": {"wall_s": round(wall, 2), "steps_per_s": round(cfg.total_steps / wall, 1)},
        "process": None
        if age is None
        else {"wall_s": round(age, 2), "steps_per_s": round(cfg.total_steps / age, 1)},
        "steady": steady,
        "returns": {
            "episodes": result.episodes,
            "last10_mean": round(float(np.mean(result.returns[-10:])), 1)
            if result.returns
            else None,
        },
        "profile": profile(trainer, state, bench.profile_steps),
        "compilation_cache": cache or "off",
        "machine": f"{os.cpu_count()} CPUs, {jax.devices()[0].platform}",
    }
