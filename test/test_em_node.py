"""The mppi_controller node running ``controller: em_mppi`` over real DDS: EM's own live
parameters are declared for it, tune without a rebuild and reject bad values; a Step-MPPI
node does not have them."""

from __future__ import annotations

import time

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from test_ros_controller import (
    CTRL,
    MODEL,
    Vehicle,
    change_state,
    diag,
    get_parameter,
    wait_watchdog,
)

from mppi_ros.ros.graph import Monitor
from mppi_ros.ros.processes import NodeProcesses, pick_domain_id


@pytest.fixture(scope="module")
def em_node(tmp_path_factory):
    domain = pick_domain_id()
    params = {
        CTRL: {
            "controller": "em_mppi",
            "num_samples": 64,
            "horizon": 20,
            "em_iterations": 1,
            "family": "squashed_gaussian",
            "command_type": "array",
            "state_timeout": 0.25,
            "diagnostics_rate": 10.0,
        }
    }
    processes = NodeProcesses(params, domain, tmp_path_factory.mktemp("em_controller"))
    monitor = Monitor(domain, "array")
    vehicle = Vehicle(monitor)
    try:
        assert change_state(monitor, Transition.TRANSITION_CONFIGURE), processes.log(CTRL)
        assert change_state(monitor, Transition.TRANSITION_ACTIVATE)
        wait_watchdog(monitor, "ok", 60.0)
        yield processes, monitor, vehicle
    finally:
        monitor.close()
        processes.stop()


@pytest.mark.slow
def test_em_parameters_tune_live_and_reject_bad_values(em_node):
    processes, monitor, vehicle = em_node
    # The start-up values stay; the others show the controller's defaults.
    assert get_parameter(monitor, "family") == "squashed_gaussian"
    assert not monitor.set_parameters(CTRL, family="gaussian_full")[0].successful  # read-only
    assert get_parameter(monitor, "em_iterations") == 1
    assert get_parameter(monitor, "damping") == pytest.approx(1.0)
    assert get_parameter(monitor, "std_floor") == pytest.approx(0.2)
    swaps = diag(monitor)["swaps"]

    assert monitor.set_parameters(CTRL, em_iterations=3, covariance_damping=0.25)[0].successful
    assert get_parameter(monitor, "em_iterations") == 3
    assert get_parameter(monitor, "covariance_damping") == pytest.approx(0.25)

    # std_ceiling below std_floor: the tuning's own check names it; the old value stays.
    result = monitor.set_parameters(CTRL, std_ceiling=0.1)[0]
    assert not result.successful and "std_ceiling" in result.reason, result.reason
    assert get_parameter(monitor, "std_ceiling") == pytest.approx(3.0)
    assert not monitor.set_parameters(CTRL, em_iterations=0)[0].successful  # descriptor range
    assert get_parameter(monitor, "em_iterations") == 3

    t0 = time.monotonic()
    monitor.wait_for(lambda: len(vehicle.commands_since(t0)) > 30, 30.0, "commands")
    commands = np.array(vehicle.commands_since(t0))
    # The squashed family never commands outside the box (the brake is not in this window).
    lo, hi = (np.asarray(b) for b in MODEL.control_bounds(MODEL.default_params))
    assert np.all(commands >= lo - 1e-6) and np.all(commands <= hi + 1e-6)
    assert diag(monitor)["swaps"] == swaps, "EM tuning must not rebuild the controller"
    wait_watchdog(monitor, "ok", 30.0)  # a loaded machine may delay odometry for a moment
    assert processes.dead() == []


@pytest.mark.slow
def test_a_step_mppi_node_has_no_em_parameters(tmp_path):
    domain = pick_domain_id()
    processes = NodeProcesses({CTRL: {"controller": "step_mppi"}}, domain, tmp_path)
    monitor = Monitor(domain, "array")
    try:
        result = monitor.set_parameters(CTRL, em_iterations=2)[0]
        assert not result.successful
        assert processes.dead() == []
    finally:
        monitor.close()
        processes.stop()
