"""Deployment engine: build, compile and warm up a controller for a live control loop.

Shared by the ROS controller node and the ROS benchmark; imports no ROS. A
:class:`CompiledController` is immutable: a model swap or a shape change builds a new one in a
background thread and the control loop switches to it between two cycles. The track is an
argument of the compiled step (resampled to a fixed point count), so a new reference path never
recompiles, and tuning values are arguments, so live tuning never recompiles either. Weights are
arguments too: controllers that differ only in their weights share one compiled step
(:func:`shared_step`), so swapping to a model of the same architecture compiles and loads
nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mppi_ros.core.bundle import (
    LEARNED_CONTROLLERS,
    MODEL_CONTROLLERS,
    PARAMS,
    Bundle,
    BundleError,
    CriticBundle,
    load_vehicle_bundle,
    read_manifest,
    resolve_model,
)
from mppi_ros.core.controllers import (
    Controller,
    TrackingTuning,
    make_controller,
    with_replan_period,
)
from mppi_ros.core.policy import info_to_world, observe
from mppi_ros.core.tracks import Track, TrackArrays, resample_track, track_from_centerline
from mppi_ros.export.onnx_runtime import TRACK_FIELDS, TRACK_PREFIX, TUNING_PREFIX
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
        backend: ``jax`` (jit-compiled XLA) or ``onnx`` (the bundle's ``controller.onnx`` on
            onnxruntime, CUDA when available).
    """

    controller: str = "step_mppi"
    model_path: str = ""
    num_samples: int = 0
    horizon: int = 0
    control_period: float = 0.01
    reference_points: int = 2048
    backend: str = "jax"


BACKENDS = ("jax", "onnx")


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
    if num_samples and name not in ("dpc", "pure_pursuit"):  # those sample nothing
        overrides["num_samples"] = num_samples
    if horizon and uses_horizon(name):
        overrides["horizon"] = horizon
    return overrides


def load_matching_bundle(controller: str, model_path: str) -> Bundle | CriticBundle:
    """The bundle for a learned ``controller`` (empty path: the shipped one), checked to hold
    that controller kind.

    Raises:
        BundleError: Missing, corrupt or of another controller kind (one sentence).
    """
    path = resolve_model(model_path or f"f1tenth_{controller}")
    bundle = load_vehicle_bundle(path)
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
    if spec.controller in MODEL_CONTROLLERS:
        bundle = load_matching_bundle(spec.controller, spec.model_path)
        ctrl, model_id = make_controller(str(bundle.path), **overrides), bundle.model_id
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


def policy_step(ctrl: Controller, given_noise: bool = False):
    """``(cstate, state, tuning, track, key) -> (packed, cstate, predicted)``.

    ``packed`` is ``[action..., lateral error, all finite]`` so that one device-to-host
    transfer per cycle suffices; ``key=None`` draws from the key inside ``cstate``. With
    ``given_noise`` the last argument is the step's noise (``ctrl.noise_shape``) instead of a
    key: the form ONNX export traces, so both backends run the same expression.
    """

    def step(cstate: Any, state: Array, tuning: TrackingTuning, track: TrackArrays, key):
        obs, window = observe(ctrl, track, state, tuning)
        if given_noise:
            action, new_cstate, info = ctrl.step_with_noise(cstate, obs, tuning, key)
        else:
            action, new_cstate, info = ctrl.step(cstate, obs, tuning, key)
        predicted = getattr(info_to_world(ctrl, info, window), "predicted_states", None)
        finite = jnp.all(jnp.isfinite(action)).astype(action.dtype)
        packed = jnp.concatenate([action, window.lateral_error[None], finite[None]])
        return packed, new_cstate, predicted

    return step


def jit_without_passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(fn)``, except that outputs which only pass an input through are taken from
    the inputs on the host instead of being returned by the compiled computation.

    XLA copies every pass-through output buffer on every call: for the learned controllers
    the network weights travel in the controller state, so that was a ~1 MB copy and twenty
    buffer allocations per control cycle. Which outputs pass through is read off the trace
    (an output leaf that is the very tracer of an input leaf), once per input structure.
    """
    passthrough: dict[Any, tuple[Any, list[int | None]]] = {}

    def changed_outputs(*args: Any) -> list[Any]:
        in_leaves, in_tree = jax.tree.flatten(args)
        out_leaves, out_tree = jax.tree.flatten(fn(*args))
        position = {id(leaf): i for i, leaf in enumerate(in_leaves)}
        sources = [position.get(id(leaf)) for leaf in out_leaves]
        passthrough[in_tree] = (out_tree, sources)
        return [leaf for leaf, i in zip(out_leaves, sources, strict=True) if i is None]

    compiled = jax.jit(changed_outputs)

    def call(*args: Any) -> Any:
        computed = iter(compiled(*args))
        in_leaves, in_tree = jax.tree.flatten(args)
        out_tree, sources = passthrough[in_tree]
        leaves = [next(computed) if i is None else in_leaves[i] for i in sources]
        return jax.tree.unflatten(out_tree, leaves)

    return call


@struct.dataclass
class PipelinedState:
    """Controller state of the JAX engine for controllers that take their noise as an input.

    ``noise`` is the next step's sampling noise, or None until :meth:`CompiledController.prepare`
    draws it. The control loop prepares after publishing a command, so the draw runs in the
    idle rest of the period instead of on the tick-to-command path; a step on an unprepared
    state draws first. The same key chain as ``ctrl.step(..., key=None)``: split, draw from
    the subkey.
    """

    ctrl: Any
    key: jax.Array
    noise: jax.Array


def noise_drawer(ctrl: Controller) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]] | None:
    """Jitted ``key -> (noise, next key)`` for ``ctrl``'s ``step_with_noise``; ``None`` when
    it draws no noise (DPC) or cannot take it as an input. Shared by every controller that
    draws noise of the same shape."""
    shape = tuple(getattr(ctrl, "noise_shape", ()))
    if not shape or not hasattr(ctrl, "step_with_noise"):
        return None

    def draw(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        next_key, key = jax.random.split(key)
        return jax.random.normal(key, shape), next_key

    return _shared(("noise", shape), lambda: jax.jit(draw))


# Compiled functions by what they trace to. Weak values: a compiled step lives while a
# CompiledController holds it, then its executable is freed with it.
_SHARED: weakref.WeakValueDictionary[Any, Callable[..., Any]] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def _shared(key: Any, make: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    with _SHARED_LOCK:
        fn = _SHARED.get(key)
        if fn is None:
            fn = _SHARED[key] = make()
        return fn


def without_weights(ctrl: Controller) -> Controller:
    """``ctrl`` minus the weights it was built with: they only seed ``ctrl.init`` and then
    travel in the controller state, so a step traced from this cannot bake them in."""
    fields = dataclasses.fields(ctrl) if dataclasses.is_dataclass(ctrl) else ()
    if any(f.name == "weights" for f in fields):
        return dataclasses.replace(ctrl, weights=None)
    return ctrl


def step_identity(ctrl: Controller, given_noise: bool) -> Any | None:
    """What ``ctrl``'s compiled step depends on: the controller without its weights (config,
    dynamics, ...) plus the weights' tree structure, shapes and dtypes. None when ``ctrl`` is
    not hashable (its step is then never shared)."""
    weights = getattr(ctrl, "weights", None)
    leaves, tree = jax.tree.flatten(weights)
    shapes = tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in leaves)
    identity = (type(ctrl), without_weights(ctrl), given_noise, tree, shapes)
    try:
        hash(identity)
    except TypeError:
        return None
    return identity


def shared_step(ctrl: Controller, given_noise: bool) -> Callable[..., Any]:
    """The jitted :func:`policy_step` of ``ctrl``, the same function object (and so the same
    XLA executable) for every live controller with the same :func:`step_identity`.

    A swap to a bundle of the same architecture (or a copy of the running one) then takes
    no compile and no second executable (~20 MB and ~20 ms of GIL-held teardown each for a
    Step-MPPI step).
    """
    make = lambda: jit_without_passthrough(policy_step(without_weights(ctrl), given_noise))
    identity = step_identity(ctrl, given_noise)
    return make() if identity is None else _shared(("step", identity), make)


# Folded into the seed for the engine's noise key (the controller's own key stays as it was).
_NOISE_STREAM = 0x6E6F6973


@dataclasses.dataclass(frozen=True)
class CompiledController:
    """A built, compiled and warmed-up controller. Immutable: swapped as a whole."""

    spec: EngineSpec
    controller: Controller
    model_id: str
    default_tuning: TrackingTuning
    compile_seconds: float
    _step: Any = dataclasses.field(repr=False)
    _draw: Any = dataclasses.field(default=None, repr=False)  # see PipelinedState

    def init_state(self, seed: int) -> Any:
        key = jax.random.PRNGKey(seed)
        cstate = self.controller.init(key)
        if self._draw is None:
            return cstate
        return self.prepare(
            PipelinedState(ctrl=cstate, key=jax.random.fold_in(key, _NOISE_STREAM), noise=None)
        )

    def step(
        self,
        cstate: Any,
        state: np.ndarray,
        tuning: TrackingTuning,
        track: Any,
        key: Array | None = None,
    ) -> tuple[StepResult, Any]:
        """One control step; returns host values and the new controller state.

        With an explicit ``key`` the step's noise comes from it (as ``ctrl.step`` with that
        key), otherwise from the state.
        """
        state = np.asarray(state, np.float32)  # a host array goes straight to the call
        if self._draw is None:
            packed, cstate, predicted = self._step(cstate, state, tuning, track, key)
            return _host_result(packed, predicted), cstate
        if key is not None:
            noise = self._draw_with(key)
        else:
            cstate = self.prepare(cstate)
            noise = cstate.noise
        packed, ctrl_state, predicted = self._step(cstate.ctrl, state, tuning, track, noise)
        # A prepared noise that an explicit key overrode is dropped: its key was consumed.
        return _host_result(packed, predicted), PipelinedState(ctrl_state, cstate.key, None)

    def shares_step(self, other: CompiledController) -> bool:
        """Whether ``other`` runs this controller's compiled step (:func:`shared_step`): then
        dropping either frees only its weights, no executable."""
        return self._step is other._step

    def prepare(self, cstate: Any) -> Any:
        """``cstate`` with the next step's noise drawn (see :class:`PipelinedState`); a no-op
        for controllers that draw none or a state already prepared."""
        if self._draw is None or cstate.noise is not None:
            return cstate
        noise, next_key = self._draw(cstate.key)
        return cstate.replace(key=next_key, noise=noise)

    def _draw_with(self, key: Array) -> Array:
        """The noise ``ctrl.step`` draws from an explicit ``key``."""
        return _normal(key, tuple(self.controller.noise_shape))


_normal = jax.jit(jax.random.normal, static_argnums=1)


def _host_result(packed: Array, predicted: Any) -> StepResult:
    host = np.asarray(packed, np.float64)  # blocks until the result is materialised
    return StepResult(
        action=host[:-2],
        predicted=predicted,
        lateral_error=float(host[-2]),
        finite=bool(host[-1] == 1.0),
    )


def compile_controller(spec: EngineSpec, warmup_steps: int = 3) -> CompiledController:
    """Builds ``spec``, jit-compiles its step for the fixed reference size and warms it up
    (or, for ``backend="onnx"``, loads the exported graph: :func:`load_onnx_controller`).

    Raises:
        BundleError / ValueError: As :func:`build_controller`.
    """
    if spec.backend not in BACKENDS:
        raise ValueError(f"unknown backend {spec.backend!r}; valid: {', '.join(BACKENDS)}")
    if spec.backend == "onnx":
        return load_onnx_controller(spec, warmup_steps)
    start = time.perf_counter()
    ctrl, model_id = build_controller(spec)
    draw = noise_drawer(ctrl)
    step = shared_step(ctrl, given_noise=draw is not None)
    track = placeholder_track(spec.reference_points)
    compiled = CompiledController(
        spec=spec,
        controller=ctrl,
        model_id=model_id,
        default_tuning=ctrl.default_tuning(),
        compile_seconds=0.0,
        _step=step,
        _draw=draw,
    )
    x0 = start_state(ctrl.model, track, float(compiled.default_tuning.reference_speed))
    cstate = compiled.init_state(0)
    arrays = track.arrays()
    for _ in range(max(warmup_steps, 1)):
        _, cstate = compiled.step(cstate, x0, compiled.default_tuning, arrays)
    jax.block_until_ready(cstate)
    return dataclasses.replace(compiled, compile_seconds=time.perf_counter() - start)


def tuning_input_names(tuning: TrackingTuning) -> list[str]:
    """ONNX input names of the tuning leaves, in ``jax.tree.leaves`` order
    (``tuning.temperature``, ``tuning.model_params.mu``, ...)."""
    return [
        TUNING_PREFIX + ".".join(str(getattr(k, "name", k)) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(tuning)[0]
    ]


class _LastFeeds:
    """Host feeds of the last tuning / track object seen (the node swaps whole objects, so
    identity is enough to know they are unchanged)."""

    def __init__(self, convert) -> None:
        self._convert = convert
        self._source: Any = None
        self._feeds: dict[str, np.ndarray] = {}

    def __call__(self, source: Any) -> dict[str, np.ndarray]:
        if source is not self._source:
            self._feeds, self._source = self._convert(source), source
        return self._feeds


@dataclasses.dataclass(frozen=True)
class OnnxCompiledController(CompiledController):
    """:class:`CompiledController` on onnxruntime: the controller state is the NumPy
    generator that draws the sampling noise; ``key`` is not used."""

    @property
    def provider(self) -> str:
        """The onnxruntime execution provider in use."""
        return self._step[0].provider

    def init_state(self, seed: int) -> np.random.Generator:
        return np.random.default_rng(seed)

    def step(
        self,
        cstate: np.random.Generator,
        state: np.ndarray,
        tuning: TrackingTuning,
        track: Any,
        key: Array | None = None,
    ) -> tuple[StepResult, np.random.Generator]:
        policy, tuning_feeds, track_feeds = self._step
        feeds = {**tuning_feeds(tuning), **track_feeds(track)}
        feeds["state"] = np.asarray(state, np.float32)
        noise = policy.draw_noise(cstate)
        if noise is not None:
            feeds["noise"] = noise
        action, info = policy.run(feeds)
        result = StepResult(
            action=action,
            predicted=info.predicted_states,
            lateral_error=info.lateral_error,
            finite=info.finite,
        )
        return result, cstate


def engine_policy_step(compiled: CompiledController, track: Track):
    """``compiled`` (either backend) as a ``make_policy_step``-shaped function for
    :func:`mppi_ros.sim.closed_loop.run_closed_loop` (pass ``cstate=compiled.init_state(..)``);
    the track is resampled as the node does."""
    arrays = reference_track(track, compiled.spec.reference_points, timed=False).arrays()

    def step(cstate: Any, state: Array, tuning: TrackingTuning, key: Array):
        result, cstate = compiled.step(cstate, np.asarray(state), tuning, arrays, key)
        return result.action, cstate, None, None

    return step


def load_onnx_controller(spec: EngineSpec, warmup_steps: int = 3) -> OnnxCompiledController:
    """The bundle's exported ``controller.onnx`` behind the :class:`CompiledController`
    interface.

    Raises:
        BundleError: Invalid bundle, a classic controller, no (or a tampered) export, or an
            export whose sample count / reference size differs from ``spec``.
    """
    from mppi_ros.export.onnx_runtime import OnnxBundleError, OnnxPolicy

    start = time.perf_counter()
    if spec.controller not in LEARNED_CONTROLLERS:
        raise BundleError(
            f"backend 'onnx' runs exported learned controllers ({', '.join(LEARNED_CONTROLLERS)})"
            f", not {spec.controller!r}"
        )
    ctrl, model_id = build_controller(spec)
    try:
        policy = OnnxPolicy(
            resolve_model(spec.model_path or f"f1tenth_{spec.controller}"),
            num_samples=getattr(ctrl.config, "num_samples", 0),
        )
    except OnnxBundleError as err:
        raise BundleError(str(err)) from None
    if spec.reference_points != policy.reference_points:
        raise BundleError(
            f"{policy.bundle}/controller.onnx was exported for reference_points "
            f"{policy.reference_points}, not {spec.reference_points}"
        )
    params_sha = read_manifest(policy.bundle)["files"][PARAMS]["sha256"]
    if policy.spec.get("params_sha256") != params_sha:
        raise BundleError(
            f"{policy.bundle}/controller.onnx was exported from other weights "
            f"({policy.spec.get('model_id')}, bundle is {model_id}); re-export it"
        )
    tuning_names = tuning_input_names(ctrl.default_tuning())

    def tuning_feeds(tuning: TrackingTuning) -> dict[str, np.ndarray]:
        leaves = jax.tree.leaves(tuning)
        return {n: np.asarray(v, np.float32) for n, v in zip(tuning_names, leaves, strict=True)}

    def track_feeds(track: TrackArrays) -> dict[str, np.ndarray]:
        return {TRACK_PREFIX + f: np.asarray(getattr(track, f), np.float32) for f in TRACK_FIELDS}

    compiled = OnnxCompiledController(
        spec=spec,
        controller=ctrl,
        model_id=model_id,
        default_tuning=ctrl.default_tuning(),
        compile_seconds=0.0,
        _step=(policy, _LastFeeds(tuning_feeds), _LastFeeds(track_feeds)),
    )
    track = placeholder_track(spec.reference_points)
    x0 = start_state(ctrl.model, track, float(compiled.default_tuning.reference_speed))
    cstate = compiled.init_state(0)
    for _ in range(max(warmup_steps, 1)):
        compiled.step(cstate, x0, compiled.default_tuning, track.arrays())
    return dataclasses.replace(compiled, compile_seconds=time.perf_counter() - start)
