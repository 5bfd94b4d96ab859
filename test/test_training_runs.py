"""Training runs end to end: resume from a checkpoint, data parallelism over two host
devices, and the `mppi-ros train` command (a file of its own so that the two test workers
share the training tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from test_training import CLI, read_metrics, tiny_config


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(tmp_path):
    from mppi_ros.core.bundles import load_bundle
    from mppi_ros.training import TrainingError, train

    cfg = tiny_config(controller="dpc", epochs=3, steps_per_epoch=3)
    straight = train(cfg, tmp_path / "straight", progress=False, log=lambda _: None)
    first = tiny_config(controller="dpc", epochs=2, steps_per_epoch=3)
    train(first, tmp_path / "split", progress=False, log=lambda _: None)
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False, log=lambda _: None)
    assert resumed.epochs == straight.epochs == 3
    a = load_bundle(tmp_path / "straight").weights.params
    b = load_bundle(tmp_path / "split").weights.params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    rows = read_metrics(tmp_path / "split" / "training" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    with pytest.raises(TrainingError, match=r"config differs from the checkpoint's in \['seed'\]"):
        train(
            tiny_config(controller="dpc", epochs=3, steps_per_epoch=3, seed=7),
            tmp_path / "split",
            resume=True,
            progress=False,
        )
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(cfg, tmp_path / "nothing", resume=True, progress=False)


SHARDING_SCRIPT = textwrap.dedent(
    """
    import json, jax, jax.numpy as jnp, numpy as np
    from mppi_ros.training.config import TrainConfig, NetworkConfig, DataConfig
    from mppi_ros.training.common import TrainingError
    from mppi_ros.training.trainer import Trainer
    from mppi_ros.training.rollout import batch_loss
    # DPC: the same Trainer sharding as Step-MPPI at half the compile time.
    cfg = TrainConfig(controller="dpc", rollout_steps=10, num_samples=8, batch_size=4,
                      validation_batch=4, network=NetworkConfig(hidden=(16,)),
                      data=DataConfig(train_tracks=2, validation_tracks=1))
    tr = Trainer(cfg, "unused")
    state = tr.fresh_state()
    batch = tr._sample(jax.random.PRNGKey(3), tr.train_tracks, 4, (10.0, 10.0))
    shards = sorted(len(s.data) for s in batch.x0.addressable_shards)
    grad = jax.jit(jax.grad(lambda p, b: batch_loss(p, tr.stats, tr.ctrl, tr.train_tracks, b,
                   tr.tuning, 1e3, tr.val_loss)[0]))
    sharded = grad(jax.device_put(state["params"], tr.replicated), batch)
    one = jax.devices()[0]
    local = grad(jax.device_put(state["params"], one), jax.device_put(jax.device_get(batch), one))
    pairs = zip(jax.device_get(jax.tree.leaves(sharded)), jax.device_get(jax.tree.leaves(local)))
    diff = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12)) for a, b in pairs)
    try:
        Trainer(TrainConfig(controller="dpc", batch_size=3, network=NetworkConfig(hidden=(8,)),
                            data=DataConfig(train_tracks=1, validation_tracks=1)), "unused")
        odd = "accepted"
    except TrainingError as err:
        odd = str(err)
    print(json.dumps({"devices": tr.devices, "shards": shards, "rel_diff": diff, "odd": odd}))
    """
)


@pytest.mark.slow
def test_data_parallel_over_two_host_devices_matches_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run(
        [sys.executable, "-c", SHARDING_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    assert report["shards"] == [2, 2]  # the batch of 4 is split across both devices
    assert report["rel_diff"] < 1e-4
    assert "must be a multiple of the 2 local devices" in report["odd"]


@pytest.mark.slow
def test_train_cli_writes_a_bundle_that_inspect_verifies(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        textwrap.dedent(
            """
            rollout_steps: 15
            batch_size: 8
            validation_batch: 8
            epochs: 2
            steps_per_epoch: 3
            network: {hidden: [16, 16]}
            data: {train_tracks: 1, validation_tracks: 1}
            """
        )
    )
    run = subprocess.run(
        [*CLI, "train", "dpc", "--config", str(config), "--out", "m", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["epochs"] == 2 and Path(tmp_path / summary["bundle"]).is_dir()
    assert "epoch 2/2" in run.stderr
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["controller"] == "dpc"
    assert manifest["training"]["command"].startswith("mppi-ros train dpc --config")
    inspect = subprocess.run(
        [*CLI, "inspect", "m"], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert inspect.returncode == 0 and "checksums of 2 file(s) verified" in inspect.stderr
    bad = subprocess.run(
        [*CLI, "train", "dpc", "--config", str(config), "--out", "m2", "--track", "nope.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert bad.returncode != 0 and "nope.csv" in bad.stderr
