"""A learned dynamics ensemble as a :class:`DynamicsModel`, so any controller can plan with it.

softMPCritic's ensemble (:mod:`mppi_ros.core.dynamics.ensemble`) is a discrete-time model at
its training step. :func:`ensemble_dynamics` wraps it with the metadata of the vehicle model it
was trained on (state and control names, angle / position / heading / speed entries, control
bounds): its ``default_params`` ARE the ensemble weights, so a controller's
``tuning.model_params`` carries them as an argument (a swap never recompiles) and
``discrete(dt)`` predicts with the mean change of the members. Only the training step exists:
``discrete`` refuses any other ``dt`` (use ``substeps=1`` with classic MPPI).

``get_dynamics("f1tenth_ensemble")`` loads the shipped ``models/f1tenth_soft_mpcritic``
ensemble on first use (registered by :mod:`mppi_ros.core.catalog`);
``register_dynamics(ensemble_dynamics(path, name))`` adds any other softMPCritic vehicle bundle.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import jax

from mppi_ros.core.bundles.critic import load_soft_mpcritic_bundle, require_vehicle_bundle
from mppi_ros.core.dynamics import get_dynamics
from mppi_ros.core.dynamics.base import DynamicsModel, StepFn
from mppi_ros.core.dynamics.ensemble import EnsembleModel

Array = jax.Array

SHIPPED_ENSEMBLE = "f1tenth_ensemble"


@dataclasses.dataclass(frozen=True)
class LearnedDynamics(DynamicsModel):
    """A discrete-time learned model (``derivative`` is its finite difference over ``dt``).

    Attributes (besides :class:`DynamicsModel`'s; ``default_params`` holds the ensemble
    weights):
        ensemble: The ensemble's static description.
        dt: The step it was trained at (s).
        vehicle_params: The parameters of the vehicle model it learned (limits, wheelbase).
    """

    ensemble: EnsembleModel | None = None
    dt: float = 0.05
    vehicle_params: Any = None

    def physical_params(self, params: Any) -> Any:
        del params  # the weights
        return self.vehicle_params

    def discrete(self, dt: float, method: str = "rk4") -> StepFn:
        """``f(x, u, weights) -> x_next``: the mean of the members' predictions.

        Raises:
            ValueError: If ``dt`` is not the training step (a learned model has no other).
        """
        del method  # a discrete model is not integrated
        if not math.isclose(dt, self.dt, rel_tol=1e-6):
            raise ValueError(
                f"learned dynamics {self.name!r} predicts steps of {self.dt} s only, got dt {dt}"
            )
        ensemble = self.ensemble
        return lambda x, u, weights: ensemble.predict_mean(weights, x, u)


def ensemble_dynamics(path: str | Path, name: str | None = None) -> LearnedDynamics:
    """The dynamics ensemble of softMPCritic vehicle bundle ``path`` as a dynamics model.

    Args:
        path: A softMPCritic bundle trained on the vehicle task.
        name: Registry name (default: ``<vehicle model>_ensemble:<bundle folder name>``).

    Raises:
        BundleError: For a bad bundle, or one trained on a gymnasium task (no vehicle state).
    """
    require_vehicle_bundle(path)
    bundle, problem, _, _ = load_soft_mpcritic_bundle(path)
    vehicle = bundle.vehicle_model
    base = get_dynamics(vehicle)
    ensemble, dt = problem.ensemble, float(bundle.manifest["dt"])

    def derivative(x: Array, u: Array, weights) -> Array:
        return (ensemble.predict_mean(weights, x, u) - x) / dt

    return LearnedDynamics(
        name=name or f"{vehicle}_ensemble:{Path(path).name}",
        state_names=base.state_names,
        control_names=base.control_names,
        derivative=derivative,
        default_params=bundle.weights.dynamics,
        control_bounds=lambda _weights: base.control_bounds(base.default_params),
        angle_indices=base.angle_indices,
        position_indices=base.position_indices,
        heading_index=base.heading_index,
        speed_index=base.speed_index,
        ensemble=ensemble,
        dt=dt,
        vehicle_params=base.default_params,
    )
