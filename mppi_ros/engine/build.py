"""What a compiled controller is built from (:class:`EngineSpec`), the controller it builds
and the fixed-size reference track it compiles for."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import numpy as np

from mppi_ros.core.catalog import (
    ControllerSpec,
    controller_spec,
    load_matching_bundle,
    make_controller,
)
from mppi_ros.core.controllers import (
    Controller,
    with_replan_period,
)
from mppi_ros.core.tracks import Track, resample_track, track_from_centerline

Array = jax.Array

# Reference speed written into untimed paths: large, so ``min(reference_speed, profile)`` is
# the live ``reference_speed``.
UNTIMED_SPEED = 1.0e3


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """What a compiled controller is built from (any change builds a new one).

    Attributes:
        controller: Registry name (``step_mppi``, ``dpc``, ``mppi``, ...).
        model_path: Bundle folder or model name for learned controllers; empty: the shipped
            ``models/f1tenth_<controller>`` bundle.
        num_samples: K; 0 keeps the controller's (or bundle's) default.
        horizon: H for horizon-based controllers; 0 keeps the default.
        control_period: Seconds between control calls (MPPI advances its warm start by it).
        reference_points: Point count the reference is resampled to (fixes compiled shapes).
        backend: ``jax`` (jit-compiled XLA) or ``onnx`` (the bundle's ``controller.onnx`` on
            onnxruntime, CUDA when available).
        config: ``(field, value)`` pairs of the controller's ``config_parameters`` (e.g.
            EM-MPPI's ``family``); bundle-less controllers only.
    """

    controller: str = "step_mppi"
    model_path: str = ""
    num_samples: int = 0
    horizon: int = 0
    control_period: float = 0.01
    reference_points: int = 2048
    backend: str = "jax"
    config: tuple[tuple[str, Any], ...] = ()


BACKENDS = ("jax", "onnx")


def onnx_runs(spec: ControllerSpec) -> bool:
    """The ``onnx`` backend runs ``spec``'s controller: learned and exported with its bundle."""
    return spec.learned and spec.exportable


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One control step, as host NumPy values (materialised: safe to time)."""

    action: np.ndarray
    lateral_error: float
    finite: bool
    predicted: Any = None  # device array of predicted states (fetch only when needed)
    candidates: Any = None  # device Candidates (JAX backend, sampled controllers), likewise

    @property
    def predicted_states(self) -> np.ndarray | None:
        return None if self.predicted is None else np.asarray(self.predicted)


def build_controller(spec: EngineSpec) -> tuple[Controller, str]:
    """The controller of ``spec`` and a model id (bundle name + hash, or the registry name).

    Raises:
        BundleError: Missing, corrupt or mismatched bundle (one sentence naming the problem).
        ValueError: Unknown controller or bad override.
    """
    cspec = controller_spec(spec.controller)
    overrides = cspec.overrides(spec.num_samples, spec.horizon)
    choosable = {p.name for p in cspec.config_parameters}
    unknown = {name for name, _ in spec.config} - choosable
    if unknown:
        raise ValueError(
            f"{spec.controller} has no config parameter {sorted(unknown)}; "
            f"valid: {sorted(choosable) or 'none'}"
        )
    overrides |= dict(spec.config)
    if cspec.learned:
        bundle = load_matching_bundle(spec.controller, spec.model_path)
        ctrl, model_id = cspec.codec.controller(bundle, **overrides), bundle.model_id
    elif spec.model_path:
        raise ValueError(f"controller {spec.controller!r} takes no model_path")
    else:
        ctrl, model_id = make_controller(spec.controller, **overrides), spec.controller
    return with_replan_period(ctrl, spec.control_period), model_id


@functools.lru_cache(maxsize=8)
def placeholder_track(points: int) -> Track:
    """A 60 m oval used to compile and warm up before the first reference arrives (built once
    per point count: every background build warms up on it)."""
    t = np.linspace(0.0, 2.0 * math.pi, 240, endpoint=False)
    center = np.stack([15.0 * np.cos(t), 7.0 * np.sin(t)], axis=1)
    track = track_from_centerline("placeholder", center, np.full(240, 1.1), np.full(240, 1.1))
    return reference_track(track, points, timed=False)


def reference_track(track: Track, points: int, timed: bool) -> Track:
    """``track`` resampled to ``points`` (no-op when it already has them).

    Untimed tracks get :data:`UNTIMED_SPEED` so that the live reference speed applies.
    """
    if len(track.xy) != points:
        track = resample_track(track, points)
    if not timed:
        track = dataclasses.replace(track, speed=np.full(len(track.xy), UNTIMED_SPEED))
    return track
