"""Pure cost terms shared by every controller and by training.

All weights are arguments (live ``tuning`` arrays), never constants baked into a trace.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mppi_ros.core.dynamics import wrap_angle

Array = jax.Array

# Violations are clipped before squaring (public Step-MPPI code) so one bad sample cannot
# dominate the softmax or the training gradient.
VIOLATION_CLIP = 3.0


def state_error(x: Array, x_ref: Array, angle_indices: Sequence[int] = ()) -> Array:
    """``x - x_ref`` with the given angle entries wrapped to (-pi, pi]."""
    err = x - x_ref
    # Rebuilt from slices rather than indexed updates: no scatter in the graph (jax2onnx
    # mis-converts scatters batched inside a scan body) and only the angles are wrapped.
    pieces, start = [], 0
    for i in sorted(angle_indices):
        pieces += [err[..., start:i], wrap_angle(err[..., i : i + 1])]
        start = i + 1
    return jnp.concatenate([*pieces, err[..., start:]], axis=-1) if pieces else err


def tracking_cost(
    x: Array,
    u: Array,
    x_ref: Array,
    q_weights: Array,
    r_weights: Array,
    angle_indices: Sequence[int] = (),
) -> Array:
    """Quadratic tracking cost ``e^T diag(q) e + u^T diag(r) u`` with wrapped angle errors."""
    err = state_error(x, x_ref, angle_indices)
    return jnp.sum(q_weights * err**2, axis=-1) + jnp.sum(r_weights * u**2, axis=-1)


def border_violation(position: Array, border: Array, margin: Array) -> Array:
    """How far (m) a position lies outside the half-planes ``c_right + m <= n.p <= c_left - m``.

    Args:
        position: ``(..., 2)`` planar position.
        border: ``(..., 4)`` coefficients ``(a, b, c_left, c_right)``.
        margin: Safety margin in metres (shrinks the track on both sides).
    """
    lateral = jnp.sum(border[..., :2] * position, axis=-1)
    over_left = jnp.maximum(lateral - (border[..., 2] - margin), 0.0)
    over_right = jnp.maximum((border[..., 3] + margin) - lateral, 0.0)
    return jnp.minimum(over_left + over_right, VIOLATION_CLIP)


def box_violation(value: Array, lower: Array, upper: Array) -> Array:
    """Summed squared excess of ``value`` outside ``[lower, upper]`` (entries may be +-inf)."""
    excess = jnp.maximum(value - upper, 0.0) + jnp.maximum(lower - value, 0.0)
    return jnp.sum(jnp.minimum(excess, VIOLATION_CLIP) ** 2, axis=-1)


def penalty_cost(
    x: Array,
    border: Array,
    position_indices: tuple[int, int] | None,
    border_weight: Array,
    border_margin: Array,
    box_weight: Array,
    state_min: Array,
    state_max: Array,
) -> Array:
    """Soft constraint cost: squared border violation plus squared state-box violation."""
    cost = box_weight * box_violation(x, state_min, state_max)
    if position_indices is not None:
        pos = jnp.stack([x[..., position_indices[0]], x[..., position_indices[1]]], axis=-1)
        cost = cost + border_weight * border_violation(pos, border, border_margin) ** 2
    return cost
