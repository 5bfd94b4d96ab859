"""Dynamics registry: ``get_dynamics(name)`` and ``register_dynamics(model)``.

Every model is a :class:`DynamicsModel` whose ``derivative(x, u, params)`` is pure; its
``discrete(dt, method)`` gives the ``f(x, u, params) -> x_next`` used by controllers and the
simulator.
"""

from __future__ import annotations

from collections.abc import Callable

from mppi_ros.core.dynamics.base import DynamicsModel, discretize, wrap_angle
from mppi_ros.core.dynamics.simple import (
    DOUBLE_INTEGRATOR,
    KINEMATIC_BICYCLE,
    DoubleIntegratorParams,
)
from mppi_ros.core.dynamics.single_track import SINGLE_TRACK, SingleTrackParams
from mppi_ros.core.registry import Registry

_REGISTRY: Registry[DynamicsModel] = Registry("dynamics")


def register_dynamics(model: DynamicsModel, *, overwrite: bool = False) -> None:
    """Adds a model to the registry.

    Raises:
        ValueError: If the name is taken and ``overwrite`` is false.
    """
    _REGISTRY.register(model.name, model, overwrite=overwrite)


def register_dynamics_lazy(name: str, load: Callable[[], DynamicsModel]) -> None:
    """Adds ``name``, made by ``load()`` on its first lookup (a model read from files)."""
    _REGISTRY.register_lazy(name, load)


def get_dynamics(name: str) -> DynamicsModel:
    """Looks a model up by name.

    Raises:
        ValueError: For an unknown name; the message lists the valid names.
    """
    return _REGISTRY.get(name)


def dynamics_names() -> list[str]:
    return _REGISTRY.names()


for _model in (SINGLE_TRACK, KINEMATIC_BICYCLE, DOUBLE_INTEGRATOR):
    register_dynamics(_model)


__all__ = [
    "DoubleIntegratorParams",
    "DynamicsModel",
    "SingleTrackParams",
    "discretize",
    "dynamics_names",
    "get_dynamics",
    "register_dynamics",
    "register_dynamics_lazy",
    "wrap_angle",
]
