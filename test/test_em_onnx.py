"""EM-MPPI exported to ONNX: every sampling family, its warm start as graph state and its
live iteration count as an input, equal to the JAX step for the same noise."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from test_onnx import classic_export_pair

from mppi_ros.core.controllers.em_mppi import em_tuning
from mppi_ros.engine import EngineSpec
from mppi_ros.export.onnx_export import export_onnx
from mppi_ros.export.onnx_runtime import TUNING_PREFIX


@pytest.mark.parametrize("family", ["gaussian_diag", "gaussian_full", "squashed_gaussian"])
def test_em_mppi_exports_every_family_with_live_em_iterations(tmp_path, family):
    """EM-MPPI (each sampling family) exported with its mean and spread as graph state: 6
    steps with the live iteration count fed as an input (1, then 3) equal the JAX steps for
    the same noise; the graph reads the count (3 iterations move the mean differently)."""
    config = {"family": family, "max_em_iterations": 3}
    path = export_onnx(
        "em_mppi", out=tmp_path / "em.onnx", num_samples=32, horizon=8, config=config
    )
    spec = EngineSpec(controller="em_mppi", num_samples=32, horizon=8, config=tuple(config.items()))
    policy, ctrl, step, arrays, feeds, state, rng = classic_export_pair(path, spec, seed=2)
    assert policy.noise_shape == (3, 32, 8, 2)
    cstate, carry = ctrl.init(jax.random.PRNGKey(0)), policy.init_carry()
    for i in range(6):
        iterations = 1 if i < 3 else 3
        tuning = em_tuning(ctrl.default_tuning(), em_iterations=iterations)
        noise = rng.standard_normal(policy.noise_shape, dtype=np.float32)
        packed, cstate, _ = step(cstate, state, tuning, arrays, noise)
        live = {TUNING_PREFIX + "em_iterations": np.asarray(iterations, np.float32)}
        action, info = policy.step(state, feeds, tuning=live, noise=noise, carry=carry)
        np.testing.assert_allclose(action, np.asarray(packed)[:2], atol=1e-4)
        np.testing.assert_allclose(info.carry["mean"], np.asarray(cstate.mean), atol=1e-4)
        np.testing.assert_allclose(info.carry["spread"], np.asarray(cstate.spread), atol=1e-4)
        carry = info.carry
    noise = rng.standard_normal(policy.noise_shape, dtype=np.float32)
    next_means = [
        policy.step(
            state, feeds, {TUNING_PREFIX + "em_iterations": np.asarray(n, np.float32)}, noise, carry
        )[1].carry["mean"]
        for n in (1, 3)
    ]
    assert np.abs(next_means[0] - next_means[1]).max() > 1e-3
