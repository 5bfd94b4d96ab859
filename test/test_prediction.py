"""Latency compensation (:mod:`mppi_ros.core.prediction`): the command log's schedule, the
prediction against the model's own integrator, and the closed loop it rescues."""

from __future__ import annotations

import collections

import jax
import numpy as np
import pytest

from mppi_ros.core.dynamics import get_dynamics
from mppi_ros.core.prediction import PREDICTION_SLOTS, PREDICTION_STEP, CommandLog, predict_state
from mppi_ros.core.tracks import load_track, project
from mppi_ros.engine import EngineSpec, compile_controller, reference_track
from mppi_ros.sim.closed_loop import Plant, SimConfig, start_state


def test_schedule_holds_the_command_in_effect_at_each_step():
    log = CommandLog(2)
    log.record(10.00, np.array([1.0, 0.0]))
    log.record(10.03, np.array([2.0, 0.0]))
    controls, durations = log.schedule(10.005, 10.045)
    n = int(np.count_nonzero(durations))
    assert n == 4  # 40 ms in steps of at most 10 ms
    assert durations[:n] == pytest.approx(PREDICTION_STEP)
    assert durations.sum() == pytest.approx(0.04)
    # Step middles 10.010, 10.020, 10.030, 10.040: the second command from 10.03 on.
    assert controls[:n, 0].tolist() == [1.0, 1.0, 2.0, 2.0]
    assert not controls[n:].any()


def test_schedule_applies_each_channels_actuation_delay():
    log = CommandLog(2)
    log.record(10.00, np.array([1.0, 5.0]))
    log.record(10.03, np.array([2.0, 6.0]))
    controls, durations = log.schedule(10.005, 10.045, delays=np.array([0.02, 0.0]))
    n = int(np.count_nonzero(durations))
    # Steering 20 ms late: the first command acts from 10.02, the second from 10.05 (after
    # this span); step middles 10.010, 10.020, 10.030, 10.040.
    assert controls[:n, 0].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert controls[:n, 1].tolist() == [5.0, 5.0, 6.0, 6.0]
    late = log.schedule(10.005, 10.025, delays=np.array([0.02, 0.02]))[0]
    assert late[0].tolist() == [0.0, 0.0] and late[1].tolist() == [1.0, 5.0]  # 10.01, 10.02


def test_schedule_before_any_command_is_zero_and_long_spans_stretch_the_steps():
    log = CommandLog(2)
    controls, durations = log.schedule(0.0, 0.5)
    assert not controls.any()
    assert durations == pytest.approx(np.full(PREDICTION_SLOTS, 0.5 / PREDICTION_SLOTS))
    empty = log.schedule(1.0, 1.0)[1]
    assert not empty.any()


def test_prediction_equals_the_models_integrator_for_a_held_control():
    model = get_dynamics("single_track")
    params = model.default_params
    x0 = np.array([0.0, 0.0, 0.05, 8.0, 0.3, 0.1, 0.01], np.float32)
    u = np.array([0.4, 1.5], np.float32)
    log = CommandLog(2)
    log.record(-1.0, u)
    controls, durations = log.schedule(0.0, 0.07)
    predicted = predict_state(model, x0, controls, durations, params)
    step = model.discrete(0.01)
    expected = x0
    for _ in range(7):
        expected = step(expected, u, params)
    np.testing.assert_allclose(np.asarray(predicted), np.asarray(expected), rtol=1e-5, atol=1e-5)


def _mean_error_with_measurement_delay(compiled, delay_steps: int, compensate: bool) -> float:
    """Drives `default` for 10 s at 100 Hz: the plant delays steering by 2 steps (as trained);
    the controller sees the state ``delay_steps`` steps late, predicted forward or not."""
    track = load_track("default")
    arrays = track.arrays()
    reference = reference_track(track, compiled.spec.reference_points, timed=False).arrays()
    plant = Plant(SimConfig(command_delay_steps=(2, 0), control_period=0.01), arrays)
    tuning = compiled.default_tuning
    x = plant.initial_state(start_state(plant.model, track, float(tuning.reference_speed)))
    measured = collections.deque([np.asarray(x.x)], maxlen=delay_steps + 1)
    log, cstate, key = CommandLog(2), compiled.init_state(0), jax.random.PRNGKey(0)
    positions = []
    for k in range(1000):
        now, stamp = k * 0.01, max(k - delay_steps, 0) * 0.01
        state = measured[0]
        if compensate:
            state = compiled.predict_state(state, *log.schedule(stamp, now), tuning)
        result, cstate = compiled.step(cstate, state, tuning, reference)
        log.record(now, result.action)
        key, sub = jax.random.split(key)
        x, _, _ = plant.advance(x, result.action, sub, plant.params)
        measured.append(np.asarray(x.x))
        positions.append(measured[-1][:2])
    errors = jax.vmap(lambda p: project(arrays, p).lateral_error)(np.asarray(positions))
    return float(np.mean(np.abs(errors)))


@pytest.mark.slow
def test_compensating_a_measurement_delay_keeps_step_mppi_on_the_line():
    """40 ms of measurement delay on top of the trained 20 ms actuation delay makes the shipped
    Step-MPPI weave (offline: 0.29 m mean error at 60 ms in total); predicted forward with the
    commands sent, it tracks as with no measurement delay."""
    compiled = compile_controller(EngineSpec(controller="step_mppi"))
    baseline = _mean_error_with_measurement_delay(compiled, 0, compensate=False)
    delayed = _mean_error_with_measurement_delay(compiled, 4, compensate=False)
    compensated = _mean_error_with_measurement_delay(compiled, 4, compensate=True)
    print(f"mean error: {baseline:.4f} m, delayed {delayed:.4f} m, compensated {compensated:.4f} m")
    assert delayed > 5 * baseline, (baseline, delayed)
    assert compensated < 2 * baseline, (baseline, compensated)
