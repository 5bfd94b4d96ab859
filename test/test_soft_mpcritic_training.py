"""softMPCritic training (Algorithm 2) on real gymnasium MuJoCo environments: analytic rewards,
plan write-back, a short run that learns and writes a loadable bundle, resume, evaluation."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.core.bundles import BundleError
from mppi_ros.training import TrainingError
from mppi_ros.training.gym_tasks import get_task, load_task_bundle, task_names
from mppi_ros.training.soft_mpcritic import train_soft_mpcritic
from mppi_ros.training.soft_mpcritic_config import SoftMPCriticTrainConfig
from mppi_ros.training.soft_mpcritic_eval import evaluate_bundle
from mppi_ros.training.soft_mpcritic_learner import make_learner

TINY = SoftMPCriticTrainConfig(
    num_samples=100, target_samples=10, hidden=(64, 64), total_steps=400, checkpoint_every=200
)


@pytest.mark.parametrize("name", ["InvertedDoublePendulum-v5", "Hopper-v5"])
def test_analytic_reward_matches_the_environment(name):
    task = get_task(name)
    env = task.make_env()
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    reward_fn = jax.jit(task.reward)
    errors = []
    for _ in range(400):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        errors.append(abs(float(reward_fn(obs, action, next_obs)) - reward))
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    assert max(errors) < 1e-3


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(ValueError, match="Hopper-v5"):
        get_task("CartPole-v1")
    assert "InvertedDoublePendulum-v5" in task_names()


@pytest.mark.parametrize("cold", [False, True])
def test_target_plans_are_refined_and_written_back(cold):
    """Each update rewrites slots 1..H of the sampled transitions' plans with the target
    planner's refined plan at s' (slot 0, the executed action, stays); warm targets start
    from the stored plan, cold ones from zeros."""
    config = dataclasses.replace(TINY, batch_size=4, cold_start=cold)
    learner = make_learner(config)
    state = learner.init(jax.random.PRNGKey(0))
    obs = jnp.asarray(get_task(config.task).make_env().reset(seed=0)[0], jnp.float32)
    stored = jnp.arange(5 * 1, dtype=jnp.float32).reshape(5, 1) / 10.0
    transition = (obs, stored[0], jnp.float32(-1.0), obs, jnp.float32(0.0), stored)
    state, metrics = learner.learn(state, transition)
    written = np.asarray(state.replay.plan[0])
    assert written[0] == pytest.approx(float(stored[0, 0]))  # executed action kept
    assert not np.allclose(written[1:], np.asarray(stored[1:]))  # refined
    assert float(metrics.plan_change) > 0.0
    # Warm start depends on the stored plan; cold start does not.
    other = stored + 0.5
    state2 = learner.init(jax.random.PRNGKey(0))
    state2, _ = learner.learn(state2, (*transition[:5], other))
    written2 = np.asarray(state2.replay.plan[0])
    if cold:
        np.testing.assert_allclose(written2[1:], written[1:], atol=1e-6)
    else:
        assert np.abs(written2[1:] - written[1:]).max() > 0.1


@pytest.mark.slow
def test_short_training_improves_return_and_writes_a_loadable_bundle(tmp_path):
    config = dataclasses.replace(TINY, total_steps=2500, checkpoint_every=2500)
    result = train_soft_mpcritic(config, tmp_path / "idp", progress=False, log=lambda _: None)
    returns = result.returns
    assert len(returns) >= 20
    first, last = np.mean(returns[:10]), np.mean(returns[-10:])
    assert last > 2.0 * first, (first, last)
    bundle, _problem, planner, tuning = load_task_bundle(result.bundle)
    assert bundle.manifest["env"]["id"] == "InvertedDoublePendulum-v5"
    assert planner.num_samples == 100 and float(tuning.temperature) == pytest.approx(0.1)
    rows = list(csv.DictReader(open(tmp_path / "idp" / "training" / "metrics.csv")))
    assert len(rows) == len(returns) and float(rows[-1]["steps_per_s"]) > 0
    report = evaluate_bundle(result.bundle, episodes=2)
    assert report["episodes"] == 2 and report["return_mean"] > first
    # A tampered weights file is rejected.
    params = result.bundle / "params.msgpack"
    params.write_bytes(params.read_bytes()[:-1] + b"\x00")
    with pytest.raises(BundleError, match="SHA-256"):
        load_task_bundle(result.bundle)


def test_resume_continues_from_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    first = dataclasses.replace(TINY, total_steps=200, checkpoint_every=100)
    train_soft_mpcritic(first, out, progress=False, log=lambda _: None)
    with pytest.raises(TrainingError, match="--resume"):
        train_soft_mpcritic(first, out, progress=False, log=lambda _: None)
    with pytest.raises(TrainingError, match="differs"):
        changed = dataclasses.replace(first, total_steps=300, temperature=0.5)
        train_soft_mpcritic(changed, out, resume=True, progress=False, log=lambda _: None)
    more = dataclasses.replace(first, total_steps=300)
    train_soft_mpcritic(more, out, resume=True, progress=False, log=lambda _: None)
    info = json.loads((out / "training" / "checkpoint.json").read_text())
    assert info["step"] == 300
    rows = list(csv.DictReader(open(out / "training" / "metrics.csv")))
    assert int(rows[-1]["step"]) <= 300 and int(rows[0]["step"]) < 200


def test_eval_cli_rejects_a_vehicle_bundle_with_a_clear_error():
    out = subprocess.run(
        [sys.executable, "-m", "mppi_ros.cli", "eval", "step_mppi", "--episodes", "1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "bench closed-loop" in out.stderr


@pytest.mark.slow
def test_the_shipped_double_pendulum_survives_the_start_it_fell_from():
    """Seed 0's first episode fell after 13 steps (return 110) when the first plan was a random
    draw from the prior; planned at the first state it balances the whole episode. The report
    names the worst episode over the seeds."""
    model = "models/double_pendulum_soft_mpcritic"
    report = evaluate_bundle(model, episodes=1, seeds=(0, 1))
    assert report["seeds"] == [0, 1] and report["lengths"] == [1000, 1000], report["lengths"]
    assert min(report["returns"]) >= 9000
    worst = report["worst"]
    assert worst["return"] == min(report["returns"]) and worst["length"] == 1000
    assert report["per_seed"]["0"]["returns"] == [report["returns"][0]]


def test_shipped_double_pendulum_bundle_inspects_and_records_its_training():
    """`mppi-ros inspect` validates softMPCritic bundles too; the shipped one records the
    command that made it and a last-10 training return at the paper's level."""
    out = subprocess.run(
        [sys.executable, "-m", "mppi_ros.cli", "inspect", "models/double_pendulum_soft_mpcritic"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "checksums of 1 file(s) verified" in out.stderr
    manifest = json.loads(out.stdout)
    assert manifest["architecture"]["critics"] == 2
    assert "config/train/double_pendulum_soft_mpcritic.yaml" in manifest["training"]["command"]
    assert manifest["training"]["metrics"]["last10_return_mean"] >= 9000
