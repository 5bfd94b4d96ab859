"""Training: configs, the BPTT loss going down, bundles that drive, resume, data parallelism,
and the `mppi-ros train` command."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mppi_ros.training.config import (
    DataConfig,
    LossConfig,
    NetworkConfig,
    OptimConfig,
    TrainConfig,
    config_from_dict,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "mppi_ros.cli"]


def tiny_config(**changes) -> TrainConfig:
    """A config that compiles and trains in seconds (behaviour, not quality)."""
    base = dict(
        controller="step_mppi",
        rollout_steps=20,
        num_samples=16,
        deploy_samples=64,
        batch_size=8,
        validation_batch=8,
        epochs=4,
        steps_per_epoch=6,
        gradient_window=5,
        loss=LossConfig(q_weights=(10.0, 10.0, 0.0, 0.5, 0.1, 0.0, 0.0)),
        network=NetworkConfig(hidden=(32, 32)),
        data=DataConfig(train_tracks=2, validation_tracks=1),
    )
    base.update(changes)
    return TrainConfig(**base)


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("name", "controller"),
    [
        ("f1tenth_step_mppi", "step_mppi"),
        ("f1tenth_dpc", "dpc"),
    ],
)
def test_shipped_training_configs_load_and_their_chain_is_shipped(name, controller):
    cfg = load_config(REPO / "config" / "train" / f"{name}.yaml")
    assert cfg.controller == controller
    assert cfg.data.reference_speed > 0
    assert cfg.rollout_steps == 100
    # Each stage starts from a bundle in the repository, whose manifest names the command
    # (and config) that made it: the whole chain is reproducible from here.
    if cfg.init_from is not None:
        donor = json.loads((REPO / cfg.init_from / "manifest.json").read_text())
        donor_name = Path(cfg.init_from).name
        command = donor["training"]["command"]
        assert f"--config config/train/{donor_name}.yaml" in command
        assert f"--out models/{donor_name}" in command
    shipped = json.loads((REPO / "models" / name / "manifest.json").read_text())
    assert (
        f"--config config/train/{name}.yaml --out models/{name}" in (shipped["training"]["command"])
    )


def test_reference_speed_range_draws_one_speed_per_rollout_and_leaves_other_draws_alone():
    from mppi_ros.core.catalog import make_controller
    from mppi_ros.training.rollout import feature_statistics, sample_batch, stack_tracks
    from mppi_ros.training.track_sets import procedural_tracks

    ctrl = make_controller("dpc", hidden=(8,))
    tracks = stack_tracks(procedural_tracks(100, 2))
    init = DataConfig().initial_state
    key = jax.random.PRNGKey(3)
    fixed = sample_batch(key, ctrl.model, tracks, 256, init, (1.0, 1.0), (10.0, 10.0))
    ranged = sample_batch(key, ctrl.model, tracks, 256, init, (1.0, 1.0), (6.0, 11.0))
    np.testing.assert_array_equal(fixed.x0, ranged.x0)  # reproducible older draws
    np.testing.assert_allclose(fixed.reference_speed, 10.0, rtol=1e-6)
    speeds = np.asarray(ranged.reference_speed)
    assert speeds.min() >= 6.0 and speeds.max() <= 11.0 and speeds.std() > 1.0
    # The policy sees the speed as a varying, normalised input rather than a constant.
    tuning = ctrl.default_tuning()
    _, std_fixed = feature_statistics(ctrl, tracks, fixed, tuning)
    _, std_ranged = feature_statistics(ctrl, tracks, ranged, tuning)
    assert int(np.sum(np.asarray(std_ranged) != np.asarray(std_fixed))) > 0
    cfg = load_config(REPO / "config" / "train" / "f1tenth_step_mppi.yaml")
    assert cfg.speed_range_at(0) == (1.0, 12.0) and cfg.data.reference_speed == 8.0
    staged = config_from_dict(
        {"data": {"reference_speed_range": [6.0, 11.5], "reference_speed_range_from": 2}}
    )
    assert staged.speed_range_at(1) == (10.0, 10.0) and staged.speed_range_at(2) == (6.0, 11.5)
    with pytest.raises(ValueError, match="reference_speed_range must be"):
        config_from_dict({"data": {"reference_speed_range": [11.0, 6.0]}})


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hiden'\] in config.network"):
        config_from_dict({"network": {"hiden": [8]}})
    with pytest.raises(ValueError, match="valid: dpc, step_mppi"):
        config_from_dict({"controller": "mppi"})
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        config_from_dict({"batch_size": 0})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """One tiny Step-MPPI run shared by the tests below."""
    from mppi_ros.training import train

    out = tmp_path_factory.mktemp("tiny") / "bundle"
    cfg = tiny_config(optim=OptimConfig(learning_rate=3e-3))
    result = train(cfg, out, progress=False, log=lambda _: None)
    return cfg, out, result


@pytest.mark.slow
def test_training_lowers_the_validation_loss(trained_tiny):
    _, out, result = trained_tiny
    rows = read_metrics(out / "training" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    untrained = float(rows[0]["val_cost"])
    best = min(float(r["val_cost"]) for r in rows[1:])
    # Fixed validation starts and noise: the only thing that changed is the weights.
    assert best < 0.8 * untrained, (untrained, best)
    assert result.best_val_cost == pytest.approx(best, rel=1e-6)
    assert result.stop_reason == "max_epochs" and result.epochs == 4


@pytest.mark.slow
def test_trained_bundle_loads_and_drives_a_short_closed_loop(trained_tiny, default_track):
    from mppi_ros.core.bundles import load_bundle
    from mppi_ros.core.catalog import controller_from_bundle, make_controller
    from mppi_ros.core.controllers import update_tuning
    from mppi_ros.sim import SimConfig, run_closed_loop

    _, out, _ = trained_tiny
    bundle = load_bundle(out)
    manifest = bundle.manifest
    assert manifest["controller"] == "step_mppi"
    assert manifest["config"]["num_samples"] == 64  # deploy_samples
    assert manifest["training"]["train_tracks"] == ["procedural:100", "procedural:101"]
    assert manifest["training"]["metrics"]["best_epoch"] >= 1
    assert "metrics.csv" in manifest["files"]
    trained = controller_from_bundle(out)
    untrained = make_controller("step_mppi", **manifest["config"])  # same net, random weights
    sim = SimConfig(max_time=3.0, control_period=0.05, laps=1)
    runs = {}
    for name, ctrl in (("trained", trained), ("untrained", untrained)):
        tuning = update_tuning(ctrl.default_tuning(), reference_speed=10.0)
        runs[name] = run_closed_loop(ctrl, default_track, tuning, sim)
    res = runs["trained"]
    assert res.stop_reason == "time_limit", res.stop_reason  # 3 s without leaving the track
    assert np.all(np.isfinite(res.states)) and res.progress[-1] > 2.0  # moved forward
    mean_error = {k: float(np.mean(np.abs(r.lateral_error))) for k, r in runs.items()}
    assert mean_error["trained"] < mean_error["untrained"], mean_error


@pytest.mark.slow
def test_init_from_copies_matching_weights_and_keeps_the_function_under_new_statistics(
    trained_tiny, tmp_path
):
    """A DPC run started from the Step-MPPI bundle takes its backbone and mean head; a run
    whose data (hence input statistics) differ starts from exactly the donor's function."""
    from mppi_ros.core.bundles import load_bundle
    from mppi_ros.core.networks import MLP
    from mppi_ros.training.trainer import Trainer

    _, out, _ = trained_tiny
    donor_weights = load_bundle(out).weights
    donor = donor_weights.params
    cfg = tiny_config(controller="dpc", num_samples=0, deploy_samples=0, init_from=str(out))
    params = Trainer(cfg, tmp_path / "dpc").initial_params()
    assert set(params) == {"MLP_0", "mean_head"}
    for a, b in zip(
        jax.tree.leaves(params),
        jax.tree.leaves({"MLP_0": donor["MLP_0"], "mean_head": donor["mean_head"]}),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    fresh = Trainer(tiny_config(controller="dpc", num_samples=0, deploy_samples=0), tmp_path / "f")
    assert not np.allclose(
        np.asarray(fresh.initial_params()["mean_head"]["kernel"]), donor["mean_head"]["kernel"]
    )
    data = DataConfig(train_tracks=2, validation_tracks=1, reference_speed_range=(6.0, 11.0))
    other = Trainer(tiny_config(init_from=str(out), data=data), tmp_path / "other")
    new_mean, new_std = (np.asarray(s) for s in other.stats)
    assert np.max(np.abs(new_std / np.asarray(donor_weights.input_std) - 1.0)) > 0.1
    refolded = other.initial_params()
    features = np.random.default_rng(0).normal(size=(64, new_mean.size)) * new_std + new_mean
    backbone = MLP((32, 32), "gelu")

    def hidden(p, mean, std):
        return backbone.apply({"params": p["MLP_0"]}, (features - mean) / std)

    np.testing.assert_allclose(
        hidden(refolded, new_mean, new_std),
        hidden(donor, np.asarray(donor_weights.input_mean), np.asarray(donor_weights.input_std)),
        atol=1e-4,
    )
