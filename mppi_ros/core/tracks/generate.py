"""Procedural tracks.

* :func:`generate_circuit` (``circuit:SEED``): circuits with the geometry of real F1TENTH
  racing circuits: hairpins and chicanes down to 1.5 m centerline radius, S-bends, fast
  sweepers and straights, per-point left and right half-widths of 0.9-1.6 m, 150-600 m, a
  minimum-curvature raceline kept the car's half-width plus a margin from the edges, and a
  friction-limited speed profile. What the learned controllers train on.
* :func:`generate_track` (``procedural:SEED``): smooth star-shaped loops (radius >= 12 m,
  raceline = centerline); the built-in tracks come from it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mppi_ros.core.tracks import geometry as geo
from mppi_ros.core.tracks.track import PROCEDURAL_PREFIX, Track, track_from_centerline

CIRCUIT_PREFIX = "circuit:"
BUILTIN_TRACKS = {
    # name: (generator seed, target length in m). Regenerate with `mppi-ros tracks generate`.
    "default": (5, 260.0),
    "sprint": (22, 190.0),
    "endurance": (3, 370.0),
}


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
        loop_len = geo.arc_length(np.vstack([xy, xy[:1]]))[-1]
        xy *= target / loop_len
        xy = geo.resample_closed(xy, 0.5)
        kappa = geo.curvature(xy)
        if 1.0 / np.abs(kappa).max() < min_radius:
            continue
        # F1TENTH-like: turns both ways, not just a convex blob.
        if -kappa.min() < 1.0 / (4.0 * min_radius):
            continue
        if geo.min_separation(xy, window=4.0 * min_radius) < 2.0 * half_width + min_separation:
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


@dataclasses.dataclass(frozen=True)
class CircuitStyle:
    """The distribution :func:`generate_circuit` draws from.

    Attributes:
        length: Accepted circuit lengths (m).
        corners: Range of the number of corners (a chicane counts as one).
        corner_mix: Probabilities of hairpin, tight, medium, sweeper and chicane corners.
        half_width: Range of the base half-width of each side (m); each side varies along the
            track and is clipped to ``half_width_limits``.
        half_width_limits: Smallest and largest half-width anywhere (m).
        wall: Smallest edge-to-edge gap between two parts of the circuit (m).
        max_speed: Cap of the speed profile (m/s).
        min_raceline_radius: Circuits whose optimised raceline turns tighter are redrawn
            (real circuits' tightest raceline corners: 1.5-4.1 m).
        left_share: Probability that a corner turns the loop's way.
    """

    length: tuple[float, float] = (150.0, 600.0)
    corners: tuple[int, int] = (10, 22)
    corner_mix: tuple[float, float, float, float, float] = (0.15, 0.35, 0.25, 0.1, 0.15)
    half_width: tuple[float, float] = (0.95, 1.35)
    half_width_limits: tuple[float, float] = (0.9, 1.6)
    wall: float = 0.3
    max_speed: float = 10.0
    min_raceline_radius: float = 1.5
    left_share: float = 0.65


# (radius range m, turn angle range deg) per corner kind; the radius is the centerline's.
_CORNERS = {
    "hairpin": ((1.5, 3.0), (120.0, 180.0)),
    "tight": ((3.0, 8.0), (45.0, 120.0)),
    "medium": ((8.0, 20.0), (30.0, 90.0)),
    "sweeper": ((20.0, 50.0), (15.0, 60.0)),
    "chicane": ((2.5, 10.0), (25.0, 60.0)),
}
_KINDS = tuple(_CORNERS)


def _straight(rng: np.random.Generator) -> tuple[float, float]:
    """A straight's nominal and minimum length: mostly short, some long."""
    mix = rng.random()
    if mix < 0.65:
        return rng.uniform(2.0, 10.0), 1.0
    if mix < 0.95:
        return rng.uniform(10.0, 30.0), 1.0
    return rng.uniform(30.0, 60.0), 1.0


def _draw_layout(rng: np.random.Generator, style: CircuitStyle):
    """Corners as ``(radius, signed angle)``, each followed by a straight ``(nominal, min)``."""
    arcs: list[tuple[float, float]] = []
    straights: list[tuple[float, float]] = []
    for _ in range(rng.integers(style.corners[0], style.corners[1] + 1)):
        kind = _KINDS[rng.choice(len(_KINDS), p=np.asarray(style.corner_mix))]
        (r_lo, r_hi), (a_lo, a_hi) = _CORNERS[kind]
        sign = 1.0 if rng.random() < style.left_share else -1.0
        if kind == "chicane":  # an S: two opposite corners with a short straight between
            angle = math.radians(rng.uniform(a_lo, a_hi))
            arcs.append((rng.uniform(r_lo, r_hi), sign * angle))
            straights.append((rng.uniform(0.5, 4.0), 0.3))
            sign = -sign
        angle = math.radians(rng.uniform(a_lo, a_hi))
        arcs.append((rng.uniform(r_lo, r_hi), sign * angle))
        straights.append(_straight(rng))
    return arcs, straights


def _close_loop(arcs, straights) -> tuple[list[tuple[float, float]], np.ndarray] | None:
    """Scales the turns to one full revolution and solves the straights' lengths so the loop
    closes exactly (the end point is linear in them); ``None`` when it cannot."""
    from scipy.optimize import minimize

    angles = np.array([a for _, a in arcs])
    left, right = angles[angles > 0].sum(), -angles[angles < 0].sum()
    if left <= 0:
        return None
    scale = (2.0 * math.pi + right) / left
    if not 0.5 <= scale <= 2.0:
        return None
    angles = np.where(angles > 0, angles * scale, angles)
    if np.abs(angles).max() > math.pi:
        return None
    arcs = [(r, a) for (r, _), a in zip(arcs, angles, strict=True)]
    heading, moved, directions = 0.0, np.zeros(2), []
    for radius, angle in arcs:
        sign = math.copysign(1.0, angle)
        end = heading + angle
        moved += (
            sign
            * radius
            * np.array([math.sin(end) - math.sin(heading), math.cos(heading) - math.cos(end)])
        )
        heading = end
        directions.append([math.cos(heading), math.sin(heading)])
    u = np.asarray(directions).T  # (2, n): the straight after each arc
    nominal = np.array([s[0] for s in straights])
    lower = np.array([s[1] for s in straights])
    scale_ = np.maximum(nominal, 1.0)
    result = minimize(
        lambda length: float(np.sum(((length - nominal) / scale_) ** 2)),
        np.maximum(nominal, lower),
        jac=lambda length: 2.0 * (length - nominal) / scale_**2,
        bounds=list(zip(lower, np.full(len(lower), 120.0), strict=True)),
        constraints=[{"type": "eq", "fun": lambda length: u @ length + moved, "jac": lambda _: u}],
        method="SLSQP",
        options={"maxiter": 200, "ftol": 1e-12},
    )
    if not result.success or np.linalg.norm(u @ result.x + moved) > 1e-6:
        return None
    return arcs, np.maximum(result.x, lower)


def _trace(arcs, lengths: np.ndarray, spacing: float) -> np.ndarray:
    """Centerline points every ``spacing`` metres along arcs and straights (closed)."""
    points, heading, p = [], 0.0, np.zeros(2)
    for (radius, angle), straight in zip(arcs, lengths, strict=True):
        sign = math.copysign(1.0, angle)
        n = max(math.ceil(radius * abs(angle) / spacing), 1)
        phi = heading + angle * np.arange(n) / n
        points.append(
            p
            + sign
            * radius
            * np.stack([np.sin(phi) - math.sin(heading), math.cos(heading) - np.cos(phi)], axis=1)
        )
        end = heading + angle
        p = p + sign * radius * np.array(
            [math.sin(end) - math.sin(heading), math.cos(heading) - math.cos(end)]
        )
        heading = end
        m = math.ceil(straight / spacing)
        if m:
            t = straight * np.arange(m) / m
            points.append(p + t[:, None] * np.array([math.cos(heading), math.sin(heading)]))
        p = p + straight * np.array([math.cos(heading), math.sin(heading)])
    return np.concatenate(points)


def _half_widths(
    rng: np.random.Generator, s: np.ndarray, length: float, style: CircuitStyle
) -> np.ndarray:
    """A smoothly varying half-width along the loop (periodic in ``s``)."""
    base = rng.uniform(*style.half_width)
    width = np.full(len(s), base)
    for _ in range(3):
        cycles = rng.integers(2, 12)
        width += rng.uniform(0.0, 0.08) * np.sin(
            2 * math.pi * cycles * s / length + rng.uniform(0, 6.3)
        )
    return np.clip(width, *style.half_width_limits)


def _inner_cap(kappa: np.ndarray, side: float, wall: float) -> np.ndarray:
    """Largest half-width on one side that keeps that edge from folding in tight corners."""
    bend = np.maximum(side * kappa, 1e-9)
    cap = 1.0 / bend - wall
    window = 15  # points either side: the cap spreads over the corner's entry and exit
    padded = np.concatenate([cap[-window:], cap, cap[:window]])
    return np.array([padded[i : i + 2 * window + 1].min() for i in range(len(cap))])


def generate_circuit(
    seed: int,
    style: CircuitStyle = CircuitStyle(),
    name: str | None = None,
    max_tries: int = 400,
) -> Track:
    """Generates a real-circuit-like track from a seed (the same seed, the same circuit).

    Corners (hairpins, tight and medium corners, sweepers, chicanes) joined by straights are
    laid out turtle-style; the straights' lengths are solved so that the loop closes exactly;
    the road gets varying left and right half-widths (narrowed where a corner would fold an
    inner edge); layouts whose road touches itself are redrawn; the raceline is
    :func:`mppi_ros.core.tracks.raceline.optimise_raceline`'s, with its speed profile.

    Raises:
        ValueError: If no valid circuit is found in ``max_tries`` attempts.
    """
    from mppi_ros.core.tracks.raceline import CAR_HALF_WIDTH, optimise_raceline

    rng = np.random.default_rng([seed, 29])
    for _ in range(max_tries):
        arcs, straights = _draw_layout(rng, style)
        closed = _close_loop(arcs, straights)
        if closed is None:
            continue
        arcs, lengths = closed
        center = _trace(arcs, lengths, 0.2)
        total = geo.loop_length(center)
        if not style.length[0] <= total <= style.length[1]:
            continue
        longest = int(np.argmax(lengths))
        start = sum(
            max(math.ceil(r * abs(a) / 0.2), 1) + math.ceil(straight / 0.2)
            for (r, a), straight in zip(arcs[:longest], lengths[:longest], strict=True)
        )
        start += max(math.ceil(arcs[longest][0] * abs(arcs[longest][1]) / 0.2), 1)
        start += math.ceil(lengths[longest] / 0.2) // 3  # a third down the longest straight
        center = np.roll(center, -start, axis=0)
        if rng.random() < 0.5:  # as many clockwise circuits as anticlockwise ones
            center = center * np.array([1.0, -1.0])
        center = geo.resample_closed(center, 0.2)
        center -= center[0]
        s = geo.arc_length(center)
        kappa = geo.curvature(center)
        left = np.minimum(_half_widths(rng, s, total, style), _inner_cap(kappa, 1.0, style.wall))
        right = np.minimum(_half_widths(rng, s, total, style), _inner_cap(kappa, -1.0, style.wall))
        if min(left.min(), right.min()) < style.half_width_limits[0]:
            continue
        if not geo.road_is_simple(center, right, left, style.wall, local=4.0):
            continue
        track = optimise_raceline(
            name or f"{CIRCUIT_PREFIX}{seed}", center, right, left, max_speed=style.max_speed
        )
        left_room, right_room = track.edge_clearance()
        # Guaranteed for every circuit: the raceline keeps the car's half-width plus the
        # default live margin (0.1 m) from both edges, so it never violates its own band.
        clear = min(left_room.min(), right_room.min()) >= CAR_HALF_WIDTH + 0.1
        if clear and np.abs(track.kappa).max() * style.min_raceline_radius <= 1.0:
            return track
    raise ValueError(f"no valid circuit for seed {seed} in {max_tries} tries")
