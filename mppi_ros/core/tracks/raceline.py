"""A minimum-curvature raceline inside the road, kept the car's half-width plus a margin from
both edges, with a friction-limited speed profile.

The raceline is the centerline moved sideways, ``p_i = c_i + alpha_i n_i``, with
``-(w_right_i - d) <= alpha_i <= w_left_i - d`` for clearance ``d``. Its curvature is
approximated by the second difference ``p_{i-1} - 2 p_i + p_{i+1}`` on a uniformly spaced
centerline (exact for uniform spacing), so the summed squared curvature is a quadratic in
``alpha`` and the raceline is a bounded linear least-squares problem, solved exactly
(``scipy.optimize.lsq_linear``). This is the standard minimum-curvature formulation used for
F1TENTH and Formula Student racelines, on a 1 m grid, then splined to 0.2 m.
"""

from __future__ import annotations

import numpy as np

from mppi_ros.core.tracks import geometry as geo
from mppi_ros.core.tracks.profile import ProfileLimits
from mppi_ros.core.tracks.track import Track, raceline_track

CAR_HALF_WIDTH = 0.155  # F1TENTH car, 0.31 m wide
RACELINE_MARGIN = 0.15  # beyond the car's half-width; the live border margin defaults to 0.1


def vehicle_limits(max_speed: float, friction_scale: float = 1.0) -> ProfileLimits:
    """Profile limits of the F1TENTH single-track model at full friction."""
    from mppi_ros.core.dynamics import get_dynamics

    params = get_dynamics("single_track").default_params
    return ProfileLimits.for_vehicle(params, max_speed=max_speed, friction_scale=friction_scale)


def offset_bounds(
    width_right: np.ndarray, width_left: np.ndarray, clearance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lateral offsets the raceline may take; a road narrower than twice the clearance pins
    the line to its middle."""
    lo = -(np.asarray(width_right, float) - clearance)
    hi = np.asarray(width_left, float) - clearance
    mid = 0.5 * (lo + hi)
    narrow = lo > hi
    return np.where(narrow, mid, lo), np.where(narrow, mid, hi)


def minimum_curvature_offsets(
    center: np.ndarray, lo: np.ndarray, hi: np.ndarray, start: np.ndarray | None = None
) -> np.ndarray:
    """Offsets ``alpha`` (along the left normals) that minimise the summed squared second
    difference of ``center + alpha n`` within ``[lo, hi]``, from ``start`` (default 0)."""
    from scipy.optimize import minimize

    normal = geo.left_normals(center)

    def second_difference(p: np.ndarray) -> np.ndarray:  # cyclic, works on (n,) or (n, 2)
        return np.roll(p, 1, axis=0) - 2.0 * p + np.roll(p, -1, axis=0)

    base = second_difference(center)

    def objective(alpha: np.ndarray) -> tuple[float, np.ndarray]:
        residual = base + second_difference(normal * alpha[:, None])
        # D is symmetric, so the gradient is 2 N^T D r, row by row.
        grad = 2.0 * np.sum(normal * second_difference(residual), axis=1)
        return float(np.sum(residual**2)), grad

    result = minimize(
        objective,
        np.clip(np.zeros(len(center)) if start is None else start, lo, hi),
        jac=True,
        bounds=list(zip(lo, hi, strict=True)),
        method="L-BFGS-B",
        options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-15, "gtol": 1e-10},
    )
    return np.clip(result.x, lo, hi)


def optimise_raceline(
    name: str,
    center_xy: np.ndarray,
    width_right: np.ndarray,
    width_left: np.ndarray,
    clearance: float = CAR_HALF_WIDTH + RACELINE_MARGIN,
    max_speed: float = 10.0,
    limits: ProfileLimits | None = None,
    grid: float = 1.0,
    spacing: float = 0.2,
) -> Track:
    """A minimum-curvature raceline on the road ``center_xy`` +- widths, with its profile.

    Args:
        name: Track name.
        center_xy: ``(N, 2)`` closed centerline.
        width_right: ``(N,)`` half-widths to the right; width_left: to the left.
        clearance: Metres kept between the raceline (the car's centre) and each road edge:
            the car's half-width plus a margin.
        max_speed: Cap of the speed profile.
        limits: Speed-profile limits (default: the F1TENTH model at full friction).
        grid: Spacing (m) of the optimisation grid.
        spacing: Spacing (m) of the returned raceline points.

    Returns:
        The track: its raceline, the friction-limited profile along it, and the road as given.
    """
    from scipy.spatial import cKDTree

    center_xy = np.asarray(center_xy, float)
    width_right = np.asarray(width_right, float)
    width_left = np.asarray(width_left, float)
    tree = cKDTree(center_xy)

    def solve(spacing: float, start: np.ndarray | None = None):
        line = geo.resample_closed(center_xy, spacing)
        nearest = tree.query(line)[1]
        lo, hi = offset_bounds(width_right[nearest], width_left[nearest], clearance)
        return line, minimum_curvature_offsets(line, lo, hi, start)

    # A solve on a 4x coarser grid first: the fine problem is ill-conditioned (second
    # differences), and a good start saves most of its iterations.
    rough, rough_alpha = solve(4.0 * grid)
    coarse = geo.resample_closed(center_xy, grid)
    s_rough = geo.arc_length(np.vstack([rough, rough[:1]]))
    s_fine = geo.arc_length(np.vstack([coarse, coarse[:1]]))[:-1] * (
        s_rough[-1] / geo.loop_length(coarse)
    )
    start = geo.interp_closed(s_fine, s_rough[:-1], rough_alpha, s_rough[-1])
    coarse, alpha = solve(grid, start)
    line = coarse + geo.left_normals(coarse) * alpha[:, None]
    track = raceline_track(name, line, center_xy, width_right, width_left, spacing=spacing)
    limits = limits if limits is not None else vehicle_limits(max_speed)
    return track.with_limited_profile(limits)
