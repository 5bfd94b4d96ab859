"""End to end in simulation: classic MPPI (K = 1024, H = 40) drives a lap of `default`."""

import numpy as np
import pytest

import mppi_ros
from mppi_ros.core.catalog import make_controller
from mppi_ros.core.controllers import update_tuning
from mppi_ros.sim import SimConfig, run_closed_loop


@pytest.mark.slow
def test_mppi_completes_a_lap_of_default_at_6_mps_without_border_violations(default_track):
    ctrl = make_controller("mppi", num_samples=1024, horizon=40)
    # Clearance 0.155 + 0.145 = 0.3 m from the edges, the band this lap was first tuned on.
    tuning = update_tuning(ctrl.default_tuning(), reference_speed=6.0, border_margin=0.145)
    res = run_closed_loop(
        ctrl, default_track, tuning, SimConfig(laps=1, command_delay_steps=(2, 0), seed=0)
    )
    summary = res.summary()
    assert res.stop_reason == "laps_completed", summary
    assert summary["laps_completed"] == 1
    assert summary["border_violations"] == 0, summary
    assert summary["tracking_error_max_m"] < 1.1 - 0.155
    assert summary["tracking_error_mean_m"] < 0.35
    # It actually drives at the reference speed: lap time close to length / 6 m/s.
    assert summary["lap_time_s"] == pytest.approx(default_track.length / 6.0, rel=0.08)
    assert np.all(np.abs(res.actions[:, 0]) <= 3.2 + 1e-5)
    assert np.all(np.abs(res.actions[:, 1]) <= 9.51 + 1e-5)


def test_numpy_wrapper_returns_bounded_controls():
    ctrl = mppi_ros.load_controller("mppi", track="sprint", num_samples=64, horizon=10)
    from mppi_ros.sim.closed_loop import start_state

    x = start_state(ctrl.controller.model, ctrl.track, 5.0)
    u1 = ctrl(x)
    ctrl(x)
    assert u1.shape == (2,) and np.all(np.isfinite(u1))
    assert int(ctrl.cstate.steps) == 2
    ctrl.reset()
    assert int(ctrl.cstate.steps) == 0
