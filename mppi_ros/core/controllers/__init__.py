"""Controller registry: ``make_controller(name, **overrides)``, ``register_controller``.

Every controller follows the functional interface of DESIGN.md::

    ctrl = make_controller("mppi", num_samples=1024, horizon=40)
    cstate = ctrl.init(key)
    action, cstate, info = ctrl.step(cstate, obs, tuning, key)

The caller decides where to jit (``jax.jit(ctrl.step)``); tuning values are arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mppi_ros.core.controllers.base import (
    Controller,
    Observation,
    TrackingTuning,
    make_tuning,
    update_tuning,
)
from mppi_ros.core.controllers.mppi import MPPI, MPPIConfig

ControllerFactory = Callable[..., Controller]
_REGISTRY: dict[str, ControllerFactory] = {}


def register_controller(name: str, factory: ControllerFactory, *, overwrite: bool = False) -> None:
    """Registers ``factory(**overrides) -> Controller`` under ``name``."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"controller {name!r} is already registered")
    _REGISTRY[name] = factory


def controller_names() -> list[str]:
    return sorted(_REGISTRY)


def make_controller(name: str, **overrides: Any) -> Controller:
    """Builds a registered controller; ``overrides`` replace fields of its static config.

    Raises:
        ValueError: For an unknown controller (the message lists valid names) or an unknown
            config field (the message lists valid fields).
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown controller {name!r}; valid names: {', '.join(controller_names())}"
        )
    return _REGISTRY[name](**overrides)


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

__all__ = [
    "MPPI",
    "Controller",
    "MPPIConfig",
    "Observation",
    "TrackingTuning",
    "config_with",
    "controller_names",
    "make_controller",
    "make_tuning",
    "register_controller",
    "update_tuning",
]
