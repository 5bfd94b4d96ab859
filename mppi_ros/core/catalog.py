"""The controller catalog: every controller's :class:`ControllerSpec` (what it can do) and the
functions that build controllers from names and bundles.

Adding a controller is one module under :mod:`mppi_ros.core.controllers` and one
:func:`register_controller` call below (plus, optionally, a training config). Everything that
asks what a controller can do (the node's parameters, the engine, the benchmarks, export and
training) reads its spec; nothing compares controller names.

::

    spec = controller_spec("step_mppi")     # ValueError listing the names when unknown
    ctrl = make_controller("mppi", num_samples=1024, horizon=40)
    ctrl = controller_from_bundle("models/f1tenth_dpc")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mppi_ros.core.bundles import (
    CRITIC_CODEC,
    POLICY_CODEC,
    BundleCodec,
    BundleError,
    VehicleBundle,
    read_manifest,
    resolve_model,
    shipped_model_name,
)
from mppi_ros.core.controllers import (
    MPPI,
    ConfigParameter,
    Controller,
    MPPIConfig,
    PurePursuit,
    PurePursuitConfig,
    TuningParameter,
    config_with,
)
from mppi_ros.core.controllers.em_mppi import (
    EM_CONFIG_PARAMETERS,
    EM_TUNING_PARAMETERS,
    EMMPPI,
    EMMPPIConfig,
)
from mppi_ros.core.controllers.step_mppi import DPC, StepMPPI, StepMPPIConfig
from mppi_ros.core.dynamics import register_dynamics_lazy
from mppi_ros.core.dynamics.learned import SHIPPED_ENSEMBLE, ensemble_dynamics
from mppi_ros.core.registry import Registry


@dataclasses.dataclass(frozen=True)
class ControllerSpec:
    """What a registered controller is and can do.

    Attributes:
        name: Registry name (the node's ``controller`` parameter).
        factory: ``(**overrides) -> Controller`` with its default config, or from its shipped
            bundle when it needs one.
        config: Its static config dataclass (``None``: set by its bundle).
        has_horizon: Its config has a ``horizon`` in steps (a planner's, or pure pursuit's
            look-ahead window): the ``horizon`` parameter applies.
        samples: Draws ``num_samples`` samples per step (the ``num_samples`` parameter applies).
        codec: How its bundles are read; ``None``: it needs no model.
        shipped: A vehicle bundle ``models/f1tenth_<name>`` ships with the package.
        exportable: ``mppi-ros export onnx`` exports it.
        onnx_carry: Controller-state fields an exported graph of a classic (bundle-less)
            controller carries from one step to the next as inputs and outputs.
        trainable: ``mppi-ros train`` trains it (a policy network).
        tuning_parameters: Live tuning fields it adds to the tracking ones (node parameters).
        config_parameters: Static config fields a deployment may choose (read-only node
            parameters; bundle-less controllers).
    """

    name: str
    factory: Callable[..., Controller]
    config: type | None = None
    has_horizon: bool = False
    samples: bool = False
    codec: BundleCodec | None = None
    shipped: bool = False
    exportable: bool = False
    onnx_carry: tuple[str, ...] = ()
    trainable: bool = False
    tuning_parameters: tuple[TuningParameter, ...] = ()
    config_parameters: tuple[ConfigParameter, ...] = ()

    def config_default(self, name: str) -> Any:
        """The default of config field ``name``."""
        return getattr(self.config(), name)

    @property
    def learned(self) -> bool:
        """It runs from a model bundle (its ``model_path``)."""
        return self.codec is not None

    @property
    def default_model(self) -> str:
        """The model name its empty ``model_path`` stands for."""
        return shipped_model_name(self.name)

    def overrides(self, num_samples: int | None, horizon: int | None) -> dict[str, int]:
        """Static-config overrides; ``None`` (or 0) keeps the default, and a value for what
        the controller does not have (samples, horizon) is dropped."""
        out: dict[str, int] = {}
        if num_samples and self.samples:
            out["num_samples"] = num_samples
        if horizon and self.has_horizon:
            out["horizon"] = horizon
        return out


_REGISTRY: Registry[ControllerSpec] = Registry("controller")


def register_controller(spec: ControllerSpec, *, overwrite: bool = False) -> None:
    """Adds ``spec`` under ``spec.name`` (``ValueError`` if taken and not ``overwrite``)."""
    _REGISTRY.register(spec.name, spec, overwrite=overwrite)


def controller_spec(name: str) -> ControllerSpec:
    """The spec of a registered controller (``ValueError`` listing the valid names)."""
    return _REGISTRY.get(name)


def controller_names(where: Callable[[ControllerSpec], bool] | None = None) -> list[str]:
    """Registered names, sorted; only those whose spec satisfies ``where`` when given."""
    names = _REGISTRY.names()
    return names if where is None else [n for n in names if where(_REGISTRY.get(n))]


def make_controller(name: str, **overrides: Any) -> Controller:
    """Builds a registered controller.

    ``overrides`` replace fields of the static config (for a learned controller: only fields
    that do not change the network, e.g. ``num_samples``).

    Raises:
        ValueError: For an unknown controller (the message lists valid names), an unknown
            config field (the message lists valid fields), or a bad shipped bundle
            (:class:`~mppi_ros.core.bundles.BundleError`).
    """
    return controller_spec(name).factory(**overrides)


def shipped_model_path(name: str) -> Path:
    """The shipped vehicle bundle of a learned controller (``models/f1tenth_<name>``)."""
    shipped = controller_names(lambda s: s.shipped)
    if name not in shipped:
        raise BundleError(f"no shipped weights for {name!r}; valid: {', '.join(shipped)}")
    return resolve_model(controller_spec(name).default_model)


def _codec_of(path: Path) -> tuple[ControllerSpec, BundleCodec]:
    """The spec of the controller a bundle holds, and its codec."""
    controller = read_manifest(path)["controller"]
    try:
        spec = controller_spec(controller)
    except ValueError as err:
        raise BundleError(f"model bundle {path}: {err}") from None
    if spec.codec is None:
        raise BundleError(f"model bundle {path}: controller {controller!r} takes no bundle")
    return spec, spec.codec


def load_vehicle_bundle(path: str | Path) -> VehicleBundle:
    """A validated bundle of any learned vehicle controller, read by its controller's codec.

    Raises:
        BundleError: Missing, corrupt or tampered, or a softMPCritic of a gymnasium task.
    """
    return _codec_of(Path(path))[1].load(Path(path))


def controller_from_bundle(path: str | Path, **overrides: Any) -> Controller:
    """The controller a bundle holds, carrying its weights (``ctrl.init`` uses them)."""
    codec = _codec_of(Path(path))[1]
    return codec.controller(codec.load(Path(path)), **overrides)


def controller_for(
    name_or_path: str | Path,
    num_samples: int | None = None,
    horizon: int | None = None,
    **overrides: Any,
) -> Controller:
    """A registered controller by name (with its shipped weights when it has them) or the
    controller of a bundle folder. ``num_samples`` / ``horizon`` apply where the controller
    has them (``None`` or 0 keeps the default); ``overrides`` are further config fields."""
    name = str(name_or_path)
    if name in _REGISTRY:
        spec = controller_spec(name)
        overrides |= spec.overrides(num_samples, horizon)
        if spec.shipped:
            return controller_from_bundle(shipped_model_path(name), **overrides)
        return make_controller(name, **overrides)
    try:
        path = resolve_model(name)
    except BundleError as err:
        raise ValueError(
            f"unknown controller {name!r}; valid names: {', '.join(controller_names())} "
            f"(or a model bundle: {err})"
        ) from None
    spec, codec = _codec_of(path)
    overrides |= spec.overrides(num_samples, horizon)
    return codec.controller(codec.load(path), **overrides)


def load_matching_bundle(controller: str, model_path: str) -> VehicleBundle:
    """The bundle for a learned ``controller`` (empty path: its shipped one), checked to hold
    that controller kind.

    Raises:
        BundleError: Missing, corrupt or of another controller kind (one sentence).
    """
    path = resolve_model(model_path or controller_spec(controller).default_model)
    require_kind(path, read_manifest(path), controller)  # before the weights are read
    return load_vehicle_bundle(path)


def require_kind(path: Path, manifest: dict[str, Any], controller: str) -> None:
    """Raises ``BundleError`` unless the bundle at ``path`` holds a ``controller`` model."""
    held = manifest["controller"]
    if held != controller:
        raise BundleError(
            f"model bundle {path} holds a {held!r} model, but this node runs "
            f"controller {controller!r}"
        )


def _from_config(cls: type, config_cls: type) -> Callable[..., Controller]:
    return lambda **overrides: cls(config_with(config_cls, **overrides))


def _from_shipped(name: str) -> Callable[..., Controller]:
    return lambda **overrides: controller_from_bundle(shipped_model_path(name), **overrides)


register_controller(
    ControllerSpec(
        "mppi",
        _from_config(MPPI, MPPIConfig),
        MPPIConfig,
        has_horizon=True,
        samples=True,
        exportable=True,
        onnx_carry=("plan", "scale"),  # the warm start
    )
)
register_controller(
    ControllerSpec(
        "em_mppi",
        _from_config(EMMPPI, EMMPPIConfig),
        EMMPPIConfig,
        has_horizon=True,
        samples=True,
        exportable=True,  # every family (mppi-ros export onnx em_mppi --out FILE)
        onnx_carry=("mean", "spread"),  # the warm start
        tuning_parameters=EM_TUNING_PARAMETERS,
        config_parameters=EM_CONFIG_PARAMETERS,
    )
)
register_controller(
    ControllerSpec(
        "pure_pursuit",
        _from_config(PurePursuit, PurePursuitConfig),
        PurePursuitConfig,
        has_horizon=True,  # the reference window it looks ahead in
    )
)
register_controller(
    ControllerSpec(
        "step_mppi",
        _from_config(StepMPPI, StepMPPIConfig),
        StepMPPIConfig,
        samples=True,
        codec=POLICY_CODEC,
        shipped=True,
        exportable=True,
        trainable=True,
    )
)
register_controller(
    ControllerSpec(
        "dpc",
        _from_config(DPC, StepMPPIConfig),
        StepMPPIConfig,
        codec=POLICY_CODEC,
        shipped=True,
        exportable=True,
        trainable=True,
    )
)
register_controller(
    ControllerSpec(
        "soft_mpcritic",
        _from_shipped("soft_mpcritic"),
        has_horizon=True,
        samples=True,
        codec=CRITIC_CODEC,
        shipped=True,
    )
)

# softMPCritic's learned vehicle ensemble as a dynamics model: loaded from models/ on first use.
register_dynamics_lazy(
    SHIPPED_ENSEMBLE,
    lambda: ensemble_dynamics(shipped_model_path("soft_mpcritic"), SHIPPED_ENSEMBLE),
)
