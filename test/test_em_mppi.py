"""EM-MPPI against the theory in its module docstring: one iteration is classic MPPI, EM
increases the objective at the predicted rate, the squashed family stays in the box, and a
full covariance learns the correlation a diagonal one cannot hold."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.core.catalog import make_controller
from mppi_ros.core.controllers.em_mppi import (
    clamp_covariance,
    draw,
    em_tuning,
    em_update,
    to_controls,
)
from mppi_ros.core.policy import observe
from mppi_ros.core.tracks import load_track
from mppi_ros.sim.closed_loop import start_state

K, H = 256, 15


@pytest.fixture(scope="module")
def scene():
    track = load_track("default")
    mppi = make_controller("mppi", num_samples=K, horizon=H)
    tuning = mppi.default_tuning()
    state = jnp.asarray(start_state(mppi.model, track, 6.0))
    obs, _ = observe(mppi, track.arrays(), state, tuning)
    return mppi, tuning, obs


def test_one_iteration_with_a_fixed_covariance_is_classic_mppi(scene):
    """(a) Same noise, same warm start: the same action, next plan and prediction."""
    mppi, tuning, obs = scene
    em = make_controller("em_mppi", num_samples=K, horizon=H, max_em_iterations=1)
    em_t = em_tuning(tuning, em_iterations=1, damping=1.0, covariance_damping=0.0)
    eps = jax.random.normal(jax.random.PRNGKey(3), mppi.noise_shape)
    key = jax.random.PRNGKey(0)
    # A warm start that is not zero: one step of each first.
    u_mppi, s_mppi, i_mppi = jax.jit(mppi.step_with_noise)(mppi.init(key), obs, tuning, eps)
    u_em, s_em, i_em = jax.jit(em.step_with_noise)(em.init(key), obs, em_t, eps[None])
    np.testing.assert_allclose(u_em, u_mppi, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s_em.mean, s_mppi.plan, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(i_em.predicted_states, i_mppi.predicted_states, rtol=1e-5, atol=1e-6)
    eps2 = jax.random.normal(jax.random.PRNGKey(4), mppi.noise_shape)
    u_mppi, _, _ = jax.jit(mppi.step_with_noise)(s_mppi, obs, tuning, eps2)
    u_em, _, _ = jax.jit(em.step_with_noise)(s_em, obs, em_t, eps2[None])
    np.testing.assert_allclose(u_em, u_mppi, rtol=1e-5, atol=1e-5)
    assert float(i_em.effective_samples[0]) == pytest.approx(float(i_mppi.effective_samples))


# --------------------------------------------------------------------------- quadratic cost

LAMBDA = 1.0
ANGLE = np.deg2rad(30.0)
ROT = np.array([[np.cos(ANGLE), -np.sin(ANGLE)], [np.sin(ANGLE), np.cos(ANGLE)]])
P = ROT @ np.diag([1.0, 4.0]) @ ROT.T  # a linear model's quadratic cost, rotated
SIGMA = np.eye(2)
U_STAR = np.array([0.5, -1.0])


def _log_evidence(mu: np.ndarray) -> float:
    """Exact ``log E_{N(mu, SIGMA)} exp(-J / lambda)`` up to a constant (module docstring)."""
    e = mu - U_STAR
    return float(-0.5 * e @ np.linalg.solve(SIGMA + LAMBDA * np.linalg.inv(P), e))


def _em_means(seed: int, iterations: int, damping: float, samples: int = 20000) -> np.ndarray:
    """Iterates of EM with the fixed covariance SIGMA on the quadratic cost."""
    chol = jnp.asarray(np.linalg.cholesky(SIGMA), jnp.float32)
    slow = ROT[:, 0]  # the eigenvector of the smallest curvature: the slowest direction
    mu = jnp.asarray(U_STAR + 6.0 * slow, jnp.float32)
    means = [np.asarray(mu)]
    key = jax.random.PRNGKey(seed)
    for _ in range(iterations):
        key, sub = jax.random.split(key)
        u = mu + jax.random.normal(sub, (samples, 2)) @ chol.T
        e = u - U_STAR
        costs = 0.5 * jnp.einsum("ki,ij,kj->k", e, jnp.asarray(P, jnp.float32), e)
        new_mean, *_ = em_update(mu, jnp.asarray(SIGMA), u, costs, jnp.asarray(LAMBDA))
        mu = (1.0 - damping) * mu + damping * new_mean
        means.append(np.asarray(mu))
    return np.array(means)


@pytest.mark.parametrize("damping", [1.0, 0.5])
def test_em_increases_the_objective_at_the_predicted_rate(damping):
    """(b) Across 50 seeds every iteration increases the exact objective, and the error
    contracts by max eig (I + Sigma P / lambda)^-1 per iteration (1 - alpha (1 - rho) with
    damping alpha), within 10 %."""
    rho = np.max(np.linalg.eigvals(np.linalg.inv(np.eye(2) + SIGMA @ P / LAMBDA)).real)
    predicted = 1.0 - damping * (1.0 - rho)
    rates = []
    for seed in range(50):
        means = _em_means(seed, iterations=4, damping=damping)
        objective = [_log_evidence(m) for m in means]
        assert np.all(np.diff(objective) > 0), (seed, objective)
        errors = np.linalg.norm(means - U_STAR, axis=1)
        rates.append(errors[1:] / errors[:-1])
    measured = np.mean(rates, axis=0)
    np.testing.assert_allclose(measured, predicted, rtol=0.10)


def test_the_squashed_family_never_leaves_the_box():
    """(c) Samples and commands stay within the limits, whatever the mean and spread."""
    lo, hi = jnp.array([-3.2, -9.5]), jnp.array([3.2, 9.5])
    key = jax.random.PRNGKey(0)
    for scale in (0.1, 10.0, 1e4):
        k1, k2, key = jax.random.split(key, 3)
        mean = scale * jax.random.normal(k1, (H, 2))
        spread = jnp.full((H, 2), scale)
        z = draw(mean, spread, jnp.ones(2), jax.random.normal(k2, (K, H, 2)), full=False)
        u = to_controls(z, lo, hi, squashed=True)
        assert bool(jnp.all((u >= lo) & (u <= hi)))
    ctrl = make_controller("em_mppi", num_samples=64, horizon=10, family="squashed_gaussian")
    track = load_track("default")
    tuning = em_tuning(ctrl.default_tuning(), std_ceiling=1e3, em_iterations=3)
    tuning = tuning.replace(noise_std=jnp.array([50.0, 50.0]))
    lo, hi = ctrl.model.control_bounds(tuning.model_params)
    step = jax.jit(ctrl.step)
    cstate = ctrl.init(jax.random.PRNGKey(1))
    state = jnp.asarray(start_state(ctrl.model, track, 8.0))
    for _ in range(10):
        obs, _ = observe(ctrl, track.arrays(), state, tuning)
        action, cstate, info = step(cstate, obs, tuning)
        assert bool(jnp.all((action >= lo) & (action <= hi))), action
        assert np.all(np.isfinite(info.log_likelihood[:3]))


def _valley(u: jax.Array) -> jax.Array:
    """A narrow valley along u1 = u2: the optimum couples the two controls."""
    return 50.0 * (u[..., 0] - u[..., 1]) ** 2 + 0.5 * (u[..., 0] + u[..., 1] - 2.0) ** 2


def _fit(full: bool, iterations: int = 8, samples: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """EM with covariance learning on the valley: the final mean and covariance."""
    mean, unit = jnp.zeros((1, 2)), jnp.ones(2)
    cov = jnp.eye(2)[None] if full else jnp.ones((1, 2))
    key = jax.random.PRNGKey(0)
    for _ in range(iterations):
        key, sub = jax.random.split(key)
        spread = jnp.linalg.cholesky(cov) if full else jnp.sqrt(cov)
        u = draw(mean, spread, unit, jax.random.normal(sub, (samples, 1, 2)), full)
        mean, cov, _, _ = em_update(mean, cov, u, _valley(u[:, 0]), jnp.asarray(1.0))
        cov = clamp_covariance(cov, unit, jnp.asarray(1e-3), jnp.asarray(10.0), full)
    return np.asarray(mean[0]), np.asarray(cov[0] if full else jnp.diag(cov[0]))


def test_a_full_covariance_learns_the_correlation_a_diagonal_cannot_hold():
    """(d) On the valley the full family's samples line up with it (correlation near 1) and
    cost less in expectation than the best the diagonal family reaches."""
    key = jax.random.PRNGKey(9)
    expected = {}
    for full in (True, False):
        mean, cov = _fit(full)
        u = mean + jax.random.normal(key, (20000, 2)) @ jnp.linalg.cholesky(cov).T
        expected[full] = float(jnp.mean(_valley(u)))
        if full:
            assert cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) > 0.8
    assert expected[True] < 0.5 * expected[False], expected


def test_em_iterations_are_live_tuning():
    """More iterations per step without a recompile; the per-iteration info fills up."""
    ctrl = make_controller("em_mppi", num_samples=64, horizon=10, max_em_iterations=4)
    track = load_track("default")
    state = jnp.asarray(start_state(ctrl.model, track, 6.0))
    step = jax.jit(ctrl.step)
    cstate = ctrl.init(jax.random.PRNGKey(0))
    for n in (1, 3):
        tuning = em_tuning(ctrl.default_tuning(), em_iterations=n)
        obs, _ = observe(ctrl, track.arrays(), state, tuning)
        _, _, info = step(cstate, obs, tuning)
        assert np.isfinite(info.effective_samples[:n]).all()
        assert np.isnan(info.effective_samples[n:]).all()
    with pytest.raises(ValueError, match="damping must be in"):
        em_tuning(ctrl.default_tuning(), damping=0.0)
