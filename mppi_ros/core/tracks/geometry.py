"""NumPy geometry of closed polylines: headings, normals, curvature, arc length, resampling,
nearest points and the separation checks the generators use."""

from __future__ import annotations

import numpy as np


def closed_diff(points: np.ndarray) -> np.ndarray:
    """Segment vectors of a closed polyline (last point -> first included)."""
    return np.roll(points, -1, axis=0) - points


def headings(xy: np.ndarray) -> np.ndarray:
    """Heading at each point of a closed polyline from central differences (0 = +x)."""
    d = np.roll(xy, -1, axis=0) - np.roll(xy, 1, axis=0)
    return np.arctan2(d[:, 1], d[:, 0])


def left_normals(xy: np.ndarray) -> np.ndarray:
    """Unit normals pointing to the left of the direction of travel."""
    psi = headings(xy)
    return np.stack([-np.sin(psi), np.cos(psi)], axis=1)


def curvature(xy: np.ndarray) -> np.ndarray:
    """Signed curvature of a closed polyline (positive = turning left)."""
    psi = headings(xy)
    seg = np.linalg.norm(closed_diff(xy), axis=1)
    dpsi = np.angle(np.exp(1j * (np.roll(psi, -1) - np.roll(psi, 1))))
    ds = seg + np.roll(seg, 1)
    return dpsi / np.maximum(ds, 1e-9)


def arc_length(xy: np.ndarray) -> np.ndarray:
    """Cumulative arc length of an open polyline, starting at 0."""
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def loop_length(xy: np.ndarray) -> float:
    """Length of a closed polyline."""
    return float(arc_length(np.vstack([xy, xy[:1]]))[-1])


def periodic_spline(xy: np.ndarray):
    """``(spline, total length)``: a periodic cubic spline through a closed polyline,
    parameterised by chord length."""
    from scipy.interpolate import CubicSpline

    loop = np.vstack([xy, xy[:1]])
    s = arc_length(loop)
    return CubicSpline(s, loop, bc_type="periodic"), float(s[-1])


def resample_closed(xy: np.ndarray, spacing: float, count: int | None = None) -> np.ndarray:
    """Resamples a closed polyline at uniform arc-length spacing along a periodic cubic spline
    (``count`` points when given, else one every ``spacing`` metres).

    The spline keeps the heading and curvature smooth, which linear interpolation would not:
    the heading of a linearly resampled polyline is a staircase, and a learned policy reads
    its steps as heading errors.
    """
    spline, total = periodic_spline(xy)
    dense_t = np.linspace(0.0, total, 20 * (len(xy) + 1))
    dense = spline(dense_t)
    s = arc_length(dense)
    n = count if count is not None else max(round(s[-1] / spacing), 3)
    return spline(np.interp(np.linspace(0.0, s[-1], n, endpoint=False), s, dense_t))


def interp_closed(s_query: np.ndarray, s: np.ndarray, values: np.ndarray, length: float):
    """Linear interpolation of per-point ``values`` on a closed loop of ``length``."""
    s_loop = np.concatenate([s, [length]])
    v_loop = np.concatenate([values, values[:1]])
    return np.interp(np.mod(s_query, length), s_loop, v_loop)


def nearest_on_closed_polyline(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """For each point, the closest point on the closed polyline ``poly`` (segment-exact)."""
    start = poly
    seg = np.roll(poly, -1, axis=0) - poly
    rel = points[:, None, :] - start[None]
    t = np.clip((rel * seg[None]).sum(-1) / np.maximum((seg**2).sum(-1), 1e-12)[None], 0.0, 1.0)
    closest = start[None] + t[..., None] * seg[None]
    best = np.argmin(((points[:, None, :] - closest) ** 2).sum(-1), axis=1)
    return closest[np.arange(len(points)), best]


def min_radius(xy: np.ndarray) -> float:
    """Smallest radius of curvature of a closed polyline."""
    return float(1.0 / max(np.abs(curvature(xy)).max(), 1e-9))


def min_separation(xy: np.ndarray, window: float) -> float:
    """Smallest distance between points more than ``window`` metres apart along the loop."""
    s = arc_length(np.vstack([xy, xy[:1]]))
    total = s[-1]
    s = s[:-1]
    along = np.abs(s[:, None] - s[None, :])
    along = np.minimum(along, total - along)
    dist = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
    far = along > window
    return float(dist[far].min()) if far.any() else float("inf")


def road_is_simple(
    center: np.ndarray,
    width_right: np.ndarray,
    width_left: np.ndarray,
    wall: float,
    local: float,
) -> bool:
    """Whether a road (centerline plus per-point half-widths) never touches itself.

    Every point across the road, out to ``wall / 2`` beyond each edge, must lie nearest to a
    part of the centerline within ``local`` metres of arc of the point it was cast from: two
    parts of the circuit then stay at least ``wall`` apart edge to edge, and no inner edge
    folds over itself. A centreline-distance test cannot tell a tight hairpin (legs 2.6 m
    apart, a thin wall between) from an overlap; this can.
    """
    from scipy.spatial import cKDTree

    s = arc_length(np.vstack([center, center[:1]]))
    total, s = s[-1], s[:-1]
    normal = left_normals(center)
    fractions = np.linspace(-1.0, 1.0, 9)
    tree = cKDTree(center)
    for f in fractions:
        reach = np.where(f >= 0, width_left, width_right) + 0.5 * wall
        probe = center + normal * (f * reach)[:, None]
        _, nearest = tree.query(probe)
        along = np.abs(s[nearest] - s)
        if np.any(np.minimum(along, total - along) > local):
            return False
    return True
