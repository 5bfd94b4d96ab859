"""Track loading, generation, speed profile, projection, reference window, borders."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.core import tracks
from mppi_ros.core.tracks import (
    ReferenceSpeed,
    TrackFormatError,
    border_coefficients,
    generate_track,
    geometry,
    interpolate,
    load_track,
    project,
    reference_window,
    save_track,
    speed_profile,
)


@pytest.mark.parametrize("name", tracks.builtin_track_names())
def test_builtin_tracks_are_f1tenth_like_closed_loops(name):
    t = load_track(name)
    assert 150.0 <= t.length <= 400.0
    spacing = np.linalg.norm(np.diff(np.vstack([t.xy, t.xy[:1]]), axis=0), axis=1)
    assert spacing.max() < 0.25 and spacing.min() > 0.15  # ~0.2 m raceline points
    np.testing.assert_allclose(t.width_left, 1.1)
    np.testing.assert_allclose(t.width_right, 1.1)
    assert np.abs(t.kappa).max() < 1.0 / 11.0  # drivable at 10 m/s with mu ~ 1
    assert geometry.min_separation(t.xy, window=40.0) > 2.2 + 3.0
    assert {"default", "sprint", "endurance"} <= set(tracks.builtin_track_names())


def test_shipped_tracks_match_the_documented_generator(tmp_path):
    written = tracks.generate_builtin_tracks(tmp_path)
    assert len(written) == 2 * len(tracks.BUILTIN_TRACKS)
    for name in tracks.BUILTIN_TRACKS:
        fresh = tracks.load_raceline_csv(tmp_path / f"{name}_raceline.csv")
        shipped = load_track(name)
        np.testing.assert_allclose(fresh.xy, shipped.xy, atol=1e-5)


def test_procedural_tracks_are_seeded_smooth_and_simple():
    a, b = generate_track(3), generate_track(3)
    np.testing.assert_array_equal(a.xy, b.xy)
    assert not np.allclose(generate_track(4).xy[:50], a.xy[:50])
    for seed in range(6):
        t = generate_track(seed)
        assert 150.0 <= t.length <= 400.0
        assert 1.0 / np.abs(t.kappa).max() >= 11.5
        assert geometry.min_separation(t.xy, window=48.0) >= 2.2 + 4.0 - 0.1
        assert load_track(f"procedural:{seed}").length == pytest.approx(t.length)


def test_csv_round_trip(tmp_path):
    t = generate_track(1, length=200.0, name="roundtrip")
    race, center = save_track(t, tmp_path)
    assert race.read_text().startswith("# s_m; x_m; y_m; psi_rad; kappa_radpm; vx_mps; ax_mps2")
    assert center.read_text().startswith("# x_m, y_m, w_tr_right_m, w_tr_left_m")
    loaded = load_track(race)
    np.testing.assert_allclose(loaded.xy, t.xy, atol=1e-5)
    np.testing.assert_allclose(loaded.speed, t.speed, atol=1e-5)
    np.testing.assert_allclose(loaded.center_xy, t.center_xy, atol=1e-5)
    from_center = load_track(center, raceline="file")
    assert from_center.length == pytest.approx(t.length, rel=1e-3)
    # A centerline alone gets the minimum-curvature raceline by default: it cuts corners.
    optimised = load_track(center)
    assert optimised.length < t.length
    bending = lambda tr: float(np.sum(tr.kappa**2) * tr.length / len(tr.kappa))
    assert bending(optimised) < 0.9 * bending(t)


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


CIRCLE = [
    f"{10 * math.cos(a):.4f}, {10 * math.sin(a):.4f}, 1.1, 1.1"
    for a in np.linspace(0, 2 * np.pi, 120, endpoint=False)
]


@pytest.mark.parametrize(
    "lines,message",
    [
        (
            ["# x_m, y_m, w_tr_right_m, w_tr_left_m", *CIRCLE[:5], "1.0, 2.0, 1.1", *CIRCLE[5:]],
            r"bad\.csv:7: expected 4 ','-separated columns",
        ),
        (["# header", *CIRCLE[:9], "nan, 1.0, 1.1, 1.1", *CIRCLE[9:]], r"bad\.csv:11: NaN"),
        (["# header", *CIRCLE[:3], "a, 1.0, 1.1, 1.1", *CIRCLE[3:]], r"bad\.csv:5: non-numeric"),
        (["# header", *CIRCLE[:2]], r"at least 3 points, found 2"),
        (["# header", *CIRCLE[:60]], r"not a closed loop"),
        (
            ["# header", *CIRCLE[:2], "10.0, 0.0, -1.0, 1.1", *CIRCLE[3:]],
            r"bad\.csv:4: track widths must be positive",
        ),
    ],
)
def test_bad_centerline_files_name_file_and_line(tmp_path, lines, message):
    with pytest.raises(TrackFormatError, match=message):
        load_track(_write(tmp_path, "bad.csv", lines))


def test_bad_raceline_file_names_line(tmp_path):
    good = generate_track(1, length=200.0, name="r")
    race, _ = save_track(good, tmp_path)
    rows = race.read_text().splitlines()
    rows[4] = "1.0; 2.0; 3.0"
    bad = _write(tmp_path, "bad_raceline.csv", rows)
    with pytest.raises(TrackFormatError, match=r"bad_raceline\.csv:5: expected 7 ';'-separated"):
        load_track(bad)


def test_unknown_track_lists_builtin_names():
    with pytest.raises(TrackFormatError, match="default"):
        load_track("monza")
    with pytest.raises(TrackFormatError, match="integer seed"):
        load_track("procedural:x")


def test_speed_profile_respects_curvature_and_accel_limits():
    t = load_track("sprint")
    v = speed_profile(t.s, t.kappa, t.length, 15.0, lateral_accel=6.0, max_accel=3.0, max_decel=4.0)
    assert np.all(v <= 15.0 + 1e-9)
    assert np.all(v**2 * np.abs(t.kappa) <= 6.0 + 1e-6)
    ds = np.diff(np.concatenate([t.s, [t.length]]))
    dv2 = np.roll(v, -1) ** 2 - v**2
    assert np.all(dv2 <= 2 * 3.0 * ds + 1e-6)
    assert np.all(-dv2 <= 2 * 4.0 * ds + 1e-6)
    assert v.min() < 10.0  # the tight corners actually limit speed


def test_projection_gives_progress_and_signed_lateral_error(default_track):
    arrays = default_track.arrays()
    for i in (0, 100, 777, len(default_track.xy) - 1):
        p = default_track.xy[i]
        psi = default_track.psi[i]
        normal = np.array([-math.sin(psi), math.cos(psi)])
        for offset in (-0.8, 0.0, 0.5):
            proj = project(arrays, jnp.asarray(p + offset * normal, jnp.float32))
            assert float(proj.lateral_error) == pytest.approx(offset, abs=5e-3)
            gap = (float(proj.progress) - default_track.s[i]) % default_track.length
            assert min(gap, default_track.length - gap) < 0.05


def test_reference_window_spacing_and_wrap(default_track):
    arrays = default_track.arrays()
    x = np.zeros(7, np.float32)
    x[:2] = default_track.xy[-3]  # just before the start line: the window must wrap
    win = reference_window(
        arrays, jnp.asarray(x), horizon=20, dt=0.05, speed=ReferenceSpeed.fixed(8.0), state_dim=7
    )
    pts = np.asarray(win.states[:, :2])
    step = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    np.testing.assert_allclose(step, 0.4, atol=0.01)
    assert np.linalg.norm(pts[-1] - default_track.xy[37]) < 0.3
    chords = np.diff(pts, axis=0)
    chord_heading = np.arctan2(chords[:, 1], chords[:, 0])
    np.testing.assert_allclose(
        np.cos(np.asarray(win.states[:-1, 4]) - chord_heading), 1.0, atol=1e-3
    )
    np.testing.assert_allclose(np.asarray(win.states[:, 3]), 8.0)


def test_border_coefficients_bracket_the_raceline_by_the_half_widths(default_track):
    border = border_coefficients(default_track)
    lateral = np.sum(border[:, :2] * default_track.xy, axis=1)
    np.testing.assert_allclose(border[:, 2] - lateral, 1.1, atol=0.02)
    np.testing.assert_allclose(lateral - border[:, 3], 1.1, atol=0.02)
    _, _, _, b = interpolate(default_track.arrays(), jnp.float32(12.34))
    assert float(jnp.linalg.norm(b[:2])) == pytest.approx(1.0, abs=1e-5)
