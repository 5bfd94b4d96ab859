"""Learned dynamics: an ensemble of MLPs predicting state changes (softMPCritic).

Each member maps ``(s, a)`` to ``s' - s``. Inputs and outputs are normalised with stored
statistics (identity by default), so a bundle reproduces the exact function it was trained as.
Planners draw one member per rollout step (:meth:`EnsembleModel.predict_member`) or evaluate
all of them (:meth:`EnsembleModel.predict_all`).

With ``pose_indices = (x, y, yaw)`` (vehicles) the members never see the planar pose: they map
the rest of the state and the action to the pose change in the body frame plus the change of
the other entries, so what they learn holds at every position and heading of every track.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from mppi_ros.core.dynamics.base import wrap_angle
from mppi_ros.core.networks import DeltaMLP, EnsembleDelta

Array = jax.Array


@struct.dataclass
class Normalizer:
    """``(x - mean) / std`` for inputs, ``y * std + mean`` for outputs."""

    mean: Array
    std: Array

    @classmethod
    def identity(cls, dim: int) -> Normalizer:
        return cls(mean=jnp.zeros(dim), std=jnp.ones(dim))

    def normalize(self, x: Array) -> Array:
        return (x - self.mean) / self.std

    def denormalize(self, y: Array) -> Array:
        return y * self.std + self.mean


@struct.dataclass
class EnsembleParams:
    """Weights of every member (stacked on axis 0) and the normalisation statistics."""

    net: dict
    inputs: Normalizer
    deltas: Normalizer


@dataclasses.dataclass(frozen=True)
class EnsembleModel:
    """Static description of a delta-predicting ensemble (the weights are arguments).

    Attributes:
        obs_dim: State (observation) size.
        act_dim: Action size.
        members: Ensemble size.
        hidden: Hidden layer widths of each member.
        activation: Hidden activation.
        pose_indices: ``(x, y, yaw)`` state entries of a planar pose, or ``None``: the members
            then see the whole state and predict ``s' - s``.
    """

    obs_dim: int
    act_dim: int
    members: int = 4
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "silu"
    pose_indices: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        pose = self.pose_indices
        if pose is not None and (
            len(set(pose)) != 3 or not all(0 <= i < self.obs_dim for i in pose)
        ):
            raise ValueError(f"pose_indices must be 3 distinct state entries, got {pose}")

    @property
    def input_dim(self) -> int:
        """Size of a member's input (state without the pose, plus the action)."""
        pose = 0 if self.pose_indices is None else 3
        return self.obs_dim - pose + self.act_dim

    @property
    def module(self) -> EnsembleDelta:
        return EnsembleDelta(self.obs_dim, self.members, tuple(self.hidden), self.activation)

    def init(self, key: Array) -> EnsembleParams:
        net = self.module.init(key, jnp.zeros(self.input_dim))
        return EnsembleParams(
            net=net,
            inputs=Normalizer.identity(self.input_dim),
            deltas=Normalizer.identity(self.obs_dim),
        )

    # ----- frames: what a member sees and predicts -------------------------------------------

    def _rest(self) -> jnp.ndarray:
        pose = set(self.pose_indices or ())
        return jnp.array([i for i in range(self.obs_dim) if i not in pose], jnp.int32)

    def member_input(self, s: Array, a: Array) -> Array:
        """A member's (unnormalised) input for state ``s`` and action ``a``."""
        if self.pose_indices is None:
            return jnp.concatenate([s, a], axis=-1)
        return jnp.concatenate([s[..., self._rest()], a], axis=-1)

    def change(self, s: Array, s_next: Array) -> Array:
        """The (unnormalised) change a member predicts for a transition ``s -> s_next``:
        ``s' - s``, or with a pose its translation in the body frame and its wrapped yaw
        change in place of the world-frame differences."""
        d = s_next - s
        if self.pose_indices is None:
            return d
        ix, iy, iyaw = self.pose_indices
        c, sn = jnp.cos(s[..., iyaw]), jnp.sin(s[..., iyaw])
        forward = c * d[..., ix] + sn * d[..., iy]
        left = -sn * d[..., ix] + c * d[..., iy]
        d = d.at[..., ix].set(forward).at[..., iy].set(left)
        return d.at[..., iyaw].set(wrap_angle(d[..., iyaw]))

    def apply_change(self, s: Array, d: Array) -> Array:
        """The next state from ``s`` and a predicted change (inverse of :meth:`change`)."""
        if self.pose_indices is None:
            return s + d
        ix, iy, iyaw = self.pose_indices
        c, sn = jnp.cos(s[..., iyaw]), jnp.sin(s[..., iyaw])
        world_x = c * d[..., ix] - sn * d[..., iy]
        world_y = sn * d[..., ix] + c * d[..., iy]
        return s + d.at[..., ix].set(world_x).at[..., iy].set(world_y)

    # ----- prediction and loss ---------------------------------------------------------------

    def predict_all(self, params: EnsembleParams, s: Array, a: Array) -> Array:
        """Next states of every member: ``(members, ..., obs_dim)``."""
        x = params.inputs.normalize(self.member_input(s, a))
        return self.apply_change(s, params.deltas.denormalize(self.module.apply(params.net, x)))

    def predict_mean(self, params: EnsembleParams, s: Array, a: Array) -> Array:
        """Next state under the mean change of all members (a deterministic model)."""
        x = params.inputs.normalize(self.member_input(s, a))
        change = params.deltas.denormalize(self.module.apply(params.net, x))
        return self.apply_change(s, jnp.mean(change, axis=0))

    def predict_member(self, params: EnsembleParams, member: Array, s: Array, a: Array) -> Array:
        """Next states under one member (a traced index: its weights are gathered, so only
        that member is evaluated)."""
        single = DeltaMLP(self.obs_dim, tuple(self.hidden), self.activation)
        weights = jax.tree.map(lambda w: w[member], params.net["params"]["member"])
        x = params.inputs.normalize(self.member_input(s, a))
        change = params.deltas.denormalize(single.apply({"params": weights}, x))
        return self.apply_change(s, change)

    def loss(self, params: EnsembleParams, s: Array, a: Array, s_next: Array) -> Array:
        """Mean over members of the MSE of the normalised state change (all members see the
        same batch, as in the reference implementation)."""
        x = params.inputs.normalize(self.member_input(s, a))
        target = params.deltas.normalize(self.change(s, s_next))
        return jnp.mean((self.module.apply(params.net, x) - target) ** 2)
