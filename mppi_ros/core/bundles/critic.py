"""The softMPCritic codec: a Q-network and a dynamics ensemble with its normalisation, the
planner config and the environment the weights act in (a gymnasium task or the vehicle
tracking task)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mppi_ros.core.bundles.format import (
    BundleError,
    config_from_manifest,
    freeze,
    jsonable,
    read_manifest,
    read_verified_manifest,
    read_weights,
    write_bundle,
)
from mppi_ros.core.bundles.policy import Bundle
from mppi_ros.core.controllers.soft_mpcritic import (
    CriticProblem,
    CriticWeights,
    SoftMPCriticConfig,
    SoftTuning,
    make_soft_tuning,
)
from mppi_ros.core.controllers.soft_mpcritic_tracking import SoftMPCritic, TrackingCriticProblem
from mppi_ros.core.dynamics.ensemble import EnsembleModel, EnsembleParams, Normalizer

SOFT_MPCRITIC = "soft_mpcritic"
_PLANNER_OVERRIDES = frozenset({"num_samples", "horizon", "iterations"})


@dataclasses.dataclass(frozen=True)
class CriticBundle:
    """A validated softMPCritic bundle: planner config, tuning, weights and the environment
    it was trained in (``env``: ``{"kind": "gymnasium", "id": ...}`` or a vehicle track)."""

    path: Path
    manifest: dict[str, Any]
    env: dict[str, Any]
    weights: Any

    model_id = Bundle.model_id  # same fields (path, manifest), same identifier
    controller = Bundle.controller

    @property
    def vehicle_model(self) -> str | None:
        """The vehicle model of the tracking task it learned (``None``: a gymnasium task)."""
        tracking = _field(_field(self.manifest, "architecture"), "tracking")
        dynamics = _field(tracking, "dynamics")
        return dynamics if isinstance(dynamics, str) else None

    def require_vehicle(self) -> None:
        """Raises ``BundleError`` unless it was trained on the vehicle tracking task."""
        if self.vehicle_model is None:
            raise BundleError(
                f"model bundle {self.path} was trained on {self.env.get('id')!r}, not on the "
                "vehicle tracking task: it cannot drive a car"
            )


def save_soft_mpcritic_bundle(
    directory: str | Path,
    problem: CriticProblem,
    config: SoftMPCriticConfig,
    tuning: SoftTuning,
    weights: CriticWeights,
    env: dict[str, Any],
    training: dict[str, Any] | None = None,
    dt: float = 0.0,
) -> Path:
    """Writes a softMPCritic bundle: Q-network and ensemble weights with its normalisation.

    Args:
        problem: The :class:`CriticProblem` (a :class:`TrackingCriticProblem` for a car).
        config: The online :class:`SoftMPCriticConfig`.
        tuning: :class:`SoftTuning` the weights were trained with (the loaded defaults).
        weights: :class:`CriticWeights`.
        env: Where the weights act (``mppi-ros eval`` rebuilds it from this).
        training: Training command, config and metrics to record.
        dt: The environment's step (s).
    """
    ensemble = problem.ensemble
    tracking = problem.spec() if isinstance(problem, TrackingCriticProblem) else None
    manifest = {
        "controller": SOFT_MPCRITIC,
        "tuning": {
            "temperature": float(tuning.temperature),
            "noise_std": jsonable(tuning.noise_std),
            "discount": float(tuning.discount),
        },
        "dynamics": {
            "name": "ensemble",
            "members": ensemble.members,
            "predicts": "state change s' - s (z-scored with the stored statistics)",
        },
        "dt": dt,
        "config": jsonable(dataclasses.asdict(config)),
        "env": jsonable(env),
        "inputs": {"obs_dim": ensemble.obs_dim, "act_dim": ensemble.act_dim},
        "outputs": {
            "act_dim": ensemble.act_dim,
            "low": list(problem.action_low),
            "high": list(problem.action_high),
        },
        "architecture": {
            "q_network": "QNetwork (obs, act) -> hidden -> 1",
            "q_hidden": list(problem.q_hidden),
            "critics": problem.critics,
            "value_rescaling": problem.value_rescaling,
            "ensemble_hidden": list(ensemble.hidden),
            "activation": ensemble.activation,
            "pose_indices": jsonable(ensemble.pose_indices),
            **({"tracking": tracking} if tracking is not None else {}),
        },
        "training": jsonable(training or {}),
    }
    return write_bundle(Path(directory), manifest, _critic_state(weights), {})


def _critic_tree(weights: CriticWeights) -> dict[str, Any]:
    """The weights file's layout of ``weights`` (arrays or shape structs)."""
    d = weights.dynamics
    return {
        "q": weights.q,
        "dynamics": {
            "net": d.net,
            "inputs": {"mean": d.inputs.mean, "std": d.inputs.std},
            "deltas": {"mean": d.deltas.mean, "std": d.deltas.std},
        },
    }


def _critic_state(weights: CriticWeights) -> dict[str, Any]:
    return jax.tree.map(np.asarray, _critic_tree(weights))


def _field(value: Any, key: str) -> Any:
    """``value[key]`` when ``value`` is a JSON object, else None (manifests are untrusted)."""
    return value.get(key) if isinstance(value, dict) else None


def require_vehicle_bundle(path: str | Path) -> None:
    """Raises ``BundleError`` unless bundle ``path`` was trained on the vehicle tracking task
    (read from its manifest, before anything that would need a gymnasium task's cost)."""
    manifest = read_manifest(Path(path))
    CriticBundle(Path(path), manifest, manifest.get("env", {}), None).require_vehicle()


def _pose_indices(value: Any) -> tuple[int, int, int] | None:
    """The ensemble's planar pose entries from a manifest (absent in older bundles)."""
    return None if value is None else tuple(int(i) for i in value)


def _problem(manifest: dict[str, Any], stage_cost: Callable | None) -> CriticProblem:
    """The manifest's planning problem (raises KeyError / TypeError / ValueError)."""
    inputs, arch, outputs = manifest["inputs"], manifest["architecture"], manifest["outputs"]
    ensemble = EnsembleModel(
        int(inputs["obs_dim"]),
        int(inputs["act_dim"]),
        int(manifest["dynamics"]["members"]),
        tuple(arch["ensemble_hidden"]),
        arch["activation"],
        _pose_indices(arch.get("pose_indices")),
    )
    common = (
        ensemble,
        stage_cost,
        tuple(outputs["low"]),
        tuple(outputs["high"]),
        tuple(arch["q_hidden"]),
        int(arch.get("critics", 1)),
        bool(arch.get("value_rescaling", False)),
    )
    if "tracking" in arch:
        spec = {k: freeze(v) for k, v in arch["tracking"].items()}
        return TrackingCriticProblem(*common, **spec)
    if stage_cost is None:
        env = manifest.get("env", {})
        raise ValueError(
            f"a bundle of task {env.get('id', env)!r} needs that task's stage cost "
            "(mppi_ros.training.gym_tasks.load_task_bundle supplies a gymnasium task's)"
        )
    return CriticProblem(*common)


def load_soft_mpcritic_bundle(
    path: str | Path, stage_cost: Callable | None = None
) -> tuple[CriticBundle, CriticProblem, SoftMPCriticConfig, SoftTuning]:
    """Loads and validates a softMPCritic bundle.

    Args:
        path: The bundle folder.
        stage_cost: The task's stage cost; a vehicle tracking bundle carries its own, any
            other needs it given.

    Returns:
        ``(bundle, problem, config, tuning)``: a :class:`CriticBundle` with the weights, the
        ``CriticProblem``, the online ``SoftMPCriticConfig`` and the trained ``SoftTuning``.

    Raises:
        BundleError: One sentence naming the bundle and what is wrong.
    """
    path = Path(path)
    manifest = read_verified_manifest(path, SOFT_MPCRITIC)
    try:
        config = config_from_manifest(SoftMPCriticConfig, manifest["config"], path)
        problem = _problem(manifest, stage_cost)
        t = manifest["tuning"]
        tuning = make_soft_tuning(problem.ensemble.act_dim, t["temperature"], 1.0, t["discount"])
        tuning = tuning.replace(noise_std=jax.numpy.asarray(t["noise_std"], jax.numpy.float32))
        # Shapes only: initialising the networks for real compiles every op (~20 s cold).
        template = _critic_tree(jax.eval_shape(problem.init_weights, jax.random.PRNGKey(0)))
    except BundleError:
        raise
    except Exception as err:  # any field the planner cannot be built from is a rejection
        raise BundleError(
            f"model bundle {path}: invalid softMPCritic manifest ({type(err).__name__}: {err})"
        ) from None
    w = read_weights(path, template)
    d = w["dynamics"]
    weights = CriticWeights(
        q=w["q"],
        dynamics=EnsembleParams(
            net=d["net"],
            inputs=Normalizer(d["inputs"]["mean"], d["inputs"]["std"]),
            deltas=Normalizer(d["deltas"]["mean"], d["deltas"]["std"]),
        ),
    )
    bundle = CriticBundle(path, manifest, manifest.get("env", {}), weights)
    return bundle, problem, config, tuning


def soft_mpcritic_controller(path: str | Path, **overrides: Any) -> SoftMPCritic:
    """The vehicle softMPCritic controller of a bundle trained on the tracking task.

    ``overrides``: planner fields (``num_samples``, ``horizon``, ``iterations``) and
    ``replan_period``; the networks and the discount are fixed by the training.

    Raises:
        BundleError: For a bad bundle, a gymnasium bundle, or an override of another field.
    """
    require_vehicle_bundle(path)
    bundle, problem, config, tuning = load_soft_mpcritic_bundle(path)
    replan_period = overrides.pop("replan_period", None)
    bad = sorted(set(overrides) - _PLANNER_OVERRIDES)
    if bad:
        raise BundleError(
            f"model bundle {path}: cannot override {bad}; valid overrides: "
            f"{sorted(_PLANNER_OVERRIDES | {'replan_period'})}"
        )
    try:
        config = dataclasses.replace(config, **overrides)
    except ValueError as err:
        raise BundleError(f"model bundle {path}: {err}") from None
    try:
        return SoftMPCritic(
            problem=problem,
            config=config,
            weights=bundle.weights,
            temperature=float(tuning.temperature),
            noise_std=tuple(float(v) for v in np.asarray(tuning.noise_std)),
            discount=float(tuning.discount),
            dt=float(bundle.manifest["dt"]),
            replan_period=replan_period,
            reference_speed=float(bundle.env["reference_speed"]),
        )
    except Exception as err:  # a manifest field the planner cannot use is a rejection
        raise BundleError(
            f"model bundle {path}: invalid softMPCritic manifest ({type(err).__name__}: {err})"
        ) from None
