"""Cost terms: wrapped angle errors, border half-planes, box limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.core.costs import (
    VIOLATION_CLIP,
    border_violation,
    box_violation,
    state_error,
    tracking_cost,
)


def test_heading_error_is_wrapped_before_squaring():
    x = jnp.array([0.0, 0.0, np.pi - 0.05])
    ref = jnp.array([0.0, 0.0, -np.pi + 0.05])
    err = state_error(x, ref, angle_indices=(2,))
    assert float(err[2]) == pytest.approx(-0.1, abs=1e-5)
    cost = tracking_cost(x, jnp.zeros(2), ref, jnp.array([0.0, 0.0, 1.0]), jnp.ones(2), (2,))
    assert float(cost) == pytest.approx(0.01, abs=1e-5)


def test_tracking_cost_is_weighted_quadratic():
    cost = tracking_cost(
        jnp.array([1.0, 2.0]),
        jnp.array([3.0]),
        jnp.zeros(2),
        jnp.array([10.0, 0.5]),
        jnp.array([0.1]),
    )
    assert float(cost) == pytest.approx(10.0 + 2.0 + 0.9)


def test_border_violation_zero_inside_and_grows_outside():
    border = jnp.array([0.0, 1.0, 1.1, -1.1])  # track is |y| <= 1.1
    inside = border_violation(jnp.array([5.0, 0.7]), border, 0.3)
    outside_left = border_violation(jnp.array([5.0, 1.0]), border, 0.3)
    outside_right = border_violation(jnp.array([5.0, -1.5]), border, 0.3)
    far = border_violation(jnp.array([5.0, 40.0]), border, 0.3)
    assert float(inside) == 0.0
    assert float(outside_left) == pytest.approx(0.2, abs=1e-6)
    assert float(outside_right) == pytest.approx(0.7, abs=1e-6)
    assert float(far) == VIOLATION_CLIP


def test_box_violation_and_infinite_bounds_have_finite_gradients():
    lo = jnp.array([-0.4, -jnp.inf])
    hi = jnp.array([0.4, jnp.inf])
    assert float(box_violation(jnp.array([0.5, 100.0]), lo, hi)) == pytest.approx(0.01, abs=1e-6)
    g = jax.grad(lambda v: box_violation(v, lo, hi))(jnp.array([0.5, 3.0]))
    assert np.all(np.isfinite(np.asarray(g))) and float(g[0]) == pytest.approx(0.2, abs=1e-5)
