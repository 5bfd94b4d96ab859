"""The deployment engine's noise pipelining: preparing the next noise off the control path
changes nothing about what the controller computes."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mppi_ros.engine import EngineSpec, compile_controller, placeholder_track
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
