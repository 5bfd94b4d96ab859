"""Learned dynamics: an ensemble of MLPs predicting state changes (softMPCritic, seed 003).

Each member maps ``(s, a)`` to ``s' - s``. Inputs and outputs are normalised with stored
statistics (identity by default), so a bundle reproduces the exact function it was trained as.
Planners draw one member per rollout step (:meth:`EnsembleModel.predict_member`) or evaluate
all of them (:meth:`EnsembleModel.predict_all`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

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
    """

    obs_dim: int
    act_dim: int
    members: int = 4
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "silu"

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")

    @property
    def module(self) -> EnsembleDelta:
        return EnsembleDelta(self.obs_dim, self.members, tuple(self.hidden), self.activation)

    def init(self, key: Array) -> EnsembleParams:
        net = self.module.init(key, jnp.zeros(self.obs_dim + self.act_dim))
        return EnsembleParams(
            net=net,
            inputs=Normalizer.identity(self.obs_dim + self.act_dim),
            deltas=Normalizer.identity(self.obs_dim),
        )

    def predict_all(self, params: EnsembleParams, s: Array, a: Array) -> Array:
        """Next states of every member: ``(members, ..., obs_dim)``."""
        x = params.inputs.normalize(jnp.concatenate([s, a], axis=-1))
        return s + params.deltas.denormalize(self.module.apply(params.net, x))

    def predict_member(self, params: EnsembleParams, member: Array, s: Array, a: Array) -> Array:
        """Next states under one member (a traced index: its weights are gathered, so only
        that member is evaluated)."""
        single = DeltaMLP(self.obs_dim, tuple(self.hidden), self.activation)
        weights = jax.tree.map(lambda w: w[member], params.net["params"]["member"])
        x = params.inputs.normalize(jnp.concatenate([s, a], axis=-1))
        return s + params.deltas.denormalize(single.apply({"params": weights}, x))

    def loss(self, params: EnsembleParams, s: Array, a: Array, s_next: Array) -> Array:
        """Mean over members of the MSE of the normalised state change (all members see the
        same batch, as in the reference implementation)."""
        x = params.inputs.normalize(jnp.concatenate([s, a], axis=-1))
        target = params.deltas.normalize(s_next - s)
        return jnp.mean((self.module.apply(params.net, x) - target) ** 2)
