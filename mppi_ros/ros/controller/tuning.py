"""The mapping between the node's tuning parameters and the controller's tuning pytree
(no ROS)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mppi_ros.core.controllers import TrackingTuning, update_tuning
from mppi_ros.core.dynamics import DynamicsModel

# ROS parameter name -> what it sets in the tuning pytree (vector lengths checked there).
TUNING_PARAMETERS = (
    "temperature",
    "noise_std",
    "q_weights",
    "r_weights",
    "border_weight",
    "border_margin",
    "reference_speed",
    "speed_scale",
    "max_speed",
)


def tuning_values(
    tuning: TrackingTuning, model: DynamicsModel, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The parameter values that describe ``tuning`` (used to show a model's defaults);
    ``extra``: the controller's own tuning fields (:class:`TuningParameter` names)."""
    values: dict[str, Any] = {
        "temperature": float(tuning.temperature),
        "noise_std": [float(v) for v in np.asarray(tuning.noise_std)],
        "q_weights": [float(v) for v in np.asarray(tuning.q_weights)],
        "r_weights": [float(v) for v in np.asarray(tuning.r_weights)],
        "border_weight": float(tuning.border_weight),
        "border_margin": float(tuning.border_margin),
        "reference_speed": float(tuning.reference_speed),
        "speed_scale": float(tuning.speed_scale),
    }
    if model.speed_index is not None:
        values["max_speed"] = float(np.asarray(tuning.state_max)[model.speed_index])
    for name in extra:
        values[name] = np.asarray(getattr(tuning, name)).item()
    return values


def apply_tuning(
    base: TrackingTuning,
    model: DynamicsModel,
    values: Mapping[str, Any],
    extra: tuple[str, ...] = (),
) -> TrackingTuning:
    """``base`` with the given parameter values applied (shapes and dtypes kept); ``extra``
    names the controller's own tuning fields, set as they are (the tuning checks them).

    ``noise_std`` of length 1 is broadcast to every control channel; ``max_speed`` is the
    upper speed limit of the state box (never above the vehicle's own ``v_max``).

    Raises:
        ValueError: One sentence naming the parameter and what is wrong.
    """
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name in extra:
            changes[name] = value
            continue
        if name not in TUNING_PARAMETERS:
            raise ValueError(f"{name} is not a tuning parameter")
        if name == "max_speed":
            if model.speed_index is None:
                raise ValueError(f"max_speed does not apply to the {model.name} model")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"max_speed must be finite and > 0, got {value}")
            state_max = np.array(base.state_max)
            physical = model.physical_params(base.model_params)
            limit = float(getattr(physical, "v_max", math.inf))
            state_max[model.speed_index] = min(float(value), limit)
            changes["state_max"] = state_max
            continue
        array = np.asarray(value, np.float32)
        expected = np.shape(getattr(base, name))
        if name == "noise_std" and array.shape == (1,):
            array = np.broadcast_to(array, expected)
        if array.shape != expected:
            raise ValueError(
                f"{name} needs {int(np.prod(expected)) if expected else 1} value(s) for the "
                f"{model.name} model, got {array.size}"
            )
        changes[name] = array
    if "reference_speed" in changes and not changes["reference_speed"] > 0:
        raise ValueError(f"reference_speed must be > 0, got {float(changes['reference_speed'])}")
    # The node follows the reference path's speed profile (timed pose stamps), scaled by
    # speed_scale and capped at reference_speed; an untimed path carries a profile far above
    # any cap, so there the reference advances at reference_speed.
    cap = changes.get("reference_speed", base.reference_speed)
    changes.update(follow_profile=1.0, max_speed=cap)
    return update_tuning(base, **changes)
