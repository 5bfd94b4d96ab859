"""Classic MPPI: behaviour on small problems, warm start, covariance adaptation, live tuning
without recompilation, robustness to non-finite costs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.core.catalog import controller_names, make_controller
from mppi_ros.core.controllers import (
    MPPI,
    MPPIConfig,
    Observation,
    update_tuning,
    with_replan_period,
)
from mppi_ros.core.controllers.mppi import safe_softmax_weights


def _point_goal_obs(state, goal, horizon):
    ref = jnp.tile(jnp.array([goal[0], goal[1], 0.0, 0.0]), (horizon, 1))
    border = jnp.tile(jnp.array([0.0, 1.0, 1e3, -1e3]), (horizon, 1))
    return Observation(state=jnp.asarray(state, jnp.float32), reference=ref, border=border)


@pytest.fixture(scope="module")
def di_mppi():
    ctrl = make_controller(
        "mppi", dynamics="double_integrator", num_samples=256, horizon=20, dt=0.1
    )
    tuning = update_tuning(
        ctrl.default_tuning(),
        noise_std=[2.0, 2.0],
        temperature=1.0,
        q_weights=[10.0, 10.0, 0.5, 0.5],
        r_weights=[0.01, 0.01],
    )
    return ctrl, tuning, jax.jit(ctrl.step)


def _drive(ctrl, tuning, step, goal=(3.0, -2.0), steps=60, seed=0):
    key = jax.random.PRNGKey(seed)
    cstate = ctrl.init(key)
    x = jnp.zeros(4)
    f = ctrl.model.discrete(0.1)
    for _ in range(steps):
        key, sub = jax.random.split(key)
        u, cstate, info = step(cstate, _point_goal_obs(x, goal, 20), tuning, sub)
        x = f(x, u, ctrl.model.default_params)
    return x, cstate, info


def test_mppi_drives_double_integrator_to_goal(di_mppi):
    ctrl, tuning, step = di_mppi
    x, cstate, info = _drive(ctrl, tuning, step)
    assert float(jnp.linalg.norm(x[:2] - jnp.array([3.0, -2.0]))) < 0.15
    assert float(jnp.linalg.norm(x[2:])) < 0.5
    assert int(cstate.steps) == 60
    assert info.predicted_states.shape == (21, 4)
    assert 1.0 <= float(info.effective_samples) <= 256.0


def test_tuning_changes_do_not_recompile(di_mppi):
    ctrl, tuning, _ = di_mppi
    traces = []

    def counted(cstate, obs, t, key):
        traces.append(1)  # runs only while tracing
        return ctrl.step(cstate, obs, t, key)

    step = jax.jit(counted)
    cstate = ctrl.init(jax.random.PRNGKey(0))
    obs = _point_goal_obs(jnp.zeros(4), (1.0, 1.0), 20)
    variants = [
        tuning,
        update_tuning(tuning, temperature=1000.0),
        update_tuning(tuning, noise_std=[0.5, 3.0], q_weights=[1.0, 2.0, 3.0, 4.0]),
        update_tuning(tuning, border_weight=5.0, border_margin=0.1, reference_speed=7.0),
        update_tuning(tuning, model_params=ctrl.model.default_params.replace(a_max=2.0)),
    ]
    actions = []
    for t in variants:
        u, _, _ = step(cstate, obs, t, jax.random.PRNGKey(1))
        actions.append(np.asarray(u))
    assert len(traces) == 1
    # ...and the values really took effect: the action changes with the tuning.
    assert not np.allclose(actions[0], actions[1])
    assert np.all(np.abs(actions[4]) <= 2.0 + 1e-6)


def test_update_tuning_rejects_bad_values_and_keeps_dtype(di_mppi):
    _, tuning, _ = di_mppi
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        update_tuning(tuning, temperature=0.0)
    with pytest.raises(ValueError, match=r"noise_std must have shape \(2,\)"):
        update_tuning(tuning, noise_std=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="unknown tuning field 'lambda_'"):
        update_tuning(tuning, lambda_=1.0)
    with pytest.raises(ValueError, match="q_weights must be finite"):
        update_tuning(tuning, q_weights=[1.0, np.nan, 0.0, 0.0])
    assert update_tuning(tuning, temperature=2).temperature.dtype == jnp.float32


def test_warm_start_shifts_the_plan(di_mppi):
    ctrl, tuning, step = di_mppi
    cstate = ctrl.init(jax.random.PRNGKey(0))
    obs = _point_goal_obs(jnp.zeros(4), (3.0, 0.0), 20)
    u, nxt, info = step(cstate, obs, tuning, jax.random.PRNGKey(3))
    # The optimised plan is [u, nxt.plan[:-1]]: rolling it out reproduces the prediction.
    optimised = jnp.concatenate([u[None], nxt.plan[:-1]])
    f = ctrl.model.discrete(0.1)
    x, states = jnp.zeros(4), [jnp.zeros(4)]
    for t in range(20):
        x = f(x, optimised[t], ctrl.model.default_params)
        states.append(x)
    np.testing.assert_allclose(
        np.asarray(info.predicted_states), np.asarray(jnp.stack(states)), atol=1e-5
    )
    # The last step is repeated to fill the shifted plan.
    np.testing.assert_allclose(np.asarray(nxt.plan[-1]), np.asarray(nxt.plan[-2]))


def test_key_inside_state_is_used_when_no_key_given(di_mppi):
    ctrl, tuning, _ = di_mppi
    cstate = ctrl.init(jax.random.PRNGKey(5))
    obs = _point_goal_obs(jnp.zeros(4), (1.0, 1.0), 20)
    _, s1, _ = ctrl.step(cstate, obs, tuning)
    _, s2, _ = ctrl.step(cstate, obs, tuning)
    np.testing.assert_array_equal(np.asarray(s1.plan), np.asarray(s2.plan))  # deterministic
    assert not np.array_equal(np.asarray(s1.key), np.asarray(cstate.key))  # key advanced


def test_covariance_adaptation_shrinks_scale_on_a_converged_problem():
    ctrl = make_controller(
        "mppi",
        dynamics="double_integrator",
        num_samples=256,
        horizon=10,
        dt=0.1,
        adapt_covariance=True,
        covariance_rate=0.5,
        min_scale=0.1,
    )
    tuning = update_tuning(ctrl.default_tuning(), noise_std=[2.0, 2.0], temperature=0.05)
    step = jax.jit(ctrl.step)
    cstate = ctrl.init(jax.random.PRNGKey(0))
    obs = _point_goal_obs(jnp.zeros(4), (0.0, 0.0), 10)  # at the goal: best is u = 0
    for i in range(15):
        _, cstate, _ = step(cstate, obs, tuning, jax.random.PRNGKey(i))
    scale = np.asarray(cstate.scale)
    assert scale[:-1].mean() < 0.6
    assert scale.min() >= 0.1 - 1e-6 and scale.max() <= 2.0 + 1e-6


def test_non_finite_costs_get_zero_weight_and_never_poison_the_plan():
    w = safe_softmax_weights(jnp.array([1.0, jnp.nan, jnp.inf, 2.0]), jnp.float32(1.0))
    np.testing.assert_allclose(
        np.asarray(w), [1 / (1 + np.exp(-1)), 0, 0, np.exp(-1) / (1 + np.exp(-1))], rtol=1e-5
    )
    w_all_bad = safe_softmax_weights(jnp.array([jnp.nan, jnp.inf]), jnp.float32(1.0))
    np.testing.assert_allclose(np.asarray(w_all_bad), [0.5, 0.5])


def test_registry_and_config_validation():
    assert "mppi" in controller_names()
    with pytest.raises(ValueError, match=r"valid names: .*mppi"):
        make_controller("ilqr")
    with pytest.raises(ValueError, match=r"unknown MPPIConfig field\(s\) \['samples'\]"):
        make_controller("mppi", samples=10)
    with pytest.raises(ValueError, match="must be >= 1"):
        MPPI(MPPIConfig(num_samples=0))


def test_fractional_shift_keeps_the_warm_start_time_aligned():
    from mppi_ros.core.controllers.mppi import MPPIConfig, shift_plan

    plan = jnp.arange(5.0)[:, None]  # a ramp: plan value = time / dt
    np.testing.assert_allclose(shift_plan(plan, plan[-1]).ravel(), [1, 2, 3, 4, 4])
    # Called every dt / 5: every entry advances by 0.2 steps along the ramp.
    np.testing.assert_allclose(shift_plan(plan, plan[-1], 0.2).ravel(), [0.2, 1.2, 2.2, 3.2, 4])
    np.testing.assert_allclose(shift_plan(plan, jnp.array([9.0]), 2).ravel(), [2, 3, 4, 9, 9])
    ctrl = make_controller("mppi", replan_period=0.01)
    assert ctrl.shift_steps == pytest.approx(0.2)
    with pytest.raises(ValueError, match="replan_period must lie in"):
        MPPIConfig(replan_period=0.0)
    # The node and the benchmark set the call period on whatever controller they built.
    replanned = with_replan_period(make_controller("mppi"), 0.01)
    assert replanned.shift_steps == pytest.approx(0.2)
    single_step = make_controller("dpc")
    assert with_replan_period(single_step, 0.01) is single_step
