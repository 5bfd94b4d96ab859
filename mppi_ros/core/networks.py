"""Flax modules: the Step-MPPI distribution policy and the deterministic DPC policy, plus the
track-frame features they read.

Features are expressed in the reference point's frame (position error, heading error, distances
to both borders), so a policy trained on procedural tracks transfers to any other track: it
never sees absolute coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mppi_ros.core.dynamics import DynamicsModel

Array = jax.Array


def policy_features(model: DynamicsModel, state: Array, ref: Array, border: Array) -> Array:
    """Invariant features of (state, next reference state, border half-planes).

    For vehicle models (position + heading): position error rotated into the reference frame,
    sin/cos of the heading error, the non-pose state entries, the reference speed, and the
    signed distances to the left and right borders (positive inside). For other models: the
    state error and, when the model has a position, the border distances.
    """
    if model.position_indices is None:
        return state - ref
    i, j = model.position_indices
    pos = jnp.stack([state[i], state[j]])
    left = border[2] - jnp.dot(border[:2], pos)
    right = jnp.dot(border[:2], pos) - border[3]
    if model.heading_index is None:
        return jnp.concatenate([state - ref, jnp.stack([left, right])])
    h = model.heading_index
    psi = ref[h]
    d = pos - jnp.stack([ref[i], ref[j]])
    along = jnp.cos(psi) * d[0] + jnp.sin(psi) * d[1]
    across = -jnp.sin(psi) * d[0] + jnp.cos(psi) * d[1]
    dyaw = state[h] - psi
    rest = [k for k in range(model.state_dim) if k not in (i, j, h)]
    speed_ref = ref[model.speed_index] if model.speed_index is not None else jnp.zeros(())
    return jnp.concatenate(
        [
            jnp.stack([along, across, jnp.sin(dyaw), jnp.cos(dyaw)]),
            state[jnp.array(rest)],
            jnp.stack([speed_ref, left, right]),
        ]
    )


PREVIEW_FEATURES = 5


def preview_features(model: DynamicsModel, ref: Array, ahead: Array, border: Array) -> Array:
    """What the road ahead looks like from the next reference point: the reference point
    ``ahead`` in ``ref``'s frame (sideways offset, sin of the heading change), its speed, and
    the room between it and each side of the allowed band there.

    A policy that sees only the next reference point learns of a hairpin when it is already
    in it; these let it brake and turn in on time.
    """
    i, j = model.position_indices
    h = model.heading_index
    psi = ref[h]
    d = jnp.stack([ahead[i] - ref[i], ahead[j] - ref[j]])
    across = -jnp.sin(psi) * d[0] + jnp.cos(psi) * d[1]
    pos = jnp.stack([ahead[i], ahead[j]])
    lateral = jnp.dot(border[:2], pos)
    speed = ahead[model.speed_index] if model.speed_index is not None else jnp.zeros(())
    return jnp.stack(
        [across, jnp.sin(ahead[h] - psi), speed, border[2] - lateral, lateral - border[3]]
    )


def feature_dim(model: DynamicsModel, preview: int = 0) -> int:
    """Number of policy features for ``model`` with ``preview`` previewed points (traced
    abstractly: running the ops would compile each one, seconds on a cold process)."""
    x = jax.ShapeDtypeStruct((model.state_dim,), jnp.float32)
    border = jax.ShapeDtypeStruct((4,), jnp.float32)
    shape = jax.eval_shape(lambda s, r, b: policy_features(model, s, r, b), x, x, border).shape
    return int(shape[0]) + PREVIEW_FEATURES * preview


def refold_input_normalisation(
    params: dict, old: tuple[Array, Array], new: tuple[Array, Array]
) -> dict:
    """Re-expresses a policy's first layer for new input statistics, exactly.

    A network trained on ``(x - m_o) / s_o`` computes the same function of ``x`` from
    ``(x - m_n) / s_n`` once its first Dense layer (``MLP_0/Dense_0``) becomes
    ``W' = diag(s_n / s_o) W`` and ``b' = b + ((m_n - m_o) / s_o) W``.

    Args:
        params: Policy parameters (an ``MLP_0`` backbone in front).
        old: ``(mean, std)`` the parameters were trained with.
        new: ``(mean, std)`` they will be fed with.
    """
    (m_o, s_o), (m_n, s_n) = old, new
    first = params["MLP_0"]["Dense_0"]
    kernel = first["kernel"] * (s_n / s_o)[:, None]
    bias = first["bias"] + ((m_n - m_o) / s_o) @ first["kernel"]
    backbone = {**params["MLP_0"], "Dense_0": {"kernel": kernel, "bias": bias}}
    return {**params, "MLP_0": backbone}


class MLP(nn.Module):
    """Dense backbone with a configurable activation."""

    hidden: Sequence[int]
    activation: str = "gelu"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        act = {"gelu": nn.gelu, "relu": nn.relu, "silu": nn.silu, "tanh": jnp.tanh}[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
        return x


class DistributionPolicy(nn.Module):
    """Maps normalised features to a Gaussian sampling distribution ``(mu, L)``.

    ``mu`` is squashed by tanh into ``[u_min, u_max]``; ``L`` is lower triangular with a
    softplus diagonal plus ``min_std`` and, when ``full_covariance``, free off-diagonal
    entries clamped to ``+-max_offdiag`` times the smaller adjacent diagonal entry.

    Inputs may carry leading batch dimensions (Dense layers always see a batch axis, which
    ONNX export needs).
    """

    control_dim: int
    hidden: Sequence[int] = (256, 256, 256, 256, 256)
    activation: str = "gelu"
    full_covariance: bool = False
    min_std: float = 1e-3
    max_offdiag: float = 0.9

    @nn.compact
    def __call__(self, features: Array, u_min: Array, u_max: Array) -> tuple[Array, Array]:
        squeeze = features.ndim == 1
        x = features[None] if squeeze else features
        h = MLP(self.hidden, self.activation)(x)
        nu = self.control_dim
        raw_mu = nn.Dense(nu, name="mean_head")(h)
        half = 0.5 * (u_max - u_min)
        mu = u_min + half * (jnp.tanh(raw_mu) + 1.0)
        diag = jax.nn.softplus(nn.Dense(nu, name="std_head")(h)) + self.min_std
        chol = jax.vmap(jnp.diag)(diag)
        if self.full_covariance and nu > 1:
            rows, cols = jnp.tril_indices(nu, -1)
            raw = jnp.tanh(nn.Dense(rows.shape[0], name="offdiag_head")(h))
            scale = self.max_offdiag * jnp.minimum(diag[:, rows], diag[:, cols])
            chol = chol.at[:, rows, cols].set(raw * scale)
        if squeeze:
            return mu[0], chol[0]
        return mu, chol


class DeterministicPolicy(nn.Module):
    """DPC policy: features -> control, tanh-squashed into ``[u_min, u_max]``."""

    control_dim: int
    hidden: Sequence[int] = (256, 256, 256, 256, 256)
    activation: str = "gelu"

    @nn.compact
    def __call__(self, features: Array, u_min: Array, u_max: Array) -> Array:
        squeeze = features.ndim == 1
        x = features[None] if squeeze else features
        h = MLP(self.hidden, self.activation)(x)
        raw = nn.Dense(self.control_dim, name="mean_head")(h)
        u = u_min + 0.5 * (u_max - u_min) * (jnp.tanh(raw) + 1.0)
        return u[0] if squeeze else u


def gaussian_entropy(chol: Array) -> Array:
    """Entropy of N(mu, L L^T): ``0.5 d log(2 pi e) + sum log diag(L)``."""
    d = chol.shape[-1]
    return 0.5 * d * jnp.log(2.0 * jnp.pi * jnp.e) + jnp.sum(
        jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1
    )


# --------------------------------------------------------------------------- softMPCritic


class QNetwork(nn.Module):
    """Soft action-value ``Q(s, a)`` in cost units: ``(obs, act) -> 256 -> 256 -> 1`` (SiLU).

    Inputs are normalised by the caller (see :class:`Normalizer`); leading batch dimensions
    are kept.
    """

    hidden: Sequence[int] = (256, 256)
    activation: str = "silu"

    @nn.compact
    def __call__(self, obs: Array, act: Array) -> Array:
        x = jnp.concatenate([obs, act], axis=-1)
        return nn.Dense(1)(MLP(self.hidden, self.activation)(x))[..., 0]


class DeltaMLP(nn.Module):
    """One ensemble member: normalised ``(obs, act)`` -> normalised state change."""

    out_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "silu"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return nn.Dense(self.out_dim)(MLP(self.hidden, self.activation)(x))


class EnsembleDelta(nn.Module):
    """``members`` independent :class:`DeltaMLP` (stacked parameters, one vmapped call).

    Returns ``(members, ..., out_dim)`` for an input of shape ``(..., in_dim)``.
    """

    out_dim: int
    members: int = 4
    hidden: Sequence[int] = (256, 256)
    activation: str = "silu"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        stacked = nn.vmap(
            DeltaMLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.members,
        )
        return stacked(self.out_dim, self.hidden, self.activation, name="member")(x)
