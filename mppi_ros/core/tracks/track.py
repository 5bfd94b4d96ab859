"""The :class:`Track` (a raceline to follow, a speed profile, and the road it lies on) and the
constructors that build one from centerlines, edge polylines or another track."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from mppi_ros.core.tracks import geometry as geo
from mppi_ros.core.tracks.profile import (
    ProfileLimits,
    accel_from_speed,
    limited_profile,
    profile_lap_time,
    speed_profile,
)
from mppi_ros.core.tracks.window import TrackArrays

PROCEDURAL_PREFIX = "procedural:"


class TrackFormatError(ValueError):
    """A track file or track definition that cannot be used; the message names file and line."""


@dataclasses.dataclass(frozen=True)
class Track:
    """A closed race track: a raceline (the path to follow) with its speed profile, and a
    centerline with per-point left and right half-widths (the road).

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
        normal = geo.left_normals(self.center_xy)
        left = self.center_xy + normal * self.width_left[:, None]
        right = self.center_xy - normal * self.width_right[:, None]
        return left, right

    def with_speed(self, speed: np.ndarray) -> Track:
        """A copy with the given per-point speed profile (acceleration recomputed)."""
        speed = np.asarray(speed, float)
        return dataclasses.replace(self, speed=speed, accel=accel_from_speed(self.s, speed))

    def with_speed_profile(self, max_speed: float, **limits: float) -> Track:
        """A copy whose speed follows :func:`speed_profile` (plain limits)."""
        return self.with_speed(speed_profile(self.s, self.kappa, self.length, max_speed, **limits))

    def with_limited_profile(self, limits: ProfileLimits) -> Track:
        """A copy whose speed follows :func:`limited_profile` under ``limits``."""
        return self.with_speed(limited_profile(self.s, self.kappa, self.length, limits))

    def ideal_lap_time(self, speed_scale: float = 1.0, max_speed: float = float("inf")) -> float:
        """Lap time driven exactly at ``min(speed_scale * profile, max_speed)``."""
        speed = np.minimum(speed_scale * self.speed, max_speed)
        return profile_lap_time(self.s, speed, self.length)

    def lateral_offsets(self) -> np.ndarray:
        """Signed offset (m, + left) of each raceline point from the centerline."""
        nearest = nearest_center(self)
        normals = geo.left_normals(self.center_xy)[nearest]
        return ((self.xy - self.center_xy[nearest]) * normals).sum(-1)

    def edge_clearance(self) -> tuple[np.ndarray, np.ndarray]:
        """Distance (m) from each raceline point to the left and right road edges."""
        border = border_coefficients(self)
        lateral = (border[:, :2] * self.xy).sum(-1)
        return border[:, 2] - lateral, lateral - border[:, 3]


def nearest_center(track: Track) -> np.ndarray:
    """Index of the nearest centerline point of every raceline point."""
    from scipy.spatial import cKDTree

    return cKDTree(track.center_xy).query(track.xy)[1]


def border_coefficients(track: Track) -> np.ndarray:
    """Half-plane coefficients ``(a, b, c_left, c_right)`` of the road at every raceline point.

    ``(a, b)`` is the unit left normal of the nearest centerline point; a position ``p`` is on
    the road when ``c_right <= a px + b py <= c_left`` (Step-MPPI paper eq. 37). These are the
    road's edges: the reference window shrinks them by the car's half-width and the live
    safety margin (:func:`mppi_ros.core.tracks.window.allowed_band`).
    """
    nearest = nearest_center(track)
    n = geo.left_normals(track.center_xy)[nearest]
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


def raceline_track(
    name: str,
    xy: np.ndarray,
    center_xy: np.ndarray,
    width_right: np.ndarray,
    width_left: np.ndarray,
    speed: np.ndarray | None = None,
    spacing: float | None = 0.2,
) -> Track:
    """A track from a raceline polyline (resampled at ``spacing`` along a periodic spline
    unless ``None``) and the road it lies on; speed ``None`` = zeros (set a profile next)."""
    xy = np.asarray(xy, float)
    if spacing is not None:
        xy = geo.resample_closed(xy, spacing)
    s = geo.arc_length(xy)
    speed = np.zeros(len(xy)) if speed is None else np.asarray(speed, float)
    return Track(
        name=name,
        s=s,
        xy=xy,
        psi=geo.headings(xy),
        kappa=geo.curvature(xy),
        speed=speed,
        accel=accel_from_speed(s, speed),
        center_xy=np.asarray(center_xy, float),
        width_right=np.asarray(width_right, float),
        width_left=np.asarray(width_left, float),
    )


def track_from_centerline(
    name: str,
    center_xy: np.ndarray,
    width_right: np.ndarray,
    width_left: np.ndarray,
    max_speed: float = 10.0,
    spacing: float = 0.2,
) -> Track:
    """Builds a track whose raceline is the centerline resampled at ``spacing`` metres."""
    track = raceline_track(name, center_xy, center_xy, width_right, width_left, spacing=spacing)
    return track.with_speed_profile(max_speed)


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
    s_loop = geo.arc_length(loop)
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
    # Along a periodic spline: a linearly resampled line has a staircase heading.
    xy_n = geo.resample_closed(xy, 0.0, count=n)
    s = geo.arc_length(xy_n)
    speed_n = np.interp(s * (s_loop[-1] / geo.loop_length(xy_n)), s_loop, speed_loop)
    center, half_width = road_from_edges(left, right)
    return raceline_track(name, xy_n, center, half_width, half_width, speed_n, spacing=None)


def road_from_edges(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centerline and half-width of the road between two edge polylines.

    Edges of one length are taken as paired point by point (what the track publisher and
    :meth:`Track.border_polylines` produce): the centre is each pair's midpoint, exact in
    hairpins too. Otherwise each left point is paired with the nearest point of the right edge.
    """
    if len(left) != len(right):
        right = geo.nearest_on_closed_polyline(left, right)
    return 0.5 * (left + right), 0.5 * np.linalg.norm(left - right, axis=1)


def resample_track(track: Track, points: int) -> Track:
    """``track`` with its raceline at ``points`` points uniform in arc length (along a periodic
    spline; the speed profile interpolated at the same arc length); the road is kept."""
    xy = geo.resample_closed(track.xy, 0.0, count=int(points))
    s = geo.arc_length(xy)
    old = geo.arc_length(np.vstack([track.xy, track.xy[:1]]))
    length = geo.loop_length(xy)
    speed = geo.interp_closed(s * (old[-1] / length), old[:-1], track.speed, old[-1])
    return raceline_track(
        track.name, xy, track.center_xy, track.width_right, track.width_left, speed, spacing=None
    )


def circuit_stats(track: Track) -> dict[str, float]:
    """The geometry that makes a circuit hard (compare REFERENCE statistics of real ones).

    ``min_radius_m`` and ``share_radius_below_12m`` are of the raceline;
    ``raceline_max_offset_m`` is the largest distance of the raceline from the centerline;
    ``min_half_width_m`` the narrowest road half-width; ``min_edge_clearance_m`` the closest
    approach of the raceline (its centre) to a road edge.
    """
    radius = 1.0 / np.maximum(np.abs(track.kappa), 1e-9)
    left, right = track.edge_clearance()
    return {
        "length_m": round(track.length, 2),
        "min_radius_m": round(float(radius.min()), 3),
        "share_radius_below_12m": round(float(np.mean(radius < 12.0)), 4),
        "raceline_max_offset_m": round(float(np.abs(track.lateral_offsets()).max()), 3),
        "min_half_width_m": round(float(min(track.width_left.min(), track.width_right.min())), 3),
        "min_edge_clearance_m": round(float(min(left.min(), right.min())), 3),
        "ideal_lap_time_s": round(track.ideal_lap_time(), 2),
    }
