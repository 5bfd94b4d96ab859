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

from typing import Any

import jax
import numpy as np

from mppi_ros.core.controllers import TrackingTuning
from mppi_ros.core.tracks import Track
from mppi_ros.engine.build import (
    BACKENDS,
    UNTIMED_SPEED,
    EngineSpec,
    StepResult,
    build_controller,
    onnx_runs,
    placeholder_track,
    reference_track,
)
from mppi_ros.engine.jax_step import (
    CompiledController,
    PipelinedState,
    compile_jax_controller,
    jit_without_passthrough,
    noise_drawer,
    policy_step,
    shared_step,
    step_identity,
    without_weights,
)
from mppi_ros.engine.onnx_backend import (
    OnnxCompiledController,
    load_onnx_controller,
    tuning_input_names,
)

Array = jax.Array


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
    return compile_jax_controller(spec, warmup_steps)


def engine_policy_step(compiled: CompiledController, track: Track):
    """``compiled`` (either backend) as a ``make_policy_step``-shaped function for
    :func:`mppi_ros.sim.closed_loop.run_closed_loop` (pass ``cstate=compiled.init_state(..)``);
    the track is resampled as the node does."""
    arrays = reference_track(track, compiled.spec.reference_points, timed=False).arrays()

    def step(cstate: Any, state: Array, tuning: TrackingTuning, key: Array):
        result, cstate = compiled.step(cstate, np.asarray(state), tuning, arrays, key)
        return result.action, cstate, None, None

    return step


__all__ = [
    "BACKENDS",
    "UNTIMED_SPEED",
    "CompiledController",
    "EngineSpec",
    "OnnxCompiledController",
    "PipelinedState",
    "StepResult",
    "build_controller",
    "compile_controller",
    "engine_policy_step",
    "jit_without_passthrough",
    "load_onnx_controller",
    "noise_drawer",
    "onnx_runs",
    "placeholder_track",
    "policy_step",
    "reference_track",
    "shared_step",
    "step_identity",
    "tuning_input_names",
    "without_weights",
]
