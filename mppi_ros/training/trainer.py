"""The training loop shared by Step-MPPI and DPC: data-parallel BPTT, schedules, validation,
checkpoints, metrics CSV and the final model bundle.

Its pieces live beside it: the track sets in :mod:`.track_sets`, checkpoint files in
:mod:`.checkpoint`, the metrics columns in :mod:`.epoch_metrics` and ``init_from`` in
:mod:`.warm_start`.

Data parallelism: every batch array is sharded along its leading axis over all local JAX
devices (``jax.sharding.NamedSharding`` on a one-axis ``data`` mesh); parameters and optimiser
state are replicated. ``jit`` inserts the gradient all-reduce.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from jax.sharding import NamedSharding, PartitionSpec

from mppi_ros.core.bundles import save_bundle
from mppi_ros.core.catalog import controller_spec, make_controller
from mppi_ros.core.controllers import update_tuning
from mppi_ros.core.controllers.step_mppi import PolicyWeights, StepMPPIConfig
from mppi_ros.training.checkpoint import METRICS, read_checkpoint, write_checkpoint
from mppi_ros.training.common import TrainingError, command_line, progress_bar
from mppi_ros.training.config import TrainConfig
from mppi_ros.training.epoch_metrics import METRIC_FIELDS, metrics_row
from mppi_ros.training.rollout import (
    LossWeights,
    RolloutBatch,
    SpeedSampling,
    batch_loss,
    feature_statistics,
    sample_batch,
    stack_tracks,
)
from mppi_ros.training.track_sets import training_tracks
from mppi_ros.training.warm_start import copy_matching_params

Array = jax.Array


@dataclasses.dataclass
class TrainingResult:
    """What :meth:`Trainer.run` produced: the bundle folder and how the run ended."""

    bundle: Path
    epochs: int
    best_epoch: int
    best_val_cost: float
    wall_s: float
    stop_reason: str


def _mesh_shardings() -> tuple[NamedSharding, NamedSharding, int]:
    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    return (
        NamedSharding(mesh, PartitionSpec("data")),
        NamedSharding(mesh, PartitionSpec()),
        len(devices),
    )


class Trainer:
    """Owns the compiled steps and the mutable loop state of one run."""

    def __init__(
        self,
        config: TrainConfig,
        out: str | Path,
        extra_tracks: tuple[str, ...] = (),
        command: str | None = None,
    ) -> None:
        self.config = config
        self.out = Path(out)
        self.work = self.out / "training"
        self.command = command
        self.extra_tracks = extra_tracks
        c = config
        self.ctrl_config = StepMPPIConfig(
            dynamics=c.dynamics,
            num_samples=c.num_samples if controller_spec(c.controller).samples else 0,
            dt=c.dt,
            hidden=tuple(c.network.hidden),
            activation=c.network.activation,
            full_covariance=c.network.full_covariance,
            preview=tuple(c.network.preview),
        )
        self.ctrl = make_controller(c.controller, **dataclasses.asdict(self.ctrl_config))
        model = self.ctrl.model
        self.tuning_values: dict[str, Any] = {
            "temperature": c.loss.temperature,
            "reference_speed": c.data.reference_speed,
        }
        if c.loss.q_weights is not None:
            self.tuning_values["q_weights"] = list(c.loss.q_weights)
        if c.loss.r_weights is not None:
            self.tuning_values["r_weights"] = list(c.loss.r_weights)
        self.tuning = update_tuning(self.ctrl.default_tuning(), **self.tuning_values)
        train, val = training_tracks(c, extra_tracks)
        self.train_names = [t.name for t in train]
        self.val_names = [t.name for t in val]
        self.data_sharding, self.replicated, self.devices = _mesh_shardings()
        for name in ("batch_size", "validation_batch"):
            if getattr(c, name) % self.devices:
                raise TrainingError(
                    f"{name} {getattr(c, name)} must be a multiple of the {self.devices} local "
                    "devices it is split across"
                )
        self.train_tracks = jax.device_put(stack_tracks(train), self.replicated)
        self.val_tracks = jax.device_put(stack_tracks(val), self.replicated)
        init, friction = c.data.initial_state, c.data.friction_scale
        sampling = SpeedSampling.from_config(c.data)
        self._sample = jax.jit(
            lambda key, tracks, size, speeds: sample_batch(
                key, model, tracks, size, init, friction, speeds, sampling
            ),
            static_argnums=2,
            out_shardings=self.data_sharding,
        )
        root = jax.random.PRNGKey(c.seed)
        self._init_key, stats_key, val_key, self._loop_key = jax.random.split(root, 4)
        stats_batch = self._sample(
            stats_key, self.train_tracks, 4096 - 4096 % self.devices, c.speed_range
        )
        self.stats = jax.device_put(
            feature_statistics(self.ctrl, self.train_tracks, stats_batch, self.tuning),
            self.replicated,
        )
        self.val_batch = self._sample(val_key, self.val_tracks, c.validation_batch, c.speed_range)
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(c.optim.grad_clip),
            optax.adamw(learning_rate=1.0, weight_decay=c.optim.weight_decay),
        )
        self._timed = c.data.reference == "time"
        # Validation scores what deployment sees: the projected reference.
        self.val_loss = LossWeights(0.0, c.rollout_steps, time_indexed_reference=False)
        self._train_step = jax.jit(self._step, donate_argnums=(0, 1), static_argnums=5)
        self._validate = jax.jit(
            lambda params, weight: batch_loss(
                params,
                self.stats,
                self.ctrl,
                self.val_tracks,
                self.val_batch,
                self.tuning,
                weight,
                self.val_loss,
            )[1]
        )

    # ----- compiled pieces -------------------------------------------------------------------

    def _step(
        self,
        params: Any,
        opt_state: Any,
        batch: RolloutBatch,
        penalty_weight: Array,
        learning_rate: Array,
        rollout_steps: int,
    ) -> tuple[Any, Any, dict[str, Array]]:
        c = self.config
        weights = LossWeights(c.loss.entropy_weight, rollout_steps, self._timed, c.gradient_window)
        grad_fn = jax.value_and_grad(batch_loss, has_aux=True)
        (loss, metrics), grads = grad_fn(
            params,
            self.stats,
            self.ctrl,
            self.train_tracks,
            batch,
            self.tuning,
            penalty_weight,
            weights,
        )
        updates, new_opt = self.optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, jax.tree.map(lambda u: learning_rate * u, updates))
        # A rollout that blew up must not poison the weights: skip that update.
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        )
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
        return keep(new_params, params), keep(new_opt, opt_state), metrics

    # ----- state -----------------------------------------------------------------------------

    def initial_params(self) -> Any:
        """Fresh random weights, with every matching parameter of ``init_from`` copied in."""
        params = self.ctrl.init_weights(self._init_key).params
        source = self.config.init_from
        if source is None:
            return params
        return copy_matching_params(params, source, self.stats)

    def fresh_state(self) -> dict[str, Any]:
        params = self.initial_params()
        c = self.config
        return {
            "params": params,
            "opt_state": self.optimizer.init(params),
            "best_params": jax.device_get(params),
            "epoch": 0,
            "step": 0,
            "learning_rate": c.optim.learning_rate,
            "penalty_weight": c.loss.border_weight,
            "best_val_cost": math.inf,
            "best_epoch": 0,
            "plateau_epochs": 0,
            "stale_epochs": 0,
            "wall_s": 0.0,
            "key": self._loop_key,
        }

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        info = {"epoch": state["epoch"], "config": self.config.to_dict()}
        write_checkpoint(self.work, jax.device_get(state), info)

    def load_checkpoint(self) -> dict[str, Any]:
        # More epochs may be asked for on resume; anything else must match.
        raw = read_checkpoint(self.work, self.config.to_dict(), may_change="epochs")
        template = jax.device_get(self.fresh_state())
        return serialization.from_state_dict(template, raw)

    def _append_metrics(
        self, state: dict[str, Any], train: dict[str, float], val: dict[str, Any]
    ) -> dict[str, Any]:
        row = metrics_row(state, train, val, self.config.steps_per_epoch)
        with open(self.work / METRICS, "a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in METRIC_FIELDS])
        return row

    # ----- loop ------------------------------------------------------------------------------

    def run(
        self,
        resume: bool = False,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> TrainingResult:
        c = self.config
        state = self.load_checkpoint() if resume else self.fresh_state()
        params = jax.device_put(state["params"], self.replicated)
        if not resume:
            self.work.mkdir(parents=True, exist_ok=True)
            with open(self.work / METRICS, "w", newline="") as f:
                csv.writer(f).writerow(METRIC_FIELDS)
            # Epoch 0: the untrained policy, the reference point of every learning curve.
            val = jax.device_get(self._validate(params, jnp.float32(c.loss.border_weight)))
            self._append_metrics(state, {}, val)
        opt_state = jax.device_put(state["opt_state"], self.replicated)
        start_wall = time.perf_counter() - float(state["wall_s"])
        stop_reason = "max_epochs"
        key = state["key"]
        bar = progress_bar(c.epochs * c.steps_per_epoch, int(state["step"]), progress)
        for epoch in range(int(state["epoch"]), c.epochs):
            if state["learning_rate"] < c.optim.min_learning_rate * (1 + 1e-9):
                stop_reason = "min_learning_rate"
                break
            sums: dict[str, float] = {}
            for _ in range(c.steps_per_epoch):
                key, batch_key = jax.random.split(key)
                batch = self._sample(
                    batch_key, self.train_tracks, c.batch_size, c.speed_range_at(epoch)
                )
                params, opt_state, metrics = self._train_step(
                    params,
                    opt_state,
                    batch,
                    jnp.float32(state["penalty_weight"]),
                    jnp.float32(state["learning_rate"]),
                    c.rollout_steps_at(epoch),
                )
                metrics = jax.device_get(metrics)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                state["step"] += 1
                bar.update(1)
                bar.set_postfix(
                    epoch=epoch + 1,
                    loss=f"{float(metrics['loss']):.3g}",
                    lat=f"{float(metrics['lateral_error']):.3f}",
                )
            train = {k: v / c.steps_per_epoch for k, v in sums.items()}
            val = jax.device_get(self._validate(params, jnp.float32(c.loss.border_weight)))
            val_cost = float(val["loss"])
            state["epoch"] = epoch + 1
            state["wall_s"] = time.perf_counter() - start_wall
            row = self._append_metrics(state, train, val)
            log(
                f"epoch {epoch + 1}/{c.epochs}: train loss {train['loss']:.4g}, val cost "
                f"{val_cost:.4g}, val |lat| {row['val_lateral_error']:.3f} m, val viol "
                f"{row['val_violation']:.3f}, lr {state['learning_rate']:.2e}"
            )
            # Schedules and early stopping, all on the validation cost at fixed weights.
            if math.isfinite(val_cost) and val_cost < state["best_val_cost"]:
                state["best_val_cost"] = val_cost
                state["best_epoch"] = epoch + 1
                state["best_params"] = jax.device_get(params)  # host copy: params get donated
                state["plateau_epochs"] = 0
                state["stale_epochs"] = 0
            else:
                state["plateau_epochs"] += 1
                state["stale_epochs"] += 1
                if state["plateau_epochs"] >= c.optim.plateau_patience:
                    state["learning_rate"] = max(
                        state["learning_rate"] * c.optim.plateau_factor, c.optim.min_learning_rate
                    )
                    state["plateau_epochs"] = 0
            state["penalty_weight"] = min(
                state["penalty_weight"] * c.loss.penalty_growth, c.loss.max_penalty_weight
            )
            state["params"], state["opt_state"], state["key"] = params, opt_state, key
            last = epoch + 1 == c.epochs
            stop = state["stale_epochs"] >= c.optim.early_stopping_patience
            if (epoch + 1) % c.checkpoint_every == 0 or last or stop:
                self.save_checkpoint(state)
            if stop:
                stop_reason = "early_stopping"
                break
        bar.close()
        if not math.isfinite(state["best_val_cost"]):
            raise TrainingError("validation cost never became finite; the run diverged")
        bundle = self.write_bundle(state, stop_reason)
        return TrainingResult(
            bundle=bundle,
            epochs=int(state["epoch"]),
            best_epoch=int(state["best_epoch"]),
            best_val_cost=float(state["best_val_cost"]),
            wall_s=float(state["wall_s"]),
            stop_reason=stop_reason,
        )

    def write_bundle(self, state: dict[str, Any], stop_reason: str) -> Path:
        c = self.config
        weights = PolicyWeights(
            params=jax.device_get(state["best_params"]),
            input_mean=np.asarray(self.stats[0]),
            input_std=np.asarray(self.stats[1]),
        )
        deploy = dataclasses.replace(
            self.ctrl_config,
            num_samples=c.deploy_samples if controller_spec(c.controller).samples else 0,
        )
        rows = list(csv.DictReader(open(self.work / METRICS)))
        best = next((r for r in rows if int(r["epoch"]) == int(state["best_epoch"])), rows[-1])
        training = {
            "command": self.command,
            "config": c.to_dict(),
            "train_tracks": self.train_names,
            "validation_tracks": self.val_names,
            "devices": self.devices,
            "platform": f"{platform.machine()} {jax.default_backend()} jax {jax.__version__}",
            "metrics": {
                "epochs": int(state["epoch"]),
                "best_epoch": int(state["best_epoch"]),
                "best_val_cost": float(state["best_val_cost"]),
                "best_val_lateral_error_m": float(best["val_lateral_error"]),
                "best_val_violation_rate": float(best["val_violation"]),
                "wall_s": round(float(state["wall_s"]), 1),
                "stop_reason": stop_reason,
            },
        }
        return save_bundle(
            self.out,
            c.controller,
            deploy,
            weights,
            training=training,
            extra_files={METRICS: (self.work / METRICS).read_bytes()},
            tuning=self.tuning_values,
        )


def train(
    config: TrainConfig,
    out: str | Path,
    extra_tracks: tuple[str, ...] = (),
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainingResult:
    """Trains ``config.controller`` and writes a bundle to ``out`` (see :class:`Trainer`)."""
    trainer = Trainer(config, out, extra_tracks, command=command_line())
    return trainer.run(resume=resume, progress=progress, log=log)
