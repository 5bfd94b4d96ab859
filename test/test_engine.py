"""The deployment engine: preparing the next noise off the control path changes nothing
about what the controller computes, and models of one architecture share a compiled step."""

from __future__ import annotations

import gc

import jax
import numpy as np
import pytest

from mppi_ros.core.bundles import save_bundle
from mppi_ros.core.catalog import make_controller
from mppi_ros.core.controllers.step_mppi import StepMPPIConfig
from mppi_ros.engine import (
    EngineSpec,
    compile_controller,
    jax_step,
    jit_without_passthrough,
    placeholder_track,
    policy_step,
    step_identity,
)
from mppi_ros.realtime.jax_runtime import jax_cache_evictions, release_jax_caches
from mppi_ros.sim.closed_loop import start_state


@pytest.fixture(scope="module")
def small():
    spec = EngineSpec(controller="step_mppi", num_samples=32, reference_points=64)
    compiled = compile_controller(spec, warmup_steps=1)
    track = placeholder_track(spec.reference_points)
    x0 = np.asarray(start_state(compiled.controller.model, track, 5.0))
    return compiled, track.arrays(), x0


def _actions(compiled, arrays, x0, steps: int, prepare: bool) -> np.ndarray:
    cstate, actions = compiled.init_state(7), []
    for i in range(steps):
        result, cstate = compiled.step(cstate, x0 + 0.01 * i, compiled.default_tuning, arrays)
        actions.append(result.action)
        assert cstate.noise is None  # a step consumes the prepared noise
        if prepare:
            cstate = compiled.prepare(cstate)
    return np.array(actions)


def test_prepared_and_unprepared_steps_draw_the_same_noise(small):
    compiled, arrays, x0 = small
    unprepared = _actions(compiled, arrays, x0, 4, prepare=False)
    prepared = _actions(compiled, arrays, x0, 4, prepare=True)
    np.testing.assert_array_equal(prepared, unprepared)
    # The noise does change from step to step (same state, different samples).
    same_state = [
        compiled.step(cstate, x0, compiled.default_tuning, arrays)[0].action
        for cstate in (compiled.init_state(7), compiled.init_state(8))
    ]
    assert not np.array_equal(*same_state)


def test_prepare_is_idempotent_and_an_explicit_key_overrides_it(small):
    compiled, arrays, x0 = small
    cstate = compiled.prepare(compiled.init_state(3))
    again = compiled.prepare(cstate)
    assert again.noise is cstate.noise and again.key is cstate.key
    key = jax.random.PRNGKey(11)
    with_key = [
        compiled.step(s, x0, compiled.default_tuning, arrays, key=key)[0].action
        for s in (compiled.init_state(3), compiled.init_state(4))
    ]
    np.testing.assert_array_equal(*with_key)  # the key alone decides the noise


def _tiny_bundle(path, seed: int, hidden=(8, 8)):
    ctrl = make_controller("step_mppi", num_samples=16, hidden=hidden)
    weights = ctrl.init_weights(jax.random.PRNGKey(seed))
    config = StepMPPIConfig(num_samples=16, hidden=hidden)
    return save_bundle(path, "step_mppi", config, weights, training={"command": "test"})


def test_models_of_one_architecture_share_a_compiled_step_that_runs_each_ones_weights(tmp_path):
    specs = [
        EngineSpec(model_path=str(_tiny_bundle(tmp_path / name, seed, hidden)), reference_points=64)
        for name, seed, hidden in (("a", 1, (8, 8)), ("b", 2, (8, 8)), ("wide", 1, (16, 8)))
    ]
    a, b, wide = (compile_controller(spec, warmup_steps=1) for spec in specs)
    assert a._step is b._step and a._draw is b._draw  # one executable for both models
    assert wide._step is not a._step  # other shapes: a step of its own
    track = placeholder_track(64)
    arrays, x0 = track.arrays(), np.asarray(start_state(a.controller.model, track, 5.0))
    key = jax.random.PRNGKey(5)
    shared = [
        c.step(c.init_state(0), x0, c.default_tuning, arrays, key=key)[0].action for c in (a, b)
    ]
    assert not np.allclose(*shared)  # b's weights, not the ones the step was traced with
    own = jit_without_passthrough(policy_step(b.controller, given_noise=True))
    cstate = b.init_state(0)
    noise = jax.random.normal(key, tuple(b.controller.noise_shape))
    alone = np.asarray(own(cstate.ctrl, x0.astype(np.float32), b.default_tuning, arrays, noise)[0])
    np.testing.assert_allclose(shared[1], alone[:-2], rtol=1e-5, atol=1e-6)
    identity = ("step", step_identity(a.controller, given_noise=True))
    del a, b, shared
    gc.collect()
    assert identity not in jax_step._SHARED  # freed with the last controller that used it


def test_released_jax_caches_leave_compiled_steps_running_without_a_recompile():
    """The controller node empties JAX's trace/lowering/compile caches after each build
    (~95 MB): a compiled step must keep its executable and never recompile."""
    spec = EngineSpec(controller="step_mppi", num_samples=40, reference_points=64)
    compiled = compile_controller(spec, warmup_steps=1)
    arrays = placeholder_track(spec.reference_points).arrays()
    x0 = np.asarray(start_state(compiled.controller.model, placeholder_track(64), 5.0))
    start = compiled.init_state(11)  # init runs eager ops, which do compile after a release
    before = _actions_from(compiled, start, arrays, x0)
    assert any(not heavy for heavy, _ in jax_cache_evictions()), "the compile cached traces"
    compiles: list[str] = []

    def on_event(event: str, duration: float, **kwargs) -> None:
        if event.endswith("backend_compile_duration"):
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    heavy_steps: list[bool] = []
    try:
        steps = release_jax_caches(heavy_steps.append)
        assert steps == len(heavy_steps) > 0
        assert not any(not heavy for heavy, _ in jax_cache_evictions()), "entries left"
        after = _actions_from(compiled, start, arrays, x0)
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    assert compiles == []
    np.testing.assert_array_equal(after, before)


def _actions_from(compiled, cstate, arrays, x0, steps: int = 3) -> np.ndarray:
    actions = []
    for i in range(steps):
        result, cstate = compiled.step(cstate, x0 + 0.01 * i, compiled.default_tuning, arrays)
        cstate = compiled.prepare(cstate)
        actions.append(result.action)
    return np.array(actions)
