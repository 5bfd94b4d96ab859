"""Deployment engine: build, compile and warm up a controller for a live control loop.

Shared by the ROS controller node and the ROS benchmark; imports no ROS. A
:class:`CompiledController` is immutable: a model swap or a shape change builds a new one in a
background thread and the control loop switches to it between two cycles. The track is an
argument of the compiled step (resampled to a fixed point count), so a new reference path never
recompiles, and tuning values are arguments, so live tuning never recompiles either.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.core.bundle import (
    LEARNED_CONTROLLERS,
    Bundle,
    BundleError,
    load_bundle,
    resolve_model,
)
from mppi_ros.core.controllers import Controller, TrackingTuning, make_controller
from mppi_ros.core.policy import observe
from mppi_ros.core.tracks import Track, TrackArrays, resample_track, track_from_centerline
from mppi_ros.sim.closed_loop import start_state

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
    """

    controller: str = "step_mppi"
    model_path: str = ""
    num_samples: int = 0
    horizon: int = 0
    control_period: float = 0.01
    reference_points: int = 2048


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One control step, as host NumPy values (materialised: safe to time)."""

    action: np.ndarray
    lateral_error: float
    finite: bool
    predicted: Any = None  # device array of predicted states (fetch only when needed)

    @property
    def predicted_states(self) -> np.ndarray | None:
        return None if self.predicted is None else np.asarray(self.predicted)


def uses_horizon(controller: str) -> bool:
    """Single-step learned controllers have no horizon."""
    return controller not in LEARNED_CONTROLLERS


def controller_overrides(name: str, num_samples: int | None, horizon: int | None) -> dict:
    """Static-config overrides for a controller; ``None`` (or 0) keeps its default."""
    overrides: dict[str, Any] = {}
    if num_samples and name != "dpc":
        overrides["num_samples"] = num_samples
    if horizon and uses_horizon(name):
        overrides["horizon"] = horizon
    return overrides


def load_matching_bundle(controller: str, model_path: str) -> Bundle:
    """The bundle for a learned ``controller`` (empty path: the shipped one), checked to hold
    that controller kind.

    Raises:
        BundleError: Missing, corrupt or of another controller kind (one sentence).
    """
    path = resolve_model(model_path or f"f1tenth_{controller}")
    bundle = load_bundle(path)
    if bundle.controller != controller:
        raise BundleError(
            f"model bundle {path} holds a {bundle.controller!r} model, but this node runs "
            f"controller {controller!r}"
        )
    return bundle


def build_controller(spec: EngineSpec) -> tuple[Controller, str]:
    """The controller of ``spec`` and a model id (bundle name + hash, or the registry name).

    Raises:
        BundleError: Missing, corrupt or mismatched bundle (one sentence naming the problem).
        ValueError: Unknown controller or bad override.
    """
    overrides = controller_overrides(spec.controller, spec.num_samples, spec.horizon)
    if spec.controller == "mppi":
        overrides["replan_period"] = spec.control_period
    if spec.controller in LEARNED_CONTROLLERS:
        bundle = load_matching_bundle(spec.controller, spec.model_path)
        return make_controller(str(bundle.path), **overrides), bundle.model_id
    if spec.model_path:
        raise ValueError(f"controller {spec.controller!r} takes no model_path")
    return make_controller(spec.controller, **overrides), spec.controller


def placeholder_track(points: int) -> Track:
    """A 60 m oval used to compile and warm up before the first reference arrives."""
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


def _policy_step(ctrl: Controller):
    """``(cstate, state, tuning, track, key) -> (packed, cstate, predicted)``.

    ``packed`` is ``[action..., lateral error, all finite]`` so that one device-to-host
    transfer per cycle suffices; ``key=None`` draws from the key inside ``cstate``.
    """

    def step(cstate: Any, state: Array, tuning: TrackingTuning, track: TrackArrays, key):
        obs, window = observe(ctrl, track, state, tuning, use_speed_profile=True)
        action, new_cstate, info = ctrl.step(cstate, obs, tuning, key)
        predicted = getattr(info, "predicted_states", None)
        finite = jnp.all(jnp.isfinite(action)).astype(action.dtype)
        packed = jnp.concatenate([action, window.lateral_error[None], finite[None]])
        return packed, new_cstate, predicted

    return step


@dataclasses.dataclass(frozen=True)
class CompiledController:
    """A built, compiled and warmed-up controller. Immutable: swapped as a whole."""

    spec: EngineSpec
    controller: Controller
    model_id: str
    default_tuning: TrackingTuning
    compile_seconds: float
    _step: Any = dataclasses.field(repr=False)

    def init_state(self, seed: int) -> Any:
        return self.controller.init(jax.random.PRNGKey(seed))

    def step(
        self,
        cstate: Any,
        state: np.ndarray,
        tuning: TrackingTuning,
        track: Any,
        key: Array | None = None,
    ) -> tuple[StepResult, Any]:
        """One control step; returns host values and the new controller state."""
        packed, cstate, predicted = self._step(
            cstate, jnp.asarray(state, jnp.float32), tuning, track, key
        )
        host = np.asarray(packed, np.float64)  # blocks until the result is materialised
        result = StepResult(
            action=host[:-2],
            predicted=predicted,
            lateral_error=float(host[-2]),
            finite=bool(host[-1] == 1.0),
        )
        return result, cstate


def compile_controller(spec: EngineSpec, warmup_steps: int = 3) -> CompiledController:
    """Builds ``spec``, jit-compiles its step for the fixed reference size and warms it up.

    Raises:
        BundleError / ValueError: As :func:`build_controller`.
    """
    start = time.perf_counter()
    ctrl, model_id = build_controller(spec)
    step = jax.jit(_policy_step(ctrl))
    tuning = ctrl.default_tuning()
    track = placeholder_track(spec.reference_points)
    arrays = track.arrays()
    x0 = start_state(ctrl.model, track, float(tuning.reference_speed))
    cstate = ctrl.init(jax.random.PRNGKey(0))
    for _ in range(max(warmup_steps, 1)):
        out = step(cstate, jnp.asarray(x0), tuning, arrays, None)
        jax.block_until_ready(out)
        cstate = out[1]
    return CompiledController(
        spec=spec,
        controller=ctrl,
        model_id=model_id,
        default_tuning=tuning,
        compile_seconds=time.perf_counter() - start,
        _step=step,
    )
