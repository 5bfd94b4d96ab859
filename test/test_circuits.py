"""Real-circuit geometry: generated circuits, the raceline optimiser, speed profiles, the
allowed band, and the reference law that follows a profile."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.core.catalog import make_controller
from mppi_ros.core.controllers import update_tuning
from mppi_ros.core.policy import observe
from mppi_ros.core.tracks import (
    CAR_HALF_WIDTH,
    ProfileLimits,
    ReferenceSpeed,
    allowed_band,
    circuit_stats,
    generate_circuit,
    limited_profile,
    load_track,
    save_track,
    vehicle_limits,
)
from mppi_ros.core.tracks import geometry as geo

DEFAULT_MARGIN = 0.1  # the tuning's border_margin default


@pytest.fixture(scope="module")
def circuits():
    return [load_track(f"circuit:{seed}") for seed in (9001, 9002)]


def test_circuits_have_real_circuit_geometry(circuits):
    for track in circuits:
        stats = circuit_stats(track)
        assert 150.0 <= stats["length_m"] <= 600.0
        assert 1.5 <= stats["min_radius_m"] <= 12.0, stats
        assert 0.0 < stats["share_radius_below_12m"] < 0.6, stats
        assert 0.9 - 1e-9 <= stats["min_half_width_m"]
        assert max(track.width_left.max(), track.width_right.max()) <= 1.6 + 1e-9
        assert not np.allclose(track.width_left, track.width_right)  # per-point, per side
        # The raceline leaves the centre (it uses the road) ...
        assert stats["raceline_max_offset_m"] > 0.5, stats
        # ... and every raceline point keeps the car's half-width plus the margin from the
        # road edges: the raceline never violates its own allowed band.
        left, right = track.edge_clearance()
        assert min(left.min(), right.min()) >= CAR_HALF_WIDTH + DEFAULT_MARGIN, stats
        assert geo.road_is_simple(
            track.center_xy, track.width_right, track.width_left, 0.3, local=4.0
        )
        spacing = np.linalg.norm(geo.closed_diff(track.xy), axis=1)
        assert spacing.max() < 0.25 and spacing.min() > 0.15


def test_circuits_are_seeded():
    a, b = generate_circuit(9001), generate_circuit(9001)
    np.testing.assert_array_equal(a.xy, b.xy)
    assert generate_circuit(9002).length != pytest.approx(a.length)


def test_profile_respects_friction_and_acceleration_limits(circuits):
    track = circuits[0]
    limits = vehicle_limits(max_speed=10.0)
    v = track.speed
    assert np.all(v > 0) and v.max() <= 10.0 + 1e-9
    lateral = v**2 * np.abs(track.kappa)
    assert lateral.max() <= limits.lateral_accel * (1 + 1e-6)
    ds = np.diff(np.concatenate([track.s, [track.length]]))
    dv2 = np.roll(v, -1) ** 2 - v**2
    assert np.all(dv2 / (2 * ds) <= limits.max_accel + 1e-6)
    assert np.all(-dv2 / (2 * ds) <= limits.max_decel + 1e-6)
    assert v.min() < 0.7 * v.max()  # it slows for the tight corners
    # A lower friction gives a slower profile everywhere it is curvature-limited.
    slow = limited_profile(track.s, track.kappa, track.length, vehicle_limits(10.0, 0.8))
    assert np.all(slow <= v + 1e-9) and slow.min() < v.min()
    with pytest.raises(ValueError, match="lateral_accel"):
        ProfileLimits(lateral_accel=0.0)


def test_reference_follows_the_profile_scaled_and_capped_without_recompiling(circuits):
    track = circuits[0]
    arrays = track.arrays()
    ctrl = make_controller("mppi", num_samples=16, horizon=30)
    i = int(np.argmin(track.speed))  # the slowest corner
    x = jnp.asarray([*track.xy[i], 0.0, 3.0, track.psi[i], 0.0, 0.0], jnp.float32)
    traces = []

    @jax.jit
    def speeds(tuning):
        traces.append(1)
        obs, _ = observe(ctrl, arrays, x, tuning)
        return obs.reference[:, 3]

    base = ctrl.default_tuning()
    constant = speeds(update_tuning(base, reference_speed=7.0))
    np.testing.assert_allclose(constant, 7.0)
    profile = speeds(update_tuning(base, follow_profile=1.0, speed_scale=1.0))
    assert float(profile[0]) == pytest.approx(track.speed[i], abs=0.3)
    # The window's first point moves at the law's speed where the car is; later points at the
    # (scaled, capped) profile where they are.
    scaled = speeds(update_tuning(base, follow_profile=1.0, speed_scale=0.5))
    assert float(scaled[0]) == pytest.approx(0.5 * float(profile[0]), rel=1e-5)
    assert float(scaled.max()) <= 0.5 * track.speed.max() + 1e-4
    capped = speeds(update_tuning(base, follow_profile=1.0, max_speed=2.0))
    assert float(capped.max()) == pytest.approx(2.0)
    assert float(capped[0]) == pytest.approx(min(float(profile[0]), 2.0), rel=1e-5)
    assert len(traces) == 1  # every change was a value, not a recompile


def test_allowed_band_keeps_clearance_but_never_excludes_the_reference():
    road = jnp.array([[0.0, 1.0, 1.1, -1.1]] * 2)  # 1.1 m each side of y = 0
    centre = jnp.array([[0.0, 0.0], [0.0, 1.0]])  # second point 0.1 m from the left edge
    band = np.asarray(allowed_band(road, centre, 0.3))
    np.testing.assert_allclose(band[0, 2:], [0.8, -0.8], atol=1e-6)
    np.testing.assert_allclose(band[1, 2:], [1.0, -0.8], atol=1e-6)  # closes onto the line


def test_raceline_file_near_the_wall_never_violates_its_own_band(tmp_path, circuits):
    # A raceline that hugs the wall 0.1 m from the edge (tighter than the car's half-width),
    # as many shipped with real circuits do.
    track = circuits[0]
    normal = geo.left_normals(track.center_xy)
    hugging = track.center_xy + normal * (track.width_left - 0.1)[:, None]
    from mppi_ros.core.tracks import raceline_track

    wall = raceline_track("hug", hugging, track.center_xy, track.width_right, track.width_left)
    race, _ = save_track(wall.with_limited_profile(vehicle_limits(8.0)), tmp_path)
    loaded = load_track(race, raceline="file")
    ctrl = make_controller("mppi", num_samples=16, horizon=20)
    tuning = ctrl.default_tuning()
    arrays = loaded.arrays()
    for k in range(0, len(loaded.xy), 97):
        x = jnp.asarray([*loaded.xy[k], 0.0, 5.0, loaded.psi[k], 0.0, 0.0], jnp.float32)
        obs, _ = observe(ctrl, arrays, x, tuning)
        lateral = jnp.sum(obs.border[:, :2] * obs.reference[:, :2], axis=1)
        assert np.all(np.asarray(lateral) <= np.asarray(obs.border[:, 2]) + 1e-4)
        assert np.all(np.asarray(lateral) >= np.asarray(obs.border[:, 3]) - 1e-4)
    # --raceline optimise replaces it with one that keeps the car's clearance.
    optimised = load_track(race, raceline="optimise")
    left, right = optimised.edge_clearance()
    assert min(left.min(), right.min()) >= CAR_HALF_WIDTH + DEFAULT_MARGIN


def test_reference_speed_law_constant_mode_ignores_the_profile():
    law = ReferenceSpeed.fixed(6.0)
    assert float(law.at(jnp.float32(2.0))) == 6.0
    capped = law.replace(
        follow_profile=jnp.float32(1.0), scale=jnp.float32(0.9), cap=jnp.float32(5.0)
    )
    assert float(capped.at(jnp.float32(8.0))) == 5.0
    assert float(capped.at(jnp.float32(4.0))) == pytest.approx(3.6)
    assert math.isinf(float(ReferenceSpeed.fixed(1.0).cap))
