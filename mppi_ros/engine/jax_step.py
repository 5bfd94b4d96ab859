"""The JAX backend: the traced control step, shared between controllers that differ only
in their weights, and its compiled, warmed-up form."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mppi_ros.core.controllers import (
    Controller,
    SampledController,
    TrackingTuning,
)
from mppi_ros.core.dynamics import DynamicsModel
from mppi_ros.core.policy import info_to_world, observe
from mppi_ros.core.prediction import PREDICTION_SLOTS, predict_state
from mppi_ros.core.tracks import TrackArrays
from mppi_ros.engine.build import EngineSpec, StepResult, build_controller, placeholder_track
from mppi_ros.sim.closed_loop import start_state

Array = jax.Array


def policy_step(ctrl: Controller, given_noise: bool = False):
    """``(cstate, state, tuning, track, key) -> (packed, cstate, (predicted, candidates))``.

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
        info = info_to_world(ctrl, info, window)
        predicted = getattr(info, "predicted_states", None)
        candidates = getattr(info, "candidates", None)
        finite = jnp.all(jnp.isfinite(action)).astype(action.dtype)
        packed = jnp.concatenate([action, window.lateral_error[None], finite[None]])
        return packed, new_cstate, (predicted, candidates)

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
    shape = tuple(ctrl.noise_shape) if isinstance(ctrl, SampledController) else ()
    if not shape:
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
    _predict: Any = dataclasses.field(default=None, repr=False)  # see state_predictor

    def predict_state(
        self,
        state: np.ndarray,
        controls: np.ndarray,
        durations: np.ndarray,
        tuning: TrackingTuning,
    ) -> np.ndarray:
        """``state`` driven forward by the controller's model over ``durations`` holding
        ``controls`` (latency compensation, :mod:`mppi_ros.core.prediction`)."""
        state = np.asarray(state, np.float32)
        if not np.any(durations > 0):
            return state
        return np.asarray(self._predict(state, controls, durations, tuning.model_params))

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
            packed, cstate, extras = self._step(cstate, state, tuning, track, key)
            return _host_result(packed, *extras), cstate
        if key is not None:
            noise = self._draw_with(key)
        else:
            cstate = self.prepare(cstate)
            noise = cstate.noise
        packed, ctrl_state, extras = self._step(cstate.ctrl, state, tuning, track, noise)
        # A prepared noise that an explicit key overrode is dropped: its key was consumed.
        return _host_result(packed, *extras), PipelinedState(ctrl_state, cstate.key, None)

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


def _host_result(packed: Array, predicted: Any, candidates: Any) -> StepResult:
    host = np.asarray(packed, np.float64)  # blocks until the result is materialised
    return StepResult(
        action=host[:-2],
        predicted=predicted,
        candidates=candidates,
        lateral_error=float(host[-2]),
        finite=bool(host[-1] == 1.0),
    )


def state_predictor(model: DynamicsModel, x0: np.ndarray, params: Any) -> Any:
    """The jit-compiled :func:`predict_state` of ``model``, compiled and run once."""
    predict = jax.jit(functools.partial(predict_state, model))
    controls = np.zeros((PREDICTION_SLOTS, model.control_dim), np.float32)
    durations = np.full(PREDICTION_SLOTS, 1e-3, np.float32)
    jax.block_until_ready(predict(np.asarray(x0, np.float32), controls, durations, params))
    return predict


def compile_jax_controller(spec: EngineSpec, warmup_steps: int = 3) -> CompiledController:
    """Builds ``spec``, jit-compiles its step for the fixed reference size and warms it up.

    Raises:
        BundleError / ValueError: As :func:`build_controller`.
    """
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
    predict = state_predictor(ctrl.model, x0, compiled.default_tuning.model_params)
    compiled = dataclasses.replace(compiled, _predict=predict)
    cstate = compiled.init_state(0)
    arrays = track.arrays()
    for _ in range(max(warmup_steps, 1)):
        _, cstate = compiled.step(cstate, x0, compiled.default_tuning, arrays)
    jax.block_until_ready(cstate)
    return dataclasses.replace(compiled, compile_seconds=time.perf_counter() - start)
