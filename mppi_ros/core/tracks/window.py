"""The JAX side of a track: :class:`TrackArrays` (a pytree of arrays) and the pure functions
that controllers call inside jit (projection, interpolation, the reference window, the
allowed band of the border constraint)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array


@struct.dataclass
class ReferenceSpeed:
    """How fast the reference advances (live values: changing them never recompiles).

    With ``follow_profile`` (1) the speed at a point is ``scale`` times the track's speed
    profile there; otherwise (0) it is ``constant``. Either way it is capped at ``cap``.
    """

    constant: Array
    follow_profile: Array
    scale: Array
    cap: Array

    @classmethod
    def fixed(cls, speed: Array | float) -> ReferenceSpeed:
        """A constant speed (no profile, no cap)."""
        return cls(
            constant=jnp.asarray(speed, jnp.float32),
            follow_profile=jnp.zeros((), jnp.float32),
            scale=jnp.ones((), jnp.float32),
            cap=jnp.asarray(jnp.inf, jnp.float32),
        )

    def at(self, profile: Array) -> Array:
        """The reference speed where the track's profile is ``profile``."""
        v = jnp.where(self.follow_profile > 0.5, self.scale * profile, self.constant)
        return jnp.minimum(v, self.cap)


def allowed_band(border: Array, reference_xy: Array, clearance: Array) -> Array:
    """The road's half-planes shrunk by ``clearance`` (the car's half-width plus the safety
    margin) on each side, but never past the reference point itself.

    A raceline that passes closer to an edge than the clearance (many shipped with real
    circuits do) then never violates its own constraint: there the band closes onto the line.

    Args:
        border: ``(..., 4)`` road rows ``(a, b, c_left, c_right)``.
        reference_xy: ``(..., 2)`` reference positions in the same frame.
        clearance: Metres to keep from each edge.
    """
    lateral = jnp.sum(border[..., :2] * reference_xy, axis=-1)
    c_left = jnp.maximum(border[..., 2] - clearance, lateral)
    c_right = jnp.minimum(border[..., 3] + clearance, lateral)
    return jnp.concatenate([border[..., :2], c_left[..., None], c_right[..., None]], axis=-1)


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
    # compare_all: one vectorised comparison instead of a binary-search loop, which an ONNX
    # export runs as a Loop node per call (most of a previewing policy's step in onnxruntime).
    i = jnp.clip(
        jnp.searchsorted(track.s, target, side="right", method="compare_all") - 1, 0, n - 1
    )
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
        border: ``(H, 4)`` half-plane coefficients ``(a, b, c_left, c_right)`` of the allowed
            band (road minus clearance), relative to ``origin``.
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
    speed: ReferenceSpeed,
    state_dim: int,
    position_indices: tuple[int, int] = (0, 1),
    heading_index: int | None = 4,
    speed_index: int | None = 3,
    origin: Array | None = None,
    clearance: Array | float = 0.0,
) -> ReferenceWindow:
    """Reference points ahead of the vehicle, spaced by the reference speed times ``dt``.

    The window starts at the projection of ``state`` and advances ``v * dt`` per step, ``v``
    from ``speed`` at the current point (the track's profile, scaled and capped, or a
    constant). Speeds are arrays, so changing them never recompiles. With ``origin`` the
    positions and borders are expressed relative to it (world frame by default). Borders are
    the :func:`allowed_band` for ``clearance``.
    """
    proj = project(track, state[jnp.array(position_indices)])
    origin = jnp.zeros(2) if origin is None else origin

    def advance(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], tuple]:
        ahead, profile = carry  # the profile speed where this step starts
        v = speed.at(profile)
        ahead_next = ahead + v * dt
        xy, psi, profile_next, border = interpolate_ahead(track, proj.segment, ahead_next, origin)
        return (ahead_next, profile_next), (xy, psi, jnp.broadcast_to(v, ()), border)

    _, _, profile, _ = interpolate_ahead(track, proj.segment, proj.along, origin)
    _, (xy, psi, v_ref, border) = jax.lax.scan(advance, (proj.along, profile), None, length=horizon)
    border = allowed_band(border, xy, clearance)
    states = jnp.zeros((horizon, state_dim))
    states = states.at[:, position_indices[0]].set(xy[:, 0])
    states = states.at[:, position_indices[1]].set(xy[:, 1])
    if heading_index is not None:
        states = states.at[:, heading_index].set(psi)
    if speed_index is not None:
        states = states.at[:, speed_index].set(v_ref)
    return ReferenceWindow(
        states=states,
        border=border,
        progress=proj.progress,
        lateral_error=proj.lateral_error,
        origin=origin,
    )
