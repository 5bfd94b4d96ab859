"""softMPCritic planner (Algorithm 1): the soft value against a direct Monte-Carlo estimate,
plan improvement, ensemble member sampling and live tuning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import lowerings

from mppi_ros.core.controllers.soft_mpcritic import (
    CriticProblem,
    SoftMPCriticConfig,
    improve,
    make_soft_tuning,
    sample_costs,
    shift_plan,
)
from mppi_ros.core.controllers.soft_mpcritic_start import initial_plan, start_plan
from mppi_ros.core.dynamics.ensemble import EnsembleModel

OBS, ACT = 3, 2


def quadratic_cost(s, a, s_next):
    return jnp.sum(s_next**2) + 0.1 * jnp.sum(a**2)


def small_problem(members: int = 1, low: float = -1.0, high: float = 1.0) -> CriticProblem:
    return CriticProblem(
        ensemble=EnsembleModel(OBS, ACT, members=members, hidden=(16, 16)),
        stage_cost=quadratic_cost,
        action_low=(low,) * ACT,
        action_high=(high,) * ACT,
        q_hidden=(16, 16),
    )


def direct_free_energy(problem, config, weights, tuning, s0, prior_samples):
    """-lambda log E_prior[exp(-J / lambda)] with actions drawn from the prior itself."""
    members = jnp.zeros((config.horizon,), jnp.int32)
    plan = jnp.zeros((config.horizon + 1, ACT))
    costs = sample_costs(problem, config, weights, tuning, s0, plan, prior_samples, members)
    lam = tuning.temperature
    return -lam * (jax.nn.logsumexp(-costs / lam) - jnp.log(costs.shape[0]))


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_soft_value_matches_direct_monte_carlo(prior):
    """With gamma = 1 the planner's importance-sampled V (samples around a non-zero plan)
    equals the free energy computed by sampling the prior directly."""
    problem = small_problem()
    weights = problem.init_weights(jax.random.PRNGKey(0))
    # The uniform prior needs a proposal N(u, Sigma) wide enough to cover its box, or the
    # importance weights' variance swamps any finite sample.
    var = 0.09 if prior == "gaussian" else 0.5
    tuning = make_soft_tuning(ACT, temperature=0.5, noise_var=var, discount=1.0)
    n = 400_000
    config = SoftMPCriticConfig(num_samples=n, horizon=3, prior=prior)
    s0 = jnp.array([0.3, -0.2, 0.1])
    plan = jnp.array([[0.2, -0.1], [0.1, 0.0], [0.0, 0.1], [-0.1, 0.05]])
    shape = (n, config.horizon + 1, ACT)
    if prior == "gaussian":
        draws = jax.random.normal(jax.random.PRNGKey(7), shape) * tuning.noise_std
    else:
        draws = jax.random.uniform(jax.random.PRNGKey(7), shape, minval=-1.0, maxval=1.0)
    expected = direct_free_energy(problem, config, weights, tuning, s0, draws)
    result = jax.jit(improve, static_argnums=(0, 1))(
        problem, config, weights, tuning, s0, plan, jax.random.PRNGKey(3)
    )
    assert float(result.value) == pytest.approx(float(expected), abs=0.01)
    # A wrong correction term (e.g. dropping it) is far outside that tolerance.
    assert abs(float(expected)) > 0.05


def test_value_is_a_soft_minimum_of_sample_costs():
    """V lies between the lowest sample cost and the mean cost when the plan is zero."""
    problem = small_problem()
    weights = problem.init_weights(jax.random.PRNGKey(1))
    tuning = make_soft_tuning(ACT, temperature=0.2, noise_var=0.1, discount=0.9)
    config = SoftMPCriticConfig(num_samples=4096, horizon=4)
    s0 = jnp.array([1.0, 0.5, -0.5])
    plan = jnp.zeros((5, ACT))
    key = jax.random.PRNGKey(4)
    result = improve(problem, config, weights, tuning, s0, plan, key)
    assert float(result.cost_min) <= float(result.value)
    members = jnp.zeros(4, jnp.int32)
    draws = jax.random.normal(jax.random.PRNGKey(9), (4096, 5, ACT)) * tuning.noise_std
    costs = sample_costs(problem, config, weights, tuning, s0, plan, draws, members)
    assert float(result.value) <= float(jnp.mean(costs)) + 0.05


def test_iterations_lower_the_cost_of_the_plan():
    """Repeated improvement from a poor plan lowers the deterministic cost of the plan."""
    problem = small_problem(low=-3.0, high=3.0)
    weights = problem.init_weights(jax.random.PRNGKey(2))
    tuning = make_soft_tuning(ACT, temperature=0.05, noise_var=0.1, discount=0.99)
    config = SoftMPCriticConfig(num_samples=512, horizon=4, iterations=1)
    s0 = jnp.array([1.0, -1.0, 0.5])
    plan = jnp.full((5, ACT), 2.0)
    zero_noise = jnp.zeros((1, 5, ACT))
    members = jnp.zeros(4, jnp.int32)

    def plan_cost(p):
        return float(sample_costs(problem, config, weights, tuning, s0, p, zero_noise, members)[0])

    step = jax.jit(improve, static_argnums=(0, 1))
    before = plan_cost(plan)
    for i in range(10):
        plan = step(problem, config, weights, tuning, s0, plan, jax.random.PRNGKey(i)).plan
    assert plan_cost(plan) < before - 0.1 * abs(before)
    # Warm start: shifted by one, zero appended.
    shifted = shift_plan(plan)
    np.testing.assert_array_equal(shifted[:-1], plan[1:])
    np.testing.assert_array_equal(shifted[-1], 0.0)


@pytest.mark.parametrize("sampling", ["step", "sample"])
def test_rollouts_use_the_drawn_ensemble_members(sampling):
    """Per step (shared) or per sample: the cost equals a rollout under the drawn members."""
    problem = small_problem(members=3)
    weights = problem.init_weights(jax.random.PRNGKey(5))
    tuning = make_soft_tuning(ACT, discount=0.95)
    config = SoftMPCriticConfig(num_samples=4, horizon=2, member_sampling=sampling)
    s0 = jnp.array([0.1, 0.2, 0.3])
    plan = jnp.zeros((3, ACT))
    eps = jax.random.normal(jax.random.PRNGKey(6), (4, 3, ACT)) * 0.3
    members = jnp.array([2, 0]) if sampling == "step" else jnp.array([[2, 1, 0, 2], [0, 0, 1, 2]])
    costs = sample_costs(problem, config, weights, tuning, s0, plan, eps, members)
    ens = problem.ensemble
    for k in range(4):
        s, total = s0, 0.0
        for t in range(2):
            m = members[t] if sampling == "step" else members[t, k]
            a = jnp.clip(eps[k, t], -1, 1)
            s_next = ens.predict_all(weights.dynamics, s, a)[m]
            total += 0.95**t * quadratic_cost(s, a, s_next)
            s = s_next
        total += 0.95**2 * problem.q_value(weights.q, s, jnp.clip(eps[k, 2], -1, 1))
        assert float(costs[k]) == pytest.approx(float(total), rel=1e-5)


def test_tuning_changes_do_not_recompile():
    problem = small_problem()
    weights = problem.init_weights(jax.random.PRNGKey(0))
    config = SoftMPCriticConfig(num_samples=64)
    step = jax.jit(improve, static_argnums=(0, 1))
    s0, plan = jnp.zeros(OBS), jnp.zeros((5, ACT))
    key = jax.random.PRNGKey(0)
    counts = []
    for lam, var, gamma in [(0.1, 0.1, 0.99), (0.5, 0.02, 0.9), (1.0, 0.3, 1.0)]:
        tuning = make_soft_tuning(ACT, lam, var, gamma)
        with lowerings() as compiled:
            jax.block_until_ready(step(problem, config, weights, tuning, s0, plan, key))
        counts.append(len(compiled))
    assert counts[1:] == [0, 0], counts  # compiled (at most) once, then reused


def test_bad_settings_are_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match="gaussian, uniform"):
        SoftMPCriticConfig(prior="beta")
    with pytest.raises(ValueError, match="step, sample"):
        SoftMPCriticConfig(member_sampling="all")
    with pytest.raises(ValueError, match="temperature > 0"):
        make_soft_tuning(2, temperature=0.0)


def test_planar_ensemble_learns_in_the_body_frame_and_is_pose_invariant():
    """With a pose, a member's prediction moves with the car: translating and rotating the
    state moves the predicted next state the same way; change/apply_change are inverses."""
    names = 7  # px, py, delta, v, yaw, yaw_rate, beta
    ens = EnsembleModel(names, 2, members=3, hidden=(16,), pose_indices=(0, 1, 4))
    assert ens.input_dim == 4 + 2
    params = ens.init(jax.random.PRNGKey(1))
    s = jnp.array([1.0, 2.0, 0.1, 5.0, 0.3, 0.2, 0.05])
    a = jnp.array([0.5, 1.0])
    s_next = jnp.array([1.2, 2.1, 0.12, 5.1, 0.31, 0.25, 0.04])
    np.testing.assert_allclose(ens.apply_change(s, ens.change(s, s_next)), s_next, atol=1e-6)
    forward, left = ens.change(s, s_next)[:2]
    assert forward > 0.2 and abs(float(left)) < 0.05  # mostly ahead of a car heading 0.3 rad

    def moved(x, angle, shift):
        c, sn = np.cos(angle), np.sin(angle)
        xy = np.array([[c, -sn], [sn, c]]) @ np.asarray(x[:2]) + shift
        return x.at[0].set(xy[0]).at[1].set(xy[1]).at[4].add(angle)

    angle, shift = 2.0, np.array([-30.0, 12.0])
    for member in range(3):
        here = ens.predict_member(params, jnp.int32(member), s, a)
        there = ens.predict_member(params, jnp.int32(member), moved(s, angle, shift), a)
        np.testing.assert_allclose(there, moved(here, angle, shift), atol=1e-4)
    mean = ens.predict_mean(params, s, a)
    np.testing.assert_allclose(mean, jnp.mean(ens.predict_all(params, s, a), axis=0), atol=1e-5)
    with pytest.raises(ValueError, match="pose_indices must be 3 distinct"):
        EnsembleModel(names, 2, pose_indices=(0, 0, 4))


def test_planar_ensemble_bundle_reloads_as_planar(tmp_path):
    from mppi_ros.core.bundles import load_soft_mpcritic_bundle, save_soft_mpcritic_bundle

    ens = EnsembleModel(7, 2, members=2, hidden=(8,), pose_indices=(0, 1, 4))
    problem = CriticProblem(ens, lambda s, a, sn: jnp.sum(sn**2), (-1.0,) * 2, (1.0,) * 2, (8,))
    weights = problem.init_weights(jax.random.PRNGKey(2))
    config = SoftMPCriticConfig(num_samples=8, horizon=2)
    tuning = make_soft_tuning(2)
    save_soft_mpcritic_bundle(tmp_path, problem, config, tuning, weights, env={"kind": "test"})
    bundle, loaded, _, _ = load_soft_mpcritic_bundle(tmp_path, stage_cost=problem.stage_cost)
    assert loaded.ensemble.pose_indices == (0, 1, 4)
    s, a = jnp.array([3.0, -1.0, 0.1, 5.0, 1.0, 0.2, 0.0]), jnp.array([0.2, -0.3])
    np.testing.assert_allclose(
        loaded.ensemble.predict_all(bundle.weights.dynamics, s, a),
        ens.predict_all(weights.dynamics, s, a),
        atol=1e-6,
    )


def test_value_rescaling_is_inverted_exactly_and_compresses_large_costs():
    from mppi_ros.core.controllers.soft_mpcritic import (
        inverse_value_rescaling,
        value_rescaling,
    )

    x = jnp.array([-50.0, -1.0, 0.0, 0.5, 3.0, 250.0, 1e4], jnp.float32)
    np.testing.assert_allclose(inverse_value_rescaling(value_rescaling(x)), x, rtol=2e-4, atol=1e-3)
    h = np.asarray(value_rescaling(x))
    assert np.all(np.diff(h) > 0)  # monotone: the ordering of costs is kept
    assert h[-1] < 120.0  # 1e4 becomes ~110: one scale for on-line and off-track values


def test_an_episode_starts_from_a_plan_made_at_its_first_state():
    """start_plan is improve() run START_IMPROVEMENTS times at s0 from the prior mean, without
    shifting: the same keys give the same plan, and it costs less than a prior draw."""
    problem = small_problem(low=-3.0, high=3.0)
    weights = problem.init_weights(jax.random.PRNGKey(2))
    tuning = make_soft_tuning(ACT, temperature=0.05, noise_var=0.1, discount=0.99)
    config = SoftMPCriticConfig(num_samples=256, horizon=4, iterations=1)
    s0, key = jnp.array([1.0, -1.0, 0.5]), jax.random.PRNGKey(7)
    started = start_plan(problem, config, weights, tuning, s0, key, improvements=3)
    plan = jnp.zeros((5, ACT))
    for k in jax.random.split(key, 3):
        plan = improve(problem, config, weights, tuning, s0, plan, k).plan
    np.testing.assert_allclose(started, plan, rtol=1e-5, atol=1e-6)
    zero_noise, members = jnp.zeros((1, 5, ACT)), jnp.zeros(4, jnp.int32)

    def plan_cost(p):
        return float(sample_costs(problem, config, weights, tuning, s0, p, zero_noise, members)[0])

    draws = [initial_plan(jax.random.PRNGKey(i), config, tuning) for i in range(20)]
    assert plan_cost(started) < np.median([plan_cost(d) for d in draws])
