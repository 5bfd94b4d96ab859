"""Controller registry: ``make_controller(name, **overrides)``, ``register_controller``.

Every controller follows the functional interface::

    ctrl = make_controller("mppi", num_samples=1024, horizon=40)
    cstate = ctrl.init(key)
    action, cstate, info = ctrl.step(cstate, obs, tuning, key)

The caller decides where to jit (``jax.jit(ctrl.step)``); tuning values are arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mppi_ros.core.controllers.base import (
    Controller,
    Observation,
    TrackingTuning,
    make_tuning,
    update_tuning,
)
from mppi_ros.core.controllers.mppi import MPPI, MPPIConfig
from mppi_ros.core.controllers.pure_pursuit import PurePursuit, PurePursuitConfig
from mppi_ros.core.controllers.step_mppi import DPC, StepMPPI, StepMPPIConfig
from mppi_ros.core.registry import Registry

ControllerFactory = Callable[..., Controller]
_REGISTRY: Registry[ControllerFactory] = Registry("controller")


def register_controller(name: str, factory: ControllerFactory, *, overwrite: bool = False) -> None:
    """Registers ``factory(**overrides) -> Controller`` under ``name``."""
    _REGISTRY.register(name, factory, overwrite=overwrite)


def controller_names() -> list[str]:
    return _REGISTRY.names()


def make_controller(name: str, **overrides: Any) -> Controller:
    """Builds a registered controller, or one from a model bundle folder.

    ``overrides`` replace fields of the static config (for a bundle: only fields that do not
    change the network, e.g. ``num_samples``).

    Raises:
        ValueError: For an unknown controller (the message lists valid names), an unknown
            config field (the message lists valid fields), or a bad bundle
            (:class:`mppi_ros.core.bundle.BundleError`).
    """
    if name not in _REGISTRY and (Path(name) / "manifest.json").exists():
        from mppi_ros.core.bundle import controller_from_bundle

        return controller_from_bundle(name, **overrides)
    return _REGISTRY.get(name)(**overrides)


def with_replan_period(ctrl: Controller, period: float) -> Controller:
    """``ctrl`` called every ``period`` seconds: a warm-started planner (MPPI, softMPCritic)
    shifts its plan by ``period / dt`` steps per call; a single-step controller has no plan
    and comes back unchanged."""
    replan = getattr(ctrl, "with_replan_period", None)
    return ctrl if replan is None else replan(period)


def config_with(config_cls: type, **overrides: Any) -> Any:
    """Instantiates a frozen config dataclass, rejecting unknown fields with their list."""
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(overrides) - valid
    if unknown:
        raise ValueError(
            f"unknown {config_cls.__name__} field(s) {sorted(unknown)}; valid: {sorted(valid)}"
        )
    return config_cls(**overrides)


register_controller("mppi", lambda **kw: MPPI(config_with(MPPIConfig, **kw)))
register_controller("step_mppi", lambda **kw: StepMPPI(config_with(StepMPPIConfig, **kw)))
register_controller("dpc", lambda **kw: DPC(config_with(StepMPPIConfig, **kw)))
register_controller("pure_pursuit", lambda **kw: PurePursuit(config_with(PurePursuitConfig, **kw)))


def _shipped_soft_mpcritic(**overrides: Any) -> Controller:
    """The vehicle softMPCritic of the shipped bundle ``models/f1tenth_soft_mpcritic``."""
    from mppi_ros.core.bundle import shipped_model_path, soft_mpcritic_controller

    return soft_mpcritic_controller(shipped_model_path("soft_mpcritic"), **overrides)


register_controller("soft_mpcritic", _shipped_soft_mpcritic)

__all__ = [
    "DPC",
    "MPPI",
    "Controller",
    "MPPIConfig",
    "Observation",
    "PurePursuit",
    "PurePursuitConfig",
    "StepMPPI",
    "StepMPPIConfig",
    "TrackingTuning",
    "config_with",
    "controller_names",
    "make_controller",
    "make_tuning",
    "register_controller",
    "update_tuning",
    "with_replan_period",
]
