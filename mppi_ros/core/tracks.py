"""Race tracks: F1TENTH CSV loading, procedural generation, speed profiles, and the pure JAX
functions that turn a track and a vehicle state into a controller observation.

NumPy side: :class:`Track` (load, generate, save). JAX side: :class:`TrackArrays`, a pytree of
arrays, and pure functions (:func:`project`, :func:`reference_window`, ...) that controllers
call inside jit.

File formats (REFERENCE.md section 3):
  * raceline: ``;``-separated ``s_m; x_m; y_m; psi_rad; kappa_radpm; vx_mps; ax_mps2``
    (psi = 0 along +x), ``#`` comments;
  * centerline: ``,``-separated ``x_m, y_m, w_tr_right_m, w_tr_left_m``.
"""

from __future__ import annotations

import dataclasses
import math
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = jax.Array

RACELINE_COLUMNS = ("s_m", "x_m", "y_m", "psi_rad", "kappa_radpm", "vx_mps", "ax_mps2")
CENTERLINE_COLUMNS = ("x_m", "y_m", "w_tr_right_m", "w_tr_left_m")
BUILTIN_TRACKS = {
    # name: (generator seed, target length in m). Regenerate with `mppi-ros tracks generate`.
    "default": (5, 260.0),
    "sprint": (22, 190.0),
    "endurance": (3, 370.0),
}
PROCEDURAL_PREFIX = "procedural:"


class TrackFormatError(ValueError):
    """A track file or track definition that cannot be used; the message names file and line."""


@dataclasses.dataclass(frozen=True)
class Track:
    """A closed race track: a raceline (the path to follow) and a centerline with widths.

    All arrays are NumPy, one row per point, the loop closed implicitly (last -> first).
    """

    name: str
    s: np.ndarray
    xy: np.ndarray
    psi: np.ndarray
    kappa: np.ndarray
    speed: np.ndarray
    accel: np.ndarray
    center_xy: np.ndarray
    width_right: np.ndarray
    width_left: np.ndarray

    @property
    def length(self) -> float:
        """Closed-loop length of the raceline in metres."""
        return float(self.s[-1] + np.linalg.norm(self.xy[0] - self.xy[-1]))

    def arrays(self) -> TrackArrays:
        """The JAX pytree used by the pure observation functions."""
        return TrackArrays(
            s=jnp.asarray(self.s, jnp.float32),
            xy=jnp.asarray(self.xy, jnp.float32),
            psi=jnp.asarray(self.psi, jnp.float32),
            speed=jnp.asarray(self.speed, jnp.float32),
            border=jnp.asarray(local_border(border_coefficients(self), self.xy), jnp.float32),
            length=jnp.asarray(self.length, jnp.float32),
        )

    def border_polylines(self) -> tuple[np.ndarray, np.ndarray]:
        """Left and right track edges as (N, 2) polylines, from the centerline and widths."""
        normal = _left_normals(self.center_xy)
        left = self.center_xy + normal * self.width_left[:, None]
        right = self.center_xy - normal * self.width_right[:, None]
        return left, right

    def with_speed_profile(self, max_speed: float, **limits: float) -> Track:
        """A copy whose raceline speed and acceleration follow :func:`speed_profile`."""
        speed = speed_profile(self.s, self.kappa, self.length, max_speed, **limits)
        return dataclasses.replace(self, speed=speed, accel=_accel_from_speed(self.s, speed))


# --------------------------------------------------------------------------- geometry helpers


def _closed_diff(points: np.ndarray) -> np.ndarray:
    return np.roll(points, -1, axis=0) - points


def _headings(xy: np.ndarray) -> np.ndarray:
    """Heading at each point of a closed polyline from central differences (0 = +x)."""
    d = np.roll(xy, -1, axis=0) - np.roll(xy, 1, axis=0)
    return np.arctan2(d[:, 1], d[:, 0])


def _left_normals(xy: np.ndarray) -> np.ndarray:
    psi = _headings(xy)
    return np.stack([-np.sin(psi), np.cos(psi)], axis=1)


def _curvature(xy: np.ndarray) -> np.ndarray:
    """Signed curvature of a closed polyline (positive = turning left)."""
    psi = _headings(xy)
    seg = np.linalg.norm(_closed_diff(xy), axis=1)
    dpsi = np.angle(np.exp(1j * (np.roll(psi, -1) - np.roll(psi, 1))))
    ds = seg + np.roll(seg, 1)
    return dpsi / np.maximum(ds, 1e-9)


def _arc_length(xy: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def _resample_closed(xy: np.ndarray, spacing: float) -> np.ndarray:
    """Resamples a closed polyline at uniform arc-length spacing along a periodic cubic spline.

    The spline keeps the heading and curvature smooth, which linear interpolation would not.
    """
    from scipy.interpolate import CubicSpline

    loop = np.vstack([xy, xy[:1]])
    spline = CubicSpline(_arc_length(loop), loop, bc_type="periodic")
    dense_t = np.linspace(0.0, _arc_length(loop)[-1], 20 * len(loop))
    dense = spline(dense_t)
    s = _arc_length(dense)
    n = max(round(s[-1] / spacing), 3)
    return spline(np.interp(np.linspace(0.0, s[-1], n, endpoint=False), s, dense_t))


def _accel_from_speed(s: np.ndarray, speed: np.ndarray) -> np.ndarray:
    ds = np.diff(np.concatenate([s, [s[-1] + (s[-1] - s[-2])]]))
    return speed * (np.roll(speed, -1) - speed) / np.maximum(ds, 1e-9)


def speed_profile(
    s: np.ndarray,
    kappa: np.ndarray,
    length: float,
    max_speed: float,
    lateral_accel: float = 8.0,
    max_accel: float = 5.0,
    max_decel: float = 7.0,
) -> np.ndarray:
    """Curvature-limited speed profile with acceleration and braking limits on a closed loop.

    ``v <= sqrt(lateral_accel / |kappa|)``, then a forward pass (accelerating) and a backward
    pass (braking) over two laps so the limits also hold across the start line.
    """
    if max_speed <= 0:
        raise ValueError(f"max_speed must be positive, got {max_speed}")
    v = np.minimum(max_speed, np.sqrt(lateral_accel / np.maximum(np.abs(kappa), 1e-6)))
    ds = np.diff(np.concatenate([s, [length]]))
    n = len(v)
    for _ in range(2):
        for i in range(n):  # forward: v_{i+1}^2 <= v_i^2 + 2 a ds
            j = (i + 1) % n
            v[j] = min(v[j], math.sqrt(v[i] ** 2 + 2.0 * max_accel * ds[i]))
        for i in range(n - 1, -1, -1):  # backward: v_i^2 <= v_{i+1}^2 + 2 d ds
            j = (i + 1) % n
            v[i] = min(v[i], math.sqrt(v[j] ** 2 + 2.0 * max_decel * ds[i]))
    return v


def track_from_centerline(
    name: str,
    center_xy: np.ndarray,
    width_right: np.ndarray,
    width_left: np.ndarray,
    max_speed: float = 10.0,
    spacing: float = 0.2,
) -> Track:
    """Builds a track whose raceline is the centerline resampled at ``spacing`` metres."""
    xy = _resample_closed(center_xy, spacing)
    s = _arc_length(xy)
    track = Track(
        name=name,
        s=s,
        xy=xy,
        psi=_headings(xy),
        kappa=_curvature(xy),
        speed=np.full(len(xy), max_speed),
        accel=np.zeros(len(xy)),
        center_xy=np.asarray(center_xy, float),
        width_right=np.asarray(width_right, float),
        width_left=np.asarray(width_left, float),
    )
    return track.with_speed_profile(max_speed)


def border_coefficients(track: Track) -> np.ndarray:
    """Half-plane coefficients ``(a, b, c_left, c_right)`` at every raceline point.

    ``(a, b)`` is the unit left normal of the nearest centerline point; a position ``p`` is on
    the track when ``c_right <= a px + b py <= c_left`` (Step-MPPI paper eq. 37). No safety
    margin is applied here: controllers subtract their (live-tunable) margin.
    """
    normals = _left_normals(track.center_xy)
    d2 = ((track.xy[:, None, :] - track.center_xy[None, :, :]) ** 2).sum(-1)
    nearest = np.argmin(d2, axis=1)
    n = normals[nearest]
    offset = (n * track.center_xy[nearest]).sum(-1)
    c_left = offset + track.width_left[nearest]
    c_right = offset - track.width_right[nearest]
    return np.stack([n[:, 0], n[:, 1], c_left, c_right], axis=1)


def local_border(border: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Border rows with ``c`` measured from each row's raceline point (``c - a x - b y``),
    computed in float64: small numbers that stay precise in float32 far from the origin."""
    border = np.array(border, np.float64)
    border[:, 2:] -= (border[:, :2] * np.asarray(xy, np.float64)).sum(-1, keepdims=True)
    return border


def _nearest_on_closed_polyline(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """For each point, the closest point on the closed polyline ``poly`` (segment-exact)."""
    start = poly
    seg = np.roll(poly, -1, axis=0) - poly
    rel = points[:, None, :] - start[None]
    t = np.clip((rel * seg[None]).sum(-1) / np.maximum((seg**2).sum(-1), 1e-12)[None], 0.0, 1.0)
    closest = start[None] + t[..., None] * seg[None]
    best = np.argmin(((points[:, None, :] - closest) ** 2).sum(-1), axis=1)
    return closest[np.arange(len(points)), best]


def track_from_polylines(
    name: str,
    xy: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    speed: np.ndarray | None = None,
    points: int | None = None,
    max_speed: float = 10.0,
) -> Track:
    """Builds a track from a raceline and the two track edges, e.g. received as ROS paths.

    The raceline is resampled to ``points`` points at uniform arc length (a fixed count keeps
    the shapes of a compiled controller fixed whatever path arrives). Headings and curvature
    come from the resampled line; the centerline and widths at each point come from the
    nearest points of the two edges.

    Args:
        name: Track name.
        xy: ``(N, 2)`` closed raceline (the last point need not repeat the first).
        left: ``(L, 2)`` left edge; right: ``(R, 2)`` right edge.
        speed: ``(N,)`` per-point speed profile (e.g. from timed path stamps), or ``None``
            for ``max_speed`` everywhere.
        points: Resampled point count; default: keep ``N``.
        max_speed: Speed where ``speed`` is not given.

    Raises:
        TrackFormatError: With fewer than 3 distinct points, non-finite values, a raceline
            shorter than 1 m, or edges with fewer than 2 points.
    """
    xy = np.asarray(xy, float).reshape(-1, 2)
    left = np.asarray(left, float).reshape(-1, 2)
    right = np.asarray(right, float).reshape(-1, 2)
    for label, arr in (("raceline", xy), ("left edge", left), ("right edge", right)):
        if not np.all(np.isfinite(arr)):
            raise TrackFormatError(f"{name}: {label} has non-finite coordinates")
    if len(xy) > 1 and np.linalg.norm(xy[-1] - xy[0]) < 1e-6:
        xy = xy[:-1]  # an explicitly closed loop
    keep = np.concatenate([[True], np.linalg.norm(np.diff(xy, axis=0), axis=1) > 1e-6])
    xy = xy[keep]
    if len(xy) < 3:
        raise TrackFormatError(f"{name}: raceline needs at least 3 distinct points, got {len(xy)}")
    if len(left) < 2 or len(right) < 2:
        raise TrackFormatError(f"{name}: each track edge needs at least 2 points")
    loop = np.vstack([xy, xy[:1]])
    s_loop = _arc_length(loop)
    if s_loop[-1] < 1.0:
        raise TrackFormatError(f"{name}: raceline is {s_loop[-1]:.3f} m long (degenerate)")
    if speed is None:
        speed_loop = np.full(len(loop), float(max_speed))
    else:
        speed = np.asarray(speed, float).reshape(-1)[: len(keep)][keep]
        if len(speed) != len(xy) or not np.all(np.isfinite(speed)):
            raise TrackFormatError(f"{name}: speed profile must be finite, one value per point")
        speed_loop = np.concatenate([speed, speed[:1]])
    n = int(points) if points else len(xy)
    s = np.linspace(0.0, s_loop[-1], n, endpoint=False)
    xy_n = np.stack([np.interp(s, s_loop, loop[:, 0]), np.interp(s, s_loop, loop[:, 1])], axis=1)
    speed_n = np.interp(s, s_loop, speed_loop)
    nearest_left = _nearest_on_closed_polyline(xy_n, left)
    nearest_right = _nearest_on_closed_polyline(xy_n, right)
    center = 0.5 * (nearest_left + nearest_right)
    half_width = 0.5 * np.linalg.norm(nearest_left - nearest_right, axis=1)
    return Track(
        name=name,
        s=s,
        xy=xy_n,
        psi=_headings(xy_n),
        kappa=_curvature(xy_n),
        speed=speed_n,
        accel=_accel_from_speed(s, speed_n),
        center_xy=center,
        width_right=half_width,
        width_left=half_width,
    )


def resample_track(track: Track, points: int) -> Track:
    """``track`` with its raceline at ``points`` uniformly spaced points (edges unchanged)."""
    left, right = track.border_polylines()
    return track_from_polylines(track.name, track.xy, left, right, track.speed, points)


# --------------------------------------------------------------------------- procedural tracks


def generate_track(
    seed: int,
    length: float | None = None,
    half_width: float = 1.1,
    min_radius: float = 12.0,
    min_separation: float = 4.0,
    max_speed: float = 10.0,
    name: str | None = None,
    max_tries: int = 200,
) -> Track:
    """Generates a smooth, self-intersection-free closed track from a seed.

    A random star-shaped Fourier curve is stretched, scaled to ``length`` (drawn from
    [150, 400] m when not given) and accepted only when its smallest radius of curvature is at
    least ``min_radius`` and non-neighbouring parts of the track stay ``min_separation`` metres
    apart edge to edge. The same seed always gives the same track.

    Raises:
        ValueError: If no valid track is found in ``max_tries`` attempts.
    """
    rng = np.random.default_rng(seed)
    target = float(length) if length is not None else float(rng.uniform(150.0, 400.0))
    theta = np.linspace(0.0, 2.0 * np.pi, 4000, endpoint=False)
    for _ in range(max_tries):
        radius = np.ones_like(theta)
        for k in range(2, 7):
            amp = rng.uniform(0.0, 0.6 / k)
            radius += amp * np.cos(k * theta + rng.uniform(0.0, 2.0 * np.pi))
        if radius.min() < 0.3:
            continue
        stretch = rng.uniform(1.0, 2.5)
        rot = rng.uniform(0.0, 2.0 * np.pi)
        xy = np.stack([stretch * radius * np.cos(theta), radius * np.sin(theta)], axis=1)
        xy = xy @ np.array([[np.cos(rot), np.sin(rot)], [-np.sin(rot), np.cos(rot)]])
        loop_len = _arc_length(np.vstack([xy, xy[:1]]))[-1]
        xy *= target / loop_len
        xy = _resample_closed(xy, 0.5)
        kappa = _curvature(xy)
        if 1.0 / np.abs(kappa).max() < min_radius:
            continue
        # F1TENTH-like: turns both ways, not just a convex blob.
        if -kappa.min() < 1.0 / (4.0 * min_radius):
            continue
        if _min_separation(xy, window=4.0 * min_radius) < 2.0 * half_width + min_separation:
            continue
        xy -= xy[0]  # start line at the origin, a reproducible anchor for plots
        widths = np.full(len(xy), half_width)
        return track_from_centerline(
            name or f"{PROCEDURAL_PREFIX}{seed}", xy, widths, widths, max_speed=max_speed
        )
    raise ValueError(
        f"no valid track for seed {seed} in {max_tries} tries (min_radius={min_radius}, "
        f"length={target:.0f}); relax min_radius or change the length"
    )


def _min_radius(xy: np.ndarray) -> float:
    return float(1.0 / max(np.abs(_curvature(xy)).max(), 1e-9))


def _min_separation(xy: np.ndarray, window: float) -> float:
    """Smallest distance between points more than ``window`` metres apart along the loop."""
    s = _arc_length(np.vstack([xy, xy[:1]]))
    total = s[-1]
    s = s[:-1]
    along = np.abs(s[:, None] - s[None, :])
    along = np.minimum(along, total - along)
    dist = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
    far = along > window
    return float(dist[far].min()) if far.any() else float("inf")


# --------------------------------------------------------------------------- CSV I/O


def _read_rows(path: Path, delimiter: str, columns: tuple[str, ...]) -> np.ndarray:
    """Reads numeric rows, raising :class:`TrackFormatError` with file and line on problems."""
    rows: list[list[float]] = []
    try:
        text = path.read_text()
    except OSError as err:
        raise TrackFormatError(f"{path}: cannot read track file ({err.strerror})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in stripped.split(delimiter)]
        if len(fields) != len(columns):
            raise TrackFormatError(
                f"{path}:{lineno}: expected {len(columns)} {delimiter!r}-separated columns "
                f"({', '.join(columns)}), found {len(fields)}"
            )
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise TrackFormatError(f"{path}:{lineno}: non-numeric value in {stripped!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise TrackFormatError(f"{path}:{lineno}: NaN or infinite value in {stripped!r}")
        rows.append(values)
    if len(rows) < 3:
        raise TrackFormatError(f"{path}: a track needs at least 3 points, found {len(rows)}")
    return np.asarray(rows)


def _check_closed(path: Path, xy: np.ndarray) -> np.ndarray:
    """Drops a repeated end point and rejects loops whose ends are far apart."""
    if np.linalg.norm(xy[-1] - xy[0]) < 1e-6:
        xy = xy[:-1]
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    if np.any(seg < 1e-9):
        line = int(np.argmin(seg)) + 2
        raise TrackFormatError(f"{path}: point {line} repeats the previous point")
    gap = float(np.linalg.norm(xy[-1] - xy[0]))
    if gap > 5.0 * float(np.median(seg)) + 1e-6:
        raise TrackFormatError(
            f"{path}: the track is not a closed loop (last point is {gap:.2f} m from the first; "
            f"median spacing {np.median(seg):.2f} m)"
        )
    return xy


def load_centerline_csv(path: str | Path, max_speed: float = 10.0) -> Track:
    """Loads an F1TENTH centerline file; the raceline is the resampled centerline."""
    path = Path(path)
    data = _read_rows(path, ",", CENTERLINE_COLUMNS)
    if np.any(data[:, 2:] <= 0):
        line = _first_data_line(path, int(np.argmax((data[:, 2:] <= 0).any(1))))
        raise TrackFormatError(f"{path}:{line}: track widths must be positive")
    xy = _check_closed(path, data[:, :2])
    n = len(xy)
    return track_from_centerline(
        path.stem.removesuffix("_centerline"), xy, data[:n, 2], data[:n, 3], max_speed=max_speed
    )


def load_raceline_csv(path: str | Path, centerline: str | Path | None = None) -> Track:
    """Loads an F1TENTH raceline file, with borders from ``centerline`` (or a sibling
    ``*_centerline.csv``). Without a centerline, borders are 1.1 m each side of the raceline.
    """
    path = Path(path)
    data = _read_rows(path, ";", RACELINE_COLUMNS)
    xy = _check_closed(path, data[:, 1:3])
    data = data[: len(xy)]
    if np.any(np.diff(data[:, 0]) <= 0):
        line = _first_data_line(path, int(np.argmax(np.diff(data[:, 0]) <= 0)) + 1)
        raise TrackFormatError(f"{path}:{line}: arc length s_m must increase")
    if centerline is None:
        sibling = path.with_name(path.name.replace("_raceline", "_centerline"))
        centerline = sibling if sibling != path and sibling.exists() else None
    if centerline is not None:
        center = load_centerline_csv(centerline)
        center_xy, w_right, w_left = center.center_xy, center.width_right, center.width_left
    else:
        center_xy, w_right, w_left = xy, np.full(len(xy), 1.1), np.full(len(xy), 1.1)
    return Track(
        name=path.stem.removesuffix("_raceline"),
        s=data[:, 0] - data[0, 0],
        xy=xy,
        psi=data[:, 3],
        kappa=data[:, 4],
        speed=data[:, 5],
        accel=data[:, 6],
        center_xy=center_xy,
        width_right=w_right,
        width_left=w_left,
    )


def _first_data_line(path: Path, row: int) -> int:
    """1-based file line number of the ``row``-th data row (comments skipped)."""
    count = -1
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip() and not line.strip().startswith("#"):
            count += 1
            if count == row:
                return lineno
    return -1


def save_track(track: Track, directory: str | Path) -> tuple[Path, Path]:
    """Writes ``<name>_raceline.csv`` and ``<name>_centerline.csv`` in the F1TENTH formats."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = track.name.replace(PROCEDURAL_PREFIX, "procedural_")
    race = directory / f"{stem}_raceline.csv"
    center = directory / f"{stem}_centerline.csv"
    race_rows = np.column_stack(
        [track.s, track.xy, track.psi, track.kappa, track.speed, track.accel]
    )
    np.savetxt(race, race_rows, delimiter="; ", fmt="%.6f", header="; ".join(RACELINE_COLUMNS))
    center_rows = np.column_stack([track.center_xy, track.width_right, track.width_left])
    np.savetxt(
        center, center_rows, delimiter=", ", fmt="%.6f", header=", ".join(CENTERLINE_COLUMNS)
    )
    return race, center


def builtin_track_dir() -> Path:
    return Path(str(resources.files("mppi_ros") / "data" / "tracks"))


def builtin_track_names() -> list[str]:
    return sorted(BUILTIN_TRACKS)


def load_track(spec: str | Path) -> Track:
    """Loads a track from a built-in name, ``procedural:SEED`` or a CSV path.

    A CSV path may be a raceline (``;``-separated, 7 columns) or a centerline (``,``-separated,
    4 columns); the format is recognised from the first data line.

    Raises:
        TrackFormatError: For an unknown name or a bad file; the message lists the valid names
            or names the file and line.
    """
    spec = str(spec)
    if spec in BUILTIN_TRACKS:
        return load_raceline_csv(builtin_track_dir() / f"{spec}_raceline.csv")
    if spec.startswith(PROCEDURAL_PREFIX):
        try:
            seed = int(spec[len(PROCEDURAL_PREFIX) :])
        except ValueError:
            raise TrackFormatError(
                f"procedural track needs an integer seed, got {spec!r}"
            ) from None
        return generate_track(seed)
    path = Path(spec)
    if not path.suffix == ".csv" or not path.exists():
        raise TrackFormatError(
            f"unknown track {spec!r}: not a built-in name ({', '.join(builtin_track_names())}), "
            f"not '{PROCEDURAL_PREFIX}SEED', and not an existing .csv file"
        )
    first = next(
        (
            ln
            for ln in path.read_text().splitlines()
            if ln.strip() and not ln.strip().startswith("#")
        ),
        "",
    )
    if ";" in first:
        return load_raceline_csv(path)
    return load_centerline_csv(path)


def generate_builtin_tracks(directory: str | Path | None = None) -> list[Path]:
    """Regenerates the shipped built-in tracks (deterministic; see ``BUILTIN_TRACKS``)."""
    directory = Path(directory) if directory is not None else builtin_track_dir()
    written: list[Path] = []
    for name, (seed, length) in BUILTIN_TRACKS.items():
        written.extend(save_track(generate_track(seed, length=length, name=name), directory))
    return written


# --------------------------------------------------------------------------- JAX side


@struct.dataclass
class TrackArrays:
    """Raceline arrays for jit-compiled code.

    ``border`` rows are ``(a, b, c_left, c_right)`` with the offsets measured from the row's
    raceline point (:func:`local_border`); :func:`interpolate_ahead` returns them relative
    to any origin.
    """

    s: Array
    xy: Array
    psi: Array
    speed: Array
    border: Array
    length: Array


@struct.dataclass
class Projection:
    """Where a position lies relative to the raceline."""

    progress: Array  # arc length of the closest raceline point, in [0, length)
    lateral_error: Array  # signed distance to the raceline, positive to the left
    heading: Array  # raceline heading at the projection
    segment: Array  # index of the raceline point that starts the closest segment
    along: Array  # distance (m) from that point to the projection


def project(track: TrackArrays, position: Array) -> Projection:
    """Projects a planar position onto the closed raceline (nearest segment).

    Works on offsets from ``position``: float32 keeps its precision far from the map origin
    (at 100 m a coordinate's rounding step is 8e-6 m; the offsets are exact near the car).
    """
    n = track.xy.shape[0]
    rel = track.xy - position
    i = jnp.argmin(jnp.sum(rel**2, axis=1))

    def onto_segment(start: Array) -> tuple[Array, ...]:
        end = (start + 1) % n
        to_start = rel[start]  # p0 - position
        seg = track.xy[end] - track.xy[start]
        seg_len = jnp.maximum(jnp.linalg.norm(seg), 1e-9)
        t = jnp.clip(-jnp.dot(to_start, seg) / seg_len**2, 0.0, 1.0)
        dist2 = jnp.sum((to_start + t * seg) ** 2)
        cross = seg[1] * to_start[0] - seg[0] * to_start[1]
        return dist2, t, t * seg_len, cross / seg_len, jnp.arctan2(seg[1], seg[0]), start

    prev = onto_segment((i - 1) % n)
    nxt = onto_segment(i)
    # Outside a corner both segments' closest point is the vertex: the distances tie exactly
    # and rounding would pick either segment (a jump in heading and progress). Take the next
    # segment there, so the result does not depend on how the arithmetic rounds.
    at_vertex = (prev[1] >= 1.0) & (nxt[1] <= 0.0)
    pick_next = (nxt[0] <= prev[0]) | at_vertex
    along, lateral, heading, segment = (
        jnp.where(pick_next, a, b) for a, b in zip(nxt[2:], prev[2:], strict=True)
    )
    return Projection(
        progress=jnp.mod(track.s[segment] + along, track.length),
        lateral_error=lateral,
        heading=heading,
        segment=segment,
        along=along,
    )


def interpolate_ahead(
    track: TrackArrays, anchor: Array, ahead: Array, origin: Array
) -> tuple[Array, Array, Array, Array]:
    """Position, heading, profile speed and border half-plane ``ahead`` metres of arc past
    raceline point ``anchor``, with position and border offsets relative to ``origin``.

    Arc lengths are taken relative to the anchor and positions relative to the origin, so the
    result is as precise near a car 200 m down the track as at the start line.
    """
    n = track.s.shape[0]
    length = track.length
    s_anchor = track.s[anchor]
    target = jnp.mod(s_anchor + ahead, length)  # only picks the segment
    i = jnp.clip(jnp.searchsorted(track.s, target, side="right") - 1, 0, n - 1)
    j = (i + 1) % n
    gap = track.s[i] - s_anchor  # exact for nearby points
    s_i = gap - length * jnp.round((gap - ahead) / length)  # the lap that puts it near ahead
    seg = jnp.where(j == 0, length, track.s[j]) - track.s[i]
    t = jnp.clip((ahead - s_i) / jnp.maximum(seg, 1e-9), 0.0, 1.0)
    dpsi = jnp.arctan2(jnp.sin(track.psi[j] - track.psi[i]), jnp.cos(track.psi[j] - track.psi[i]))
    psi = track.psi[i] + t * dpsi
    speed = (1.0 - t) * track.speed[i] + t * track.speed[j]
    rel_i, rel_j = track.xy[i] - origin, track.xy[j] - origin
    xy = (1.0 - t) * rel_i + t * rel_j
    row_i = track.border[i].at[2:].add(jnp.dot(track.border[i, :2], rel_i))
    row_j = track.border[j].at[2:].add(jnp.dot(track.border[j, :2], rel_j))
    border = (1.0 - t) * row_i + t * row_j
    normal = border[:2] / jnp.linalg.norm(border[:2])
    return xy, psi, speed, jnp.concatenate([normal, border[2:]])


def interpolate(track: TrackArrays, s: Array) -> tuple[Array, Array, Array, Array]:
    """Position, heading, profile speed and border coefficients at arc length ``s``."""
    return interpolate_ahead(track, 0, jnp.mod(s, track.length), jnp.zeros(2))


@struct.dataclass
class ReferenceWindow:
    """The reference the controller tracks over its horizon.

    Attributes:
        states: ``(H, nx)`` reference states for the predicted states ``x_1 .. x_H``; position,
            heading and speed entries are filled, the rest are zero. Positions are relative
            to ``origin``.
        border: ``(H, 4)`` half-plane coefficients ``(a, b, c_left, c_right)``, no margin,
            relative to ``origin``.
        progress: Arc length of the projection of the current state.
        lateral_error: Signed distance of the current state to the raceline.
        origin: ``(2,)`` world position of the frame of ``states`` and ``border``.
    """

    states: Array
    border: Array
    progress: Array
    lateral_error: Array
    origin: Array


def reference_window(
    track: TrackArrays,
    state: Array,
    horizon: int,
    dt: float,
    reference_speed: Array,
    state_dim: int,
    position_indices: tuple[int, int] = (0, 1),
    heading_index: int | None = 4,
    speed_index: int | None = 3,
    use_speed_profile: bool = False,
    origin: Array | None = None,
) -> ReferenceWindow:
    """Reference points ahead of the vehicle, spaced by the reference speed times ``dt``.

    The window starts at the projection of ``state`` and advances ``v * dt`` per step with
    ``v = reference_speed`` (or ``min(reference_speed, profile speed)`` when
    ``use_speed_profile``). ``reference_speed`` is an array, so changing it never recompiles.
    With ``origin`` the positions and borders are expressed relative to it (world frame by
    default).
    """
    proj = project(track, state[jnp.array(position_indices)])
    origin = jnp.zeros(2) if origin is None else origin

    def advance(ahead: Array, _: None) -> tuple[Array, tuple[Array, ...]]:
        _, _, profile, _ = interpolate_ahead(track, proj.segment, ahead, origin)
        v = jnp.minimum(reference_speed, profile) if use_speed_profile else reference_speed
        ahead_next = ahead + v * dt
        xy, psi, _, border = interpolate_ahead(track, proj.segment, ahead_next, origin)
        return ahead_next, (xy, psi, jnp.broadcast_to(v, ()), border)

    _, (xy, psi, speed, border) = jax.lax.scan(advance, proj.along, None, length=horizon)
    states = jnp.zeros((horizon, state_dim))
    states = states.at[:, position_indices[0]].set(xy[:, 0])
    states = states.at[:, position_indices[1]].set(xy[:, 1])
    if heading_index is not None:
        states = states.at[:, heading_index].set(psi)
    if speed_index is not None:
        states = states.at[:, speed_index].set(speed)
    return ReferenceWindow(
        states=states,
        border=border,
        progress=proj.progress,
        lateral_error=proj.lateral_error,
        origin=origin,
    )
