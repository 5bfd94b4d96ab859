"""Model bundles: a folder with ``manifest.json`` and ``params.msgpack`` (and optionally
``controller.onnx``). Saving records the SHA-256 of every file; loading validates the schema,
the checksums, the controller and dynamics names, and every weight's shape and dtype against
the architecture, and fails with one sentence that names the problem.

Weights are Flax msgpack (``flax.serialization``): plain arrays and dicts, never pickle, never
code.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from mppi_ros.checksums import sha256_file
from mppi_ros.core.controllers.step_mppi import PolicyWeights, StepMPPIConfig
from mppi_ros.core.dynamics import get_dynamics
from mppi_ros.core.networks import feature_dim

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "params.msgpack"
LEARNED_CONTROLLERS = ("step_mppi", "dpc")
# Controllers with a shipped vehicle bundle ``models/f1tenth_<name>``; each runs from any
# bundle of its kind (the node's ``model_path``).
SHIPPED_CONTROLLERS = (*LEARNED_CONTROLLERS, "soft_mpcritic")
MODEL_CONTROLLERS = SHIPPED_CONTROLLERS
_REQUIRED = {
    "format_version": int,
    "controller": str,
    "dynamics": dict,
    "dt": (int, float),
    "config": dict,
    "inputs": dict,
    "outputs": dict,
    "architecture": dict,
    "training": dict,
    "created": str,
    "files": dict,
}


class BundleError(ValueError):
    """A model bundle that must not be loaded; the message names the bundle and the problem."""


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A validated bundle: its manifest, the controller config and the weights."""

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


SHIPPED_PREFIX = "f1tenth_"


def model_search_paths() -> list[Path]:
    """Where named models are looked up: ``$MPPI_ROS_MODELS`` (``:``-separated), the source
    checkout's ``models/``, the ament share directory's ``models/`` (``colcon build``), then
    ``<sys.prefix>/share/mppi_ros/models`` (see :func:`mppi_ros.share.share_search_paths`)."""
    import os

    from mppi_ros.share import share_search_paths

    paths = [Path(p) for p in os.environ.get("MPPI_ROS_MODELS", "").split(os.pathsep) if p]
    return paths + share_search_paths("models")


def resolve_model(name_or_path: str | Path) -> Path:
    """A bundle folder from a path or a model name (``f1tenth_step_mppi``, or ``step_mppi`` /
    ``dpc`` for the shipped weights).

    Anything that looks like a path (absolute, ``./``-relative or with a separator) is only
    looked up there; a bare name is searched in the model folders.

    Raises:
        BundleError: Saying what the path is (missing, a file, a folder without a manifest)
            or naming every place a name was searched.
    """
    path = Path(name_or_path)
    if (path / MANIFEST).is_file():
        return path
    if path.name == MANIFEST and path.is_file():
        return path.parent
    name = str(name_or_path)
    if path.is_file():
        raise BundleError(f"model bundle {name!r} is a file; give its folder (with {MANIFEST})")
    if path.is_absolute() or name.startswith(".") or len(path.parts) > 1:
        what = "a folder without" if path.is_dir() else "no such folder, so no"
        raise BundleError(f"no model bundle {name!r}: {what} {MANIFEST}")
    candidates = [name] if name.startswith(SHIPPED_PREFIX) else [name, SHIPPED_PREFIX + name]
    searched: list[str] = []
    for root in model_search_paths():
        for candidate in candidates:
            if (root / candidate / MANIFEST).is_file():
                return root / candidate
            if str(root / candidate) not in searched:
                searched.append(str(root / candidate))
    raise BundleError(
        f"no model bundle {name!r}: no {MANIFEST} in ./{name} or in {', '.join(searched)}"
    )


def shipped_model_path(controller: str) -> Path:
    """The shipped bundle of a learned controller (``models/f1tenth_<controller>``)."""
    if controller not in SHIPPED_CONTROLLERS:
        raise BundleError(
            f"no shipped weights for {controller!r}; valid: {', '.join(SHIPPED_CONTROLLERS)}"
        )
    return resolve_model(SHIPPED_PREFIX + controller)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


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
    if controller not in LEARNED_CONTROLLERS:
        raise BundleError(f"cannot bundle controller {controller!r}; valid: {LEARNED_CONTROLLERS}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = get_dynamics(config.dynamics)
    lo, hi = model.control_bounds(model.default_params)
    (directory / PARAMS).write_bytes(serialization.to_bytes(_weights_state(weights)))
    for name, data in (extra_files or {}).items():
        (directory / name).write_bytes(data)
    files = {
        name: {"sha256": sha256_file(directory / name), "bytes": (directory / name).stat().st_size}
        for name in [PARAMS, *sorted(extra_files or {})]
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "controller": controller,
        "tuning": _jsonable(tuning or {}),
        "dynamics": {
            "name": model.name,
            "params": _jsonable(dataclasses.asdict(model.default_params)),
            "state_names": list(model.state_names),
        },
        "dt": config.dt,
        "config": _jsonable(dataclasses.asdict(config)),
        "inputs": {
            "features": feature_dim(model, len(getattr(config, "preview", ()))),
            "description": "track-frame features (mppi_ros.core.networks.policy_features)",
            "normalisation": "z-score with input_mean / input_std stored in params.msgpack",
        },
        "outputs": {
            "names": list(model.control_names),
            "units": ["rad/s", "m/s^2"] if model.name != "double_integrator" else ["m/s^2"] * 2,
            "low": _jsonable(lo),
            "high": _jsonable(hi),
        },
        "architecture": {
            "network": "DistributionPolicy" if controller == "step_mppi" else "DeterministicPolicy",
            "hidden": list(config.hidden),
            "activation": config.activation,
            "full_covariance": config.full_covariance,
        },
        "training": _jsonable(training or {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def _weights_state(weights: PolicyWeights, leaf: Any = np.asarray) -> dict[str, Any]:
    """The stored layout of ``weights``, each leaf passed through ``leaf`` (host arrays to
    save; identity to keep ``jax.ShapeDtypeStruct`` leaves as a template to read into)."""
    return {
        "params": jax.tree.map(leaf, weights.params),
        "input_mean": leaf(weights.input_mean),
        "input_std": leaf(weights.input_std),
    }


@functools.lru_cache(maxsize=16)
def _weight_shapes(controller: str, config: Any) -> PolicyWeights:
    """The weight shapes of ``controller`` built from ``config``: traced once per architecture,
    never run. (An eager init dispatched ~250 ops per bundle load, and traced and compiled
    again after the controller node empties JAX's caches: 0.1 s on the thread that
    validates a new ``model_path``, long enough to let odometry go stale.)"""
    from mppi_ros.core.controllers import make_controller

    ctrl = make_controller(controller, **dataclasses.asdict(config))
    return jax.eval_shape(ctrl.init_weights, jax.random.PRNGKey(0))


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Reads and schema-checks ``manifest.json`` (no weights loaded)."""
    path = Path(path)
    where = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist or is not a folder")
    try:
        manifest = json.loads(where.read_text())
    except FileNotFoundError:
        raise BundleError(f"model bundle {path} has no {MANIFEST}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"model bundle {path}: {MANIFEST} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"model bundle {path}: {MANIFEST} must hold a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in manifest:
            raise BundleError(f"model bundle {path}: {MANIFEST} lacks the field {key!r}")
        if not isinstance(manifest[key], kind):
            raise BundleError(f"model bundle {path}: {MANIFEST} field {key!r} has the wrong type")
    if manifest["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {path} has format version {manifest['format_version']}, this "
            f"mppi_ros reads version {FORMAT_VERSION}"
        )
    return manifest


def verify_checksums(path: Path, manifest: dict[str, Any]) -> None:
    """Every file listed in the manifest exists and matches its SHA-256."""
    if PARAMS not in manifest["files"]:
        raise BundleError(f"model bundle {path}: the manifest does not list {PARAMS}")
    for name, entry in manifest["files"].items():
        file = path / name
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(
                f"model bundle {path}: the manifest's entry for {name!r} must be an object "
                'with a "sha256" string'
            )
        if Path(name).name != name:
            raise BundleError(f"model bundle {path}: file name {name!r} must not contain a path")
        if not file.is_file():
            raise BundleError(f"model bundle {path} is missing {name}")
        if sha256_file(file) != entry.get("sha256"):
            raise BundleError(
                f"model bundle {path}: {name} does not match its SHA-256 in the manifest "
                f"(corrupt or modified file)"
            )


def load_bundle(path: str | Path) -> Bundle:
    """Loads and fully validates a bundle.

    Raises:
        BundleError: One sentence naming the bundle and what is wrong.
    """
    path = Path(path)
    manifest = read_manifest(path)
    verify_checksums(path, manifest)
    controller = manifest["controller"]
    if controller not in LEARNED_CONTROLLERS:
        raise BundleError(
            f"model bundle {path} is for controller {controller!r}; valid: "
            f"{', '.join(LEARNED_CONTROLLERS)}"
        )
    name = manifest["dynamics"].get("name", "")
    if not isinstance(name, str):
        raise BundleError(f"model bundle {path}: dynamics name must be a string, got {name!r}")
    try:
        model = get_dynamics(name)
    except ValueError as err:
        raise BundleError(f"model bundle {path}: {err}") from None
    fields = {f.name for f in dataclasses.fields(StepMPPIConfig)}
    cfg = {k: v for k, v in manifest["config"].items() if k in fields}
    cfg["hidden"] = tuple(cfg.get("hidden", ()))
    try:
        config = StepMPPIConfig(**cfg)
    except (TypeError, ValueError) as err:
        raise BundleError(f"model bundle {path}: invalid controller config ({err})") from None
    if config.dynamics != model.name:
        raise BundleError(
            f"model bundle {path}: config dynamics {config.dynamics!r} does not match manifest "
            f"dynamics {model.name!r}"
        )
    tuning = manifest.get("tuning", {})
    try:
        from mppi_ros.core.controllers import make_tuning

        if not isinstance(tuning, dict):
            raise ValueError(f"expected a mapping, got {type(tuning).__name__}")
        make_tuning(model, **tuning)
    except (TypeError, ValueError) as err:
        raise BundleError(f"model bundle {path}: invalid tuning ({err})") from None
    expected_inputs = feature_dim(model, len(getattr(config, "preview", ())))
    if manifest["inputs"].get("features") != expected_inputs:
        raise BundleError(
            f"model bundle {path} expects {manifest['inputs'].get('features')} input features, "
            f"but dynamics {model.name!r} provides {expected_inputs}"
        )

    template = _weights_state(_weight_shapes(controller, config), leaf=lambda shape: shape)
    weights = _read_weights(path, template)
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


def _read_weights(path: Path, template: dict[str, Any]) -> Any:
    """``path``'s weights file, restored and checked against ``template`` (shapes, dtypes,
    finite values, positive standard deviations)."""
    try:
        state = serialization.msgpack_restore((path / PARAMS).read_bytes())
    except (ValueError, TypeError) as err:  # msgpack's errors derive from ValueError
        raise BundleError(
            f"model bundle {path}: {PARAMS} is not readable msgpack ({err})"
        ) from None
    return _check_against_template(path, state, template)


def _check_against_template(path: Path, state: Any, template: dict[str, Any]) -> dict[str, Any]:
    """Same tree, shapes and float32 dtype as the architecture; returns jnp arrays."""
    flat_t = dict(_flatten(template))
    flat_s = dict(_flatten(state)) if isinstance(state, dict) else {}
    missing = sorted(set(flat_t) - set(flat_s))
    extra = sorted(set(flat_s) - set(flat_t))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise BundleError(f"model bundle {path}: weights do not match the architecture ({what})")
    for key, ref in flat_t.items():
        got = flat_s[key]
        if not isinstance(got, np.ndarray) or got.shape != ref.shape:
            shape = getattr(got, "shape", type(got).__name__)
            raise BundleError(
                f"model bundle {path}: weight {key} has shape {shape}, the architecture "
                f"needs {ref.shape}"
            )
        if got.dtype != np.float32:
            raise BundleError(f"model bundle {path}: weight {key} is {got.dtype}, not float32")
        if not np.all(np.isfinite(got)):
            raise BundleError(f"model bundle {path}: weight {key} contains NaN or infinity")
    for key in flat_s:
        if key.endswith("std") and np.any(np.asarray(flat_s[key]) <= 0):
            raise BundleError(f"model bundle {path}: {key} must be positive")
    return jax.tree.map(lambda a: jax.numpy.asarray(a), state)


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        out: list[tuple[str, Any]] = []
        for key, value in tree.items():
            out += _flatten(value, f"{prefix}/{key}" if prefix else str(key))
        return out
    return [(prefix, tree)]


def controller_from_bundle(path: str | Path, **overrides: Any):
    """A Step-MPPI, DPC or vehicle softMPCritic controller carrying the bundle's weights
    (``ctrl.init`` uses them)."""
    from mppi_ros.core.controllers.step_mppi import DPC, StepMPPI

    if read_manifest(Path(path)).get("controller") == SOFT_MPCRITIC:
        return soft_mpcritic_controller(path, **overrides)
    bundle = load_bundle(path)
    architecture = {"dynamics", "hidden", "activation", "full_covariance", "dt"}
    bad = sorted(set(overrides) & architecture)
    if bad:
        raise BundleError(f"model bundle {path}: {bad} are fixed by the trained network")
    config = dataclasses.replace(bundle.config, **overrides)
    cls = StepMPPI if bundle.controller == "step_mppi" else DPC
    tuning = tuple(sorted((k, _freeze(v)) for k, v in bundle.manifest.get("tuning", {}).items()))
    return cls(config=config, weights=bundle.weights, tuning_defaults=tuning)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# --------------------------------------------------------------------------- softMPCritic

SOFT_MPCRITIC = "soft_mpcritic"


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
        return self.manifest["architecture"].get("tracking", {}).get("dynamics")

    def require_vehicle(self) -> None:
        """Raises ``BundleError`` unless it was trained on the vehicle tracking task."""
        if self.vehicle_model is None:
            raise BundleError(
                f"model bundle {self.path} was trained on {self.env.get('id')!r}, not on the "
                "vehicle tracking task: it cannot drive a car"
            )


def load_vehicle_bundle(path: str | Path) -> Bundle | CriticBundle:
    """A validated bundle of any learned vehicle controller (Step-MPPI, DPC, softMPCritic).

    Raises:
        BundleError: Missing, corrupt or tampered, or a softMPCritic of a gymnasium task.
    """
    if read_manifest(Path(path)).get("controller") == SOFT_MPCRITIC:
        bundle = load_soft_mpcritic_bundle(path)[0]
        bundle.require_vehicle()
        return bundle
    return load_bundle(path)


def save_soft_mpcritic_bundle(
    directory: str | Path,
    problem,
    config,
    tuning,
    weights,
    env: dict[str, Any],
    training: dict[str, Any] | None = None,
    dt: float = 0.0,
) -> Path:
    """Writes a softMPCritic bundle: Q-network and ensemble weights with its normalisation.

    Args:
        problem: The :class:`~mppi_ros.core.controllers.soft_mpcritic.CriticProblem`.
        config: The online :class:`SoftMPCriticConfig`.
        tuning: :class:`SoftTuning` the weights were trained with (the loaded defaults).
        weights: :class:`CriticWeights`.
        env: Where the weights act (``mppi-ros eval`` rebuilds it from this).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PARAMS).write_bytes(serialization.to_bytes(_critic_state(weights)))
    ensemble = problem.ensemble
    manifest = {
        "format_version": FORMAT_VERSION,
        "controller": SOFT_MPCRITIC,
        "tuning": {
            "temperature": float(tuning.temperature),
            "noise_std": _jsonable(tuning.noise_std),
            "discount": float(tuning.discount),
        },
        "dynamics": {
            "name": "ensemble",
            "members": ensemble.members,
            "predicts": "state change s' - s (z-scored with the stored statistics)",
        },
        "dt": dt,
        "config": _jsonable(dataclasses.asdict(config)),
        "env": _jsonable(env),
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
            "pose_indices": _jsonable(ensemble.pose_indices),
            **({"tracking": problem.spec()} if hasattr(problem, "spec") else {}),
        },
        "training": _jsonable(training or {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": {
            PARAMS: {
                "sha256": sha256_file(directory / PARAMS),
                "bytes": (directory / PARAMS).stat().st_size,
            }
        },
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def soft_mpcritic_controller(path: str | Path, **overrides: Any):
    """The vehicle softMPCritic controller of a bundle trained on the tracking task.

    ``overrides``: planner fields (``num_samples``, ``horizon``, ``iterations``) and
    ``replan_period``; the networks and the discount are fixed by the training.

    Raises:
        BundleError: For a bad bundle, a gymnasium bundle, or an override of another field.
    """
    from mppi_ros.core.controllers.soft_mpcritic_tracking import SoftMPCritic

    bundle, problem, config, tuning = load_soft_mpcritic_bundle(path)
    bundle.require_vehicle()
    replan_period = overrides.pop("replan_period", None)
    planner = {"num_samples", "horizon", "iterations"}
    bad = sorted(set(overrides) - planner)
    if bad:
        raise BundleError(
            f"model bundle {path}: cannot override {bad}; valid overrides: "
            f"{sorted(planner | {'replan_period'})}"
        )
    try:
        config = dataclasses.replace(config, **overrides)
    except ValueError as err:
        raise BundleError(f"model bundle {path}: {err}") from None
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


def _pose_indices(value: Any) -> tuple[int, int, int] | None:
    """The ensemble's planar pose entries from a manifest (absent in older bundles)."""
    return None if value is None else tuple(int(i) for i in value)


def _critic_state(weights) -> dict[str, Any]:
    d = weights.dynamics
    return jax.tree.map(
        np.asarray,
        {
            "q": weights.q,
            "dynamics": {
                "net": d.net,
                "inputs": {"mean": d.inputs.mean, "std": d.inputs.std},
                "deltas": {"mean": d.deltas.mean, "std": d.deltas.std},
            },
        },
    )


def load_soft_mpcritic_bundle(path: str | Path, stage_cost=None):
    """Loads and validates a softMPCritic bundle.

    Returns:
        ``(bundle, problem, config, tuning)``: a :class:`CriticBundle` with the weights, the
        ``CriticProblem`` (with ``stage_cost``, or the gymnasium task's negated reward when
        ``None``), the online ``SoftMPCriticConfig`` and the trained ``SoftTuning``.

    Raises:
        BundleError: One sentence naming the bundle and what is wrong.
    """
    from mppi_ros.core.controllers.soft_mpcritic import (
        CriticProblem,
        CriticWeights,
        SoftMPCriticConfig,
        make_soft_tuning,
    )
    from mppi_ros.core.dynamics.ensemble import EnsembleModel, EnsembleParams, Normalizer

    path = Path(path)
    manifest = read_manifest(path)
    verify_checksums(path, manifest)
    if manifest["controller"] != SOFT_MPCRITIC:
        raise BundleError(
            f"model bundle {path} is for controller {manifest['controller']!r}, not "
            f"{SOFT_MPCRITIC!r}"
        )
    try:
        inputs, arch, outputs = manifest["inputs"], manifest["architecture"], manifest["outputs"]
        env = manifest.get("env", {})
        config = SoftMPCriticConfig(**manifest["config"])
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
            from mppi_ros.core.controllers.soft_mpcritic_tracking import TrackingCriticProblem

            spec = {k: _freeze(v) for k, v in arch["tracking"].items()}
            problem = TrackingCriticProblem(*common, **spec)
        else:
            if stage_cost is None:
                if env.get("kind") != "gymnasium":
                    raise ValueError(f"no stage cost given for environment {env!r}")
                from mppi_ros.training.gym_tasks import get_task

                common = (ensemble, get_task(env["id"]).stage_cost, *common[2:])
            problem = CriticProblem(*common)
        t = manifest["tuning"]
        tuning = make_soft_tuning(ensemble.act_dim, t["temperature"], 1.0, t["discount"])
        tuning = tuning.replace(noise_std=jax.numpy.asarray(t["noise_std"], jax.numpy.float32))
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"model bundle {path}: invalid softMPCritic manifest ({err})") from None
    w = _read_weights(path, _critic_state(problem.init_weights(jax.random.PRNGKey(0))))
    d = w["dynamics"]
    weights = CriticWeights(
        q=w["q"],
        dynamics=EnsembleParams(
            net=d["net"],
            inputs=Normalizer(d["inputs"]["mean"], d["inputs"]["std"]),
            deltas=Normalizer(d["deltas"]["mean"], d["deltas"]["std"]),
        ),
    )
    bundle = CriticBundle(path, manifest, env, weights)
    return bundle, problem, config, tuning
