"""The policy codec: bundles of Step-MPPI and DPC (a policy network and its input
normalisation). Loading validates the controller and dynamics names and every weight's shape
and dtype against the architecture the config describes."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mppi_ros.core.bundles.format import (
    PARAMS,
    BundleError,
    config_from_manifest,
    freeze,
    jsonable,
    read_manifest,
    read_weights,
    verify_checksums,
    write_bundle,
)
from mppi_ros.core.controllers.base import make_tuning
from mppi_ros.core.controllers.step_mppi import DPC, PolicyWeights, StepMPPI, StepMPPIConfig
from mppi_ros.core.dynamics import get_dynamics
from mppi_ros.core.networks import feature_dim

# The controllers whose bundles this codec reads, and the network each stores.
POLICY_CLASSES: dict[str, type[StepMPPI] | type[DPC]] = {"step_mppi": StepMPPI, "dpc": DPC}
_NETWORKS = {"step_mppi": "DistributionPolicy", "dpc": "DeterministicPolicy"}
# Fields a loaded network fixes: overriding them would not match the weights.
_ARCHITECTURE = frozenset({"dynamics", "hidden", "activation", "full_covariance", "dt"})


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A validated policy bundle: its manifest, the controller config and the weights."""

    path: Path
    manifest: dict[str, Any]
    config: StepMPPIConfig
    weights: PolicyWeights

    @property
    def controller(self) -> str:
        return self.manifest["controller"]

    @property
    def vehicle_model(self) -> str:
        """Name of the dynamics model the network was trained for."""
        return self.config.dynamics

    @property
    def model_id(self) -> str:
        """Short identifier: bundle name plus the first 12 hex digits of the weights' hash."""
        return f"{self.path.name}@{self.manifest['files'][PARAMS]['sha256'][:12]}"


def _known(controller: str) -> None:
    if controller not in POLICY_CLASSES:
        raise BundleError(
            f"cannot bundle controller {controller!r} as a policy; valid: "
            f"{', '.join(POLICY_CLASSES)}"
        )


def save_bundle(
    directory: str | Path,
    controller: str,
    config: StepMPPIConfig,
    weights: PolicyWeights,
    training: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
    tuning: dict[str, Any] | None = None,
) -> Path:
    """Writes a bundle folder and returns its path.

    Args:
        directory: Target folder (created).
        controller: ``step_mppi`` or ``dpc``.
        config: Static controller config (architecture, K, dt, dynamics).
        weights: Network parameters and input normalisation.
        training: Training command, config and metrics to record.
        extra_files: Other files to include (e.g. ``controller.onnx``), hashed too.
        tuning: Tuning values the network was trained with (``TrackingTuning`` field names);
            they become the loaded controller's ``default_tuning()``.
    """
    _known(controller)
    model = get_dynamics(config.dynamics)
    lo, hi = model.control_bounds(model.default_params)
    manifest = {
        "controller": controller,
        "tuning": jsonable(tuning or {}),
        "dynamics": {
            "name": model.name,
            "params": jsonable(dataclasses.asdict(model.default_params)),
            "state_names": list(model.state_names),
        },
        "dt": config.dt,
        "config": jsonable(dataclasses.asdict(config)),
        "inputs": {
            "features": feature_dim(model, len(config.preview)),
            "description": "track-frame features (mppi_ros.core.networks.policy_features)",
            "normalisation": "z-score with input_mean / input_std stored in params.msgpack",
        },
        "outputs": {
            "names": list(model.control_names),
            "units": ["rad/s", "m/s^2"] if model.name != "double_integrator" else ["m/s^2"] * 2,
            "low": jsonable(lo),
            "high": jsonable(hi),
        },
        "architecture": {
            "network": _NETWORKS[controller],
            "hidden": list(config.hidden),
            "activation": config.activation,
            "full_covariance": config.full_covariance,
        },
        "training": jsonable(training or {}),
    }
    state = _weights_state(weights)
    return write_bundle(Path(directory), manifest, state, extra_files or {})


def _weights_state(weights: PolicyWeights, leaf: Any = np.asarray) -> dict[str, Any]:
    """The stored layout of ``weights``, each leaf passed through ``leaf`` (host arrays to
    save; identity to keep ``jax.ShapeDtypeStruct`` leaves as a template to read into)."""
    return {
        "params": jax.tree.map(leaf, weights.params),
        "input_mean": leaf(weights.input_mean),
        "input_std": leaf(weights.input_std),
    }


@functools.lru_cache(maxsize=16)
def _weight_shapes(controller: str, config: StepMPPIConfig) -> PolicyWeights:
    """The weight shapes of ``controller`` built from ``config``: traced once per architecture,
    never run. (An eager init dispatched ~250 ops per bundle load, and traced and compiled
    again after the controller node empties JAX's caches: 0.1 s on the thread that
    validates a new ``model_path``, long enough to let odometry go stale.)"""
    ctrl = POLICY_CLASSES[controller](config)
    return jax.eval_shape(ctrl.init_weights, jax.random.PRNGKey(0))


def load_bundle(path: str | Path) -> Bundle:
    """Loads and fully validates a policy bundle.

    Raises:
        BundleError: One sentence naming the bundle and what is wrong.
    """
    path = Path(path)
    manifest = read_manifest(path)
    verify_checksums(path, manifest)
    controller = manifest["controller"]
    if controller not in POLICY_CLASSES:
        raise BundleError(
            f"model bundle {path} is for controller {controller!r}; valid: "
            f"{', '.join(POLICY_CLASSES)}"
        )
    name = manifest["dynamics"].get("name", "")
    if not isinstance(name, str):
        raise BundleError(f"model bundle {path}: dynamics name must be a string, got {name!r}")
    try:
        model = get_dynamics(name)
    except ValueError as err:
        raise BundleError(f"model bundle {path}: {err}") from None
    config = config_from_manifest(StepMPPIConfig, manifest["config"], path)
    if config.dynamics != model.name:
        raise BundleError(
            f"model bundle {path}: config dynamics {config.dynamics!r} does not match manifest "
            f"dynamics {model.name!r}"
        )
    tuning = manifest.get("tuning", {})
    try:
        if not isinstance(tuning, dict):
            raise ValueError(f"expected a mapping, got {type(tuning).__name__}")
        make_tuning(model, **tuning)
    except (TypeError, ValueError) as err:
        raise BundleError(f"model bundle {path}: invalid tuning ({err})") from None
    expected_inputs = feature_dim(model, len(config.preview))
    if manifest["inputs"].get("features") != expected_inputs:
        raise BundleError(
            f"model bundle {path} expects {manifest['inputs'].get('features')} input features, "
            f"but dynamics {model.name!r} provides {expected_inputs}"
        )
    try:
        shapes = _weight_shapes(controller, config)
    except Exception as err:  # any config the network cannot be built from is a rejection
        raise BundleError(
            f"model bundle {path}: its network cannot be built ({type(err).__name__}: {err})"
        ) from None
    template = _weights_state(shapes, leaf=lambda shape: shape)
    weights = read_weights(path, template)
    return Bundle(
        path=path,
        manifest=manifest,
        config=config,
        weights=PolicyWeights(
            params=weights["params"],
            input_mean=weights["input_mean"],
            input_std=weights["input_std"],
        ),
    )


def policy_controller(bundle: Bundle, **overrides: Any) -> StepMPPI | DPC:
    """The Step-MPPI or DPC controller carrying ``bundle``'s weights (``ctrl.init`` uses
    them) and its trained tuning as ``default_tuning()``.

    Raises:
        BundleError: For an override of a field the network fixes.
    """
    bad = sorted(set(overrides) & _ARCHITECTURE)
    if bad:
        raise BundleError(f"model bundle {bundle.path}: {bad} are fixed by the trained network")
    config = dataclasses.replace(bundle.config, **overrides)
    tuning = tuple(sorted((k, freeze(v)) for k, v in bundle.manifest.get("tuning", {}).items()))
    cls = POLICY_CLASSES[bundle.controller]
    return cls(config=config, weights=bundle.weights, tuning_defaults=tuning)
