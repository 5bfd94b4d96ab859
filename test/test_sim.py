"""Plant behaviour: command delay, friction scaling, process noise, lap counting, violations."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.core.tracks import generate_track
from mppi_ros.sim import Plant, SimConfig, run_closed_loop
from mppi_ros.sim.closed_loop import start_state


@pytest.fixture(scope="module")
def track():
    return generate_track(3, length=200.0, name="simtest")


def _steer_trace(track, delay, steps=6):
    cfg = SimConfig(control_period=0.01, command_delay_steps=(delay, 0))
    plant = Plant(cfg, track.arrays())
    state = plant.initial_state(start_state(plant.model, track, 5.0))
    deltas = []
    for _ in range(steps):
        state, _, applied = plant.advance(
            state, jnp.array([2.0, 0.0]), jax.random.PRNGKey(0), plant.params
        )
        deltas.append((float(state.x[2]), float(applied[0])))
    return np.array(deltas)


def test_steering_delay_holds_the_command_back_by_whole_plant_steps(track):
    now = _steer_trace(track, 0)
    late = _steer_trace(track, 2)
    assert now[0, 1] == 2.0 and now[0, 0] == pytest.approx(0.02, abs=1e-6)
    np.testing.assert_allclose(late[:2, 0], 0.0)
    np.testing.assert_allclose(late[:2, 1], 0.0)
    np.testing.assert_allclose(late[2:, 0], now[:-2, 0], atol=1e-6)


def test_friction_scale_reaches_the_plant(track):
    base = Plant(SimConfig(), track.arrays())
    slick = Plant(SimConfig(friction_scale=0.8), track.arrays())
    assert float(slick.params.mu) == pytest.approx(0.8 * float(base.params.mu))


def test_process_noise_is_seeded_and_changes_the_trajectory(track):
    cfg = SimConfig(process_noise_std=(0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0))
    plant = Plant(cfg, track.arrays())
    x0 = plant.initial_state(start_state(plant.model, track, 5.0))
    run = lambda k: plant.advance(x0, jnp.zeros(2), jax.random.PRNGKey(k), plant.params)[0].x
    np.testing.assert_array_equal(np.asarray(run(1)), np.asarray(run(1)))
    assert not np.allclose(np.asarray(run(1)), np.asarray(run(2)))


def test_delay_config_must_match_controls(track):
    with pytest.raises(ValueError, match="command_delay_steps needs 2 entries"):
        Plant(SimConfig(command_delay_steps=(1,)), track.arrays())
    with pytest.raises(ValueError, match="multiple of plant_dt"):
        _ = SimConfig(control_period=0.015).substeps


class _FollowTheLine:
    """An open-loop 'controller' on the shared interface: drives straight at constant speed.

    It exists to test lap counting and violation detection independently of MPPI.
    """

    name = "straight"

    def __init__(self, model):
        self.model = model
        self.reference_horizon = 1
        self.dt = 0.05

    def default_tuning(self):
        from mppi_ros.core.controllers import make_tuning

        return make_tuning(self.model, reference_speed=5.0)

    def init(self, key):
        return jnp.zeros(())

    def step(self, cstate, obs, tuning, key=None):
        return jnp.zeros(2), cstate + 1, {}


def test_a_car_driving_straight_leaves_the_track_and_is_counted(track):
    from mppi_ros.core.dynamics import get_dynamics

    ctrl = _FollowTheLine(get_dynamics("single_track"))
    res = run_closed_loop(ctrl, track, config=SimConfig(laps=1, max_time=20.0))
    assert res.stop_reason == "lost_track"
    assert res.border_violations == 1
    assert res.laps_completed == 0
    first_out = int(np.argmax(res.violation > 0))
    # The violation starts when the car's side (not its centre) crosses an edge.
    edge = 1.1 - 0.155
    assert abs(res.lateral_error[first_out - 1]) < edge < abs(res.lateral_error[first_out])
    assert abs(res.lateral_error[first_out]) < edge + 0.15
    summary = res.summary()
    assert summary["lap_time_s"] is None and summary["tracking_error_max_m"] > 5.0


def test_lap_counting_uses_unwrapped_progress(track):
    from mppi_ros.sim.closed_loop import SimResult

    res = SimResult(
        track="t",
        controller="c",
        time=np.arange(3.0),
        states=np.zeros((3, 7)),
        actions=np.zeros((3, 2)),
        progress=np.zeros(3),
        lateral_error=np.zeros(3),
        violation=np.array([0.0, 0.2, 0.0]),
        step_time_ms=np.ones(3),
        lap_times=[30.0, 31.0],
        track_length=200.0,
        stop_reason="laps_completed",
    )
    assert res.laps_completed == 2 and res.border_violations == 1
    assert dataclasses.asdict(res)["lap_times"] == [30.0, 31.0]
