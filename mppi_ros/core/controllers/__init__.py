"""The controllers (algorithms only; :mod:`mppi_ros.core.catalog` registers them and builds
them from names and bundles).

Every controller follows the functional interface::

    ctrl = make_controller("mppi", num_samples=1024, horizon=40)  # mppi_ros.core.catalog
    cstate = ctrl.init(key)
    action, cstate, info = ctrl.step(cstate, obs, tuning, key)

The caller decides where to jit (``jax.jit(ctrl.step)``); tuning values are arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mppi_ros.core.controllers.base import (
    CANDIDATE_COUNT,
    Candidates,
    ConfigParameter,
    Controller,
    Observation,
    Replanner,
    SampledController,
    TrackingTuning,
    TuningParameter,
    make_tuning,
    update_tuning,
)
from mppi_ros.core.controllers.mppi import MPPI, MPPIConfig
from mppi_ros.core.controllers.pure_pursuit import PurePursuit, PurePursuitConfig
from mppi_ros.core.controllers.step_mppi import DPC, StepMPPI, StepMPPIConfig


def with_replan_period(ctrl: Controller, period: float) -> Controller:
    """``ctrl`` called every ``period`` seconds: a warm-started planner (MPPI, softMPCritic)
    shifts its plan by ``period / dt`` steps per call; a single-step controller has no plan
    and comes back unchanged."""
    return ctrl.with_replan_period(period) if isinstance(ctrl, Replanner) else ctrl


def config_with(config_cls: type, **overrides: Any) -> Any:
    """Instantiates a frozen config dataclass, rejecting unknown fields with their list."""
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(overrides) - valid
    if unknown:
        raise ValueError(
            f"unknown {config_cls.__name__} field(s) {sorted(unknown)}; valid: {sorted(valid)}"
        )
    return config_cls(**overrides)


__all__ = [
    "CANDIDATE_COUNT",
    "DPC",
    "MPPI",
    "Candidates",
    "ConfigParameter",
    "Controller",
    "MPPIConfig",
    "Observation",
    "PurePursuit",
    "PurePursuitConfig",
    "Replanner",
    "SampledController",
    "StepMPPI",
    "StepMPPIConfig",
    "TrackingTuning",
    "TuningParameter",
    "config_with",
    "make_tuning",
    "update_tuning",
    "with_replan_period",
]
