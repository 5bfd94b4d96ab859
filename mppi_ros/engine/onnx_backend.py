"""The ONNX backend: a bundle's exported ``controller.onnx`` on onnxruntime behind the
:class:`~mppi_ros.engine.jax_step.CompiledController` interface."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from mppi_ros.core.bundles import PARAMS, BundleError, read_manifest, resolve_model
from mppi_ros.core.catalog import (
    controller_names,
    controller_spec,
)
from mppi_ros.core.controllers import (
    TrackingTuning,
)
from mppi_ros.core.tracks import TrackArrays
from mppi_ros.engine.build import (
    EngineSpec,
    StepResult,
    build_controller,
    onnx_runs,
    placeholder_track,
)
from mppi_ros.engine.jax_step import CompiledController, state_predictor
from mppi_ros.export.onnx_runtime import TRACK_FIELDS, TRACK_PREFIX, TUNING_PREFIX
from mppi_ros.sim.closed_loop import start_state

Array = jax.Array


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


def load_onnx_controller(spec: EngineSpec, warmup_steps: int = 3) -> OnnxCompiledController:
    """The bundle's exported ``controller.onnx`` behind the :class:`CompiledController`
    interface.

    Raises:
        BundleError: Invalid bundle, a classic controller, no (or a tampered) export, or an
            export whose sample count / reference size differs from ``spec``.
    """
    from mppi_ros.export.onnx_runtime import OnnxBundleError, OnnxPolicy

    start = time.perf_counter()
    cspec = controller_spec(spec.controller)
    if not onnx_runs(cspec):
        names = ", ".join(controller_names(onnx_runs))
        raise BundleError(
            f"backend 'onnx' runs exported learned controllers ({names}), not {spec.controller!r}"
        )
    ctrl, model_id = build_controller(spec)
    try:
        # One intra-op thread: the step runs on the caller's (control) thread. onnxruntime's
        # pool threads would not get its real-time priority, and the exported step is
        # thousands of small nodes that a pool does not speed up (docs/onnx.md).
        policy = OnnxPolicy(
            resolve_model(spec.model_path or cspec.default_model),
            threads=1,
            num_samples=ctrl.config.num_samples if cspec.samples else 0,
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
    predict = state_predictor(ctrl.model, x0, compiled.default_tuning.model_params)
    compiled = dataclasses.replace(compiled, _predict=predict)
    cstate = compiled.init_state(0)
    for _ in range(max(warmup_steps, 1)):
        compiled.step(cstate, x0, compiled.default_tuning, track.arrays())
    return dataclasses.replace(compiled, compile_seconds=time.perf_counter() - start)
