"""Step-MPPI and DPC controllers: the differentiable MPPI layer (Lemma 1), networks, interface."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import lowerings

from mppi_ros.core.catalog import make_controller
from mppi_ros.core.controllers import update_tuning
from mppi_ros.core.controllers.step_mppi import lemma1_jacobian, mppi_layer, one_step_cost
from mppi_ros.core.networks import DistributionPolicy, feature_dim, gaussian_entropy
from mppi_ros.core.policy import observe
from mppi_ros.sim.closed_loop import start_state


def _vehicle_problem(track, seed, offset):
    ctrl = make_controller("step_mppi", num_samples=64, hidden=(32, 32))
    tuning = ctrl.default_tuning()
    rng = np.random.default_rng(seed)
    x = start_state(ctrl.model, track, 8.0)
    x[:2] += offset * rng.normal(size=2)
    x[4] += 0.2 * rng.normal()
    x[2] = 0.1 * rng.normal()
    obs, _ = observe(ctrl, track.arrays(), jnp.asarray(x), tuning)
    return ctrl, tuning, obs


_JACOBIANS = {}


def jacobians(model):
    """Autodiff and Lemma 1 Jacobians of the MPPI layer, one jitted function per model: every
    seed's problem is data, so the four cases share one compile (op by op, the first case
    alone took ~35 s of compiles on 2 cores)."""
    if model.name not in _JACOBIANS:
        step_fn = model.discrete(0.05)

        def both(mu, chol, eps, obs, tuning):
            cost_fn = one_step_cost(model, step_fn, obs, tuning)

            def layer(m, c):
                return mppi_layer(m, c, eps, cost_fn, tuning.temperature)[0]

            auto = jax.jacobian(layer, argnums=(0, 1))(mu, chol)
            return auto, lemma1_jacobian(mu, chol, eps, cost_fn, tuning.temperature)

        _JACOBIANS[model.name] = jax.jit(both)
    return _JACOBIANS[model.name]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_autodiff_jacobian_of_mppi_layer_matches_lemma_1(default_track, seed):
    with jax.enable_x64(True):
        ctrl, tuning, obs = _vehicle_problem(default_track, seed, 0.3)
        to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
        tuning, obs = to64(tuning), to64(obs)
        tuning = tuning.replace(temperature=jnp.float64([0.05, 0.5, 1.0, 5.0][seed]))
        key = jax.random.PRNGKey(seed)
        k1, k2, k3 = jax.random.split(key, 3)
        mu = jnp.array([0.3, 1.0]) + 0.5 * jax.random.normal(k1, (2,), jnp.float64)
        chol = jnp.tril(0.3 * jax.random.normal(k2, (2, 2), jnp.float64)) + jnp.diag(
            jnp.array([0.8, 2.0])
        )
        eps = jax.random.normal(k3, (64, 2), jnp.float64)

        (auto_mu, auto_l), (closed_mu, closed_l) = jacobians(ctrl.model)(mu, chol, eps, obs, tuning)
        np.testing.assert_allclose(np.asarray(auto_mu), np.asarray(closed_mu), atol=1e-5)
        np.testing.assert_allclose(np.asarray(auto_l), np.asarray(closed_l), atol=1e-5)
        assert np.abs(np.asarray(closed_l)).max() > 1e-3  # not trivially zero


def test_distribution_policy_shapes_bounds_and_cholesky():
    lo, hi = jnp.array([-3.2, -9.51]), jnp.array([3.2, 9.51])
    net = DistributionPolicy(control_dim=2, hidden=(16,), full_covariance=True)
    x = 10.0 * jax.random.normal(jax.random.PRNGKey(0), (128, 11))
    params = net.init(jax.random.PRNGKey(1), x, lo, hi)
    mu, chol = net.apply(params, x, lo, hi)
    assert mu.shape == (128, 2) and chol.shape == (128, 2, 2)
    assert np.all(np.asarray(mu) >= np.asarray(lo)) and np.all(np.asarray(mu) <= np.asarray(hi))
    c = np.asarray(chol)
    assert np.all(c[:, 0, 1] == 0.0)  # lower triangular
    assert np.all(np.diagonal(c, axis1=1, axis2=2) >= 1e-3)
    assert np.any(c[:, 1, 0] != 0.0)  # full variant learns off-diagonals
    single_mu, _ = net.apply(params, x[0], lo, hi)
    np.testing.assert_allclose(np.asarray(single_mu), np.asarray(mu[0]), rtol=1e-5)
    ent = gaussian_entropy(chol)
    cov = c @ np.transpose(c, (0, 2, 1))
    ref = 0.5 * np.log((2 * np.pi * np.e) ** 2 * np.linalg.det(cov))
    np.testing.assert_allclose(np.asarray(ent), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["step_mppi", "dpc"])
def test_learned_controllers_follow_the_interface(default_track, name):
    ctrl = make_controller(name, num_samples=32, hidden=(16, 16))
    tuning = update_tuning(ctrl.default_tuning(), reference_speed=6.0)
    x = jnp.asarray(start_state(ctrl.model, default_track, 6.0))
    obs, _ = observe(ctrl, default_track.arrays(), x, tuning)
    assert obs.reference.shape == (1, 7) and obs.border.shape == (1, 4)
    assert feature_dim(ctrl.model) == 11
    cstate = ctrl.init(jax.random.PRNGKey(0))
    step = jax.jit(ctrl.step)
    u, nxt, _ = step(cstate, obs, tuning, jax.random.PRNGKey(1))
    assert u.shape == (2,) and np.all(np.isfinite(np.asarray(u)))
    assert np.all(np.abs(np.asarray(u)) <= np.array([3.2, 9.51]) + 1e-5)
    assert int(nxt.steps) == 1
    # Weights are an argument: new weights of the same shapes reuse the compiled step.
    other = ctrl.init(jax.random.PRNGKey(7))
    key = jax.random.PRNGKey(1)
    with lowerings() as compiled:
        u2, _, _ = step(other, obs, tuning, key)
    assert compiled == []
    assert not np.allclose(np.asarray(u), np.asarray(u2))


def test_preview_widens_the_window_and_the_features(default_track):
    from mppi_ros.core.networks import PREVIEW_FEATURES, feature_dim

    plain = make_controller("dpc")
    ahead = make_controller("dpc", preview=(4, 10))
    assert plain.reference_horizon == 1 and ahead.reference_horizon == 11
    tuning = ahead.default_tuning()
    x = jnp.asarray([*default_track.xy[0], 0.0, 8.0, default_track.psi[0], 0.0, 0.0])
    obs, _ = observe(ahead, default_track.arrays(), x, tuning)
    features = ahead.features(obs)
    base = feature_dim(ahead.model)
    assert features.shape == (base + 2 * PREVIEW_FEATURES,)
    # The first features are exactly the one-point observation's.
    obs1, _ = observe(plain, default_track.arrays(), x, tuning)
    np.testing.assert_allclose(features[:base], plain.features(obs1), atol=1e-5)
    # The previewed speed is the reference speed there (constant 10 m/s here).
    assert float(features[base + 2]) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="preview steps must be >= 1"):
        make_controller("dpc", preview=(0,))
