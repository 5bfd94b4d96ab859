"""Vehicle and simple models: equations, low-speed switch, input constraints, integrators."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.core.dynamics import (
    SingleTrackParams,
    discretize,
    dynamics_names,
    get_dynamics,
    wrap_angle,
)
from mppi_ros.core.dynamics.single_track import constrain_accel, constrain_steering_rate

P = SingleTrackParams()
ST = get_dynamics("single_track")


def reference_st_derivative(x, u):
    """The CommonRoad single-track equations longhand in plain floats (dynamic branch)."""
    g = 9.81
    mu, csf, csr, lf, lr = 1.0489, 4.718, 5.4562, 0.15875, 0.17145
    h, m, inertia = 0.074, 3.74, 0.04712
    big_l = lf + lr
    delta, v, yaw, r, beta = x[2], x[3], x[4], x[5], x[6]
    sv, a = u
    fl = g * lr - a * h
    rl = g * lf + a * h
    yaw_acc = (
        mu
        * m
        / (inertia * big_l)
        * (
            lf * csf * fl * delta
            + (lr * csr * rl - lf * csf * fl) * beta
            - (lf**2 * csf * fl + lr**2 * csr * rl) * r / v
        )
    )
    beta_rate = (
        mu
        / (v * big_l)
        * (
            csf * fl * delta
            - (csr * rl + csf * fl) * beta
            + (csr * rl * lr - csf * fl * lf) * r / v
        )
        - r
    )
    return [v * math.cos(yaw + beta), v * math.sin(yaw + beta), sv, a, r, yaw_acc, beta_rate]


@pytest.mark.parametrize(
    "x,u",
    [
        ([0.0, 0.0, 0.1, 5.0, 0.3, 0.2, 0.05], [0.5, 1.0]),
        ([3.0, -2.0, -0.2, 9.0, -2.5, -1.0, -0.02], [-1.0, -3.0]),
        ([1.0, 1.0, 0.05, 2.0, 1.0, 0.5, 0.1], [0.0, 2.0]),
    ],
)
def test_single_track_derivative_matches_hand_computed_equations(x, u):
    got = np.asarray(ST.derivative(jnp.asarray(x), jnp.asarray(u), P))
    np.testing.assert_allclose(got, reference_st_derivative(x, u), rtol=2e-5, atol=1e-4)


def test_single_track_uses_kinematic_branch_below_switch():
    x = jnp.array([0.0, 0.0, 0.2, 0.3, 0.0, 0.0, 0.0])
    d = np.asarray(ST.derivative(x, jnp.zeros(2), P))
    big_l = P.lf + P.lr
    beta = math.atan(math.tan(0.2) * P.lr / big_l)
    assert d[4] == pytest.approx(0.3 * math.cos(beta) * math.tan(0.2) / big_l, rel=1e-5)
    assert d[0] == pytest.approx(0.3 * math.cos(beta), rel=1e-5)


@jax.jit
def step_and_derivatives(x, u):
    """One RK4 step at 0.01 s, its Jacobians and the gradient of its squared norm (one compile
    for every speed below instead of op-by-op dispatch)."""
    step = ST.discrete(0.01)
    jac = jax.jacobian(lambda xx, uu: step(xx, uu, P), argnums=(0, 1))(x, u)
    grad = jax.grad(lambda xx: jnp.sum(step(xx, u, P) ** 2))(x)
    return step(x, u, P), jac, grad


@pytest.mark.parametrize("v", [0.0, 1e-6, -1e-6, 0.4, 0.5, 0.6, -0.5, 3.0])
def test_single_track_and_gradients_finite_at_low_speed(v):
    x = jnp.array([0.0, 0.0, 0.1, v, 0.2, 0.3, 0.05])
    out = step_and_derivatives(x, jnp.array([0.3, 1.0]))
    for leaf in jax.tree.leaves(out):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_low_speed_switch_is_continuous():
    u = jnp.array([0.3, 1.0])
    speeds = jnp.linspace(0.0, 1.0, 2001)
    xs = jnp.tile(jnp.array([0.0, 0.0, 0.1, 0.0, 0.2, 0.3, 0.05]), (len(speeds), 1))
    xs = xs.at[:, 3].set(speeds)
    f = np.asarray(jax.vmap(lambda x: ST.derivative(x, u, P))(xs))
    jumps = np.abs(np.diff(f, axis=0)).max(axis=0)
    assert jumps.max() < 0.5, jumps  # dv = 5e-4 m/s per row: no step in any entry


def test_steering_rate_constraints():
    assert float(constrain_steering_rate(jnp.array(P.delta_max), jnp.array(1.0), P)) == 0.0
    assert float(constrain_steering_rate(jnp.array(P.delta_max), jnp.array(-1.0), P)) == -1.0
    assert float(constrain_steering_rate(jnp.array(P.delta_min), jnp.array(-1.0), P)) == 0.0
    clipped = [float(constrain_steering_rate(jnp.array(0.0), jnp.array(r), P)) for r in (10, -10)]
    assert clipped == pytest.approx([3.2, -3.2])


def test_accel_constraints():
    assert float(constrain_accel(jnp.array(5.0), jnp.array(20.0), P)) == pytest.approx(9.51)
    v = 14.638  # above v_switch: a_pos = a_max v_switch / v
    assert float(constrain_accel(jnp.array(v), jnp.array(20.0), P)) == pytest.approx(
        9.51 * 7.319 / v, rel=1e-5
    )
    assert float(constrain_accel(jnp.array(5.0), jnp.array(-20.0), P)) == pytest.approx(-9.51)
    assert float(constrain_accel(jnp.array(20.0), jnp.array(1.0), P)) == 0.0
    assert float(constrain_accel(jnp.array(-5.0), jnp.array(-1.0), P)) == 0.0
    assert float(constrain_accel(jnp.array(20.0), jnp.array(-1.0), P)) == -1.0


def test_constraints_apply_inside_the_model():
    x = jnp.array([0.0, 0.0, P.delta_max, 5.0, 0.0, 0.0, 0.0])
    d = np.asarray(ST.derivative(x, jnp.array([2.0, 50.0]), P))
    assert d[2] == 0.0 and d[3] == pytest.approx(9.51)


def test_rk4_is_fourth_order_and_euler_first_order():
    x0 = jnp.array([0.0, 0.0, 0.1, 6.0, 0.0, 0.0, 0.0])
    u = jnp.array([0.2, 1.0])

    def integrate(method, dt, t=0.8):
        f = jax.jit(discretize(ST.derivative, dt, method))
        x = x0.astype(jnp.float64)
        for _ in range(round(t / dt)):
            x = f(x, u, P)
        return np.asarray(x, np.float64)

    with jax.enable_x64(True):  # float32 round-off would hide RK4's truncation error
        exact = integrate("rk4", 0.001)
        rk_ratio = np.linalg.norm(integrate("rk4", 0.08) - exact) / np.linalg.norm(
            integrate("rk4", 0.04) - exact
        )
        eu_ratio = np.linalg.norm(integrate("euler", 0.08) - exact) / np.linalg.norm(
            integrate("euler", 0.04) - exact
        )
    assert 1.6 < eu_ratio < 2.5
    assert rk_ratio > 10.0  # 16 in the asymptotic limit


def test_kinematic_bicycle_circles_with_wheelbase_radius():
    kb = get_dynamics("kinematic_bicycle")
    step = kb.discrete(0.001)
    x = jnp.array([0.0, 0.0, 0.2, 2.0, 0.0])
    for _ in range(500):
        x = step(x, jnp.zeros(2), kb.default_params)
    radius = (P.lf + P.lr) / math.tan(0.2)
    # Heading after 1 s equals arc length / radius.
    assert float(x[4]) == pytest.approx(2.0 * 0.5 / radius, rel=1e-4)


def test_double_integrator_rk4_exact_for_constant_accel():
    di = get_dynamics("double_integrator")
    x = di.discrete(0.1)(
        jnp.array([1.0, 2.0, 0.5, -1.0]), jnp.array([1.0, 10.0]), di.default_params
    )
    # ay clipped to a_max = 5.
    np.testing.assert_allclose(
        np.asarray(x), [1.0 + 0.05 + 0.005, 2.0 - 0.1 + 0.025, 0.6, -0.5], atol=1e-6
    )


def test_registry_rejects_unknown_names_listing_valid_ones():
    assert {"single_track", "kinematic_bicycle", "double_integrator"} <= set(dynamics_names())
    with pytest.raises(ValueError, match=r"valid names: .*single_track"):
        get_dynamics("unicycle")
    with pytest.raises(ValueError, match="unknown integration method"):
        discretize(ST.derivative, 0.1, "midpoint")


def test_wrap_angle():
    got = np.asarray(wrap_angle(jnp.array([0.0, np.pi, -np.pi, 3 * np.pi / 2, 7.0])))
    np.testing.assert_allclose(got, [0.0, np.pi, np.pi, -np.pi / 2, 7.0 - 2 * np.pi], atol=1e-6)


@pytest.mark.parametrize("v", [0.3, 1.0, 2.0, 3.0, 6.0])
def test_prediction_params_keep_long_rk4_steps_stable(v):
    dt = 0.05
    params = ST.params_for_step(P, dt)
    step = jax.jit(ST.discrete(dt))
    x = jnp.array([0.0, 0.0, 0.3, v, 0.0, 0.5, 0.1])
    for _ in range(40):
        x = step(x, jnp.array([0.0, 0.0]), params)
    assert np.all(np.isfinite(np.asarray(x))) and abs(float(x[5])) < 10.0
    # At the plant's 0.01 s step the switch stays near F1TENTH gym's 0.5 m/s.
    assert 0.4 <= ST.params_for_step(P, 0.01).kinematic_blend_low <= 0.5


@pytest.mark.parametrize("dt", [0.01, 0.05])
def test_reversing_stays_stable(dt):
    # The ST yaw-rate pole -k/v is unstable for v < 0; reversing uses the kinematic branch.
    params = ST.params_for_step(P, dt)
    step = jax.jit(ST.discrete(dt))
    x = jnp.array([0.0, 0.0, 0.3, -3.0, 0.0, 0.5, 0.1])
    for _ in range(round(5.0 / dt)):
        x = step(x, jnp.array([0.0, 0.0]), params)
    x = np.asarray(x)
    assert np.all(np.isfinite(x)) and abs(x[5]) < 5.0 and abs(x[6]) < 1.0
    # Kinematic reversing: heading turns at v cos(beta) tan(delta) / L with the steering held.
    wheelbase = P.lf + P.lr
    beta = math.atan(math.tan(0.3) * P.lr / wheelbase)
    rate = -3.0 * math.cos(beta) * math.tan(0.3) / wheelbase
    assert x[4] == pytest.approx(5.0 * rate, rel=1e-2)
