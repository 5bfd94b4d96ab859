"""Differentiable closed-loop rollouts for training: tracks stacked for batching, the
initial-state distribution, and the BPTT loss of one batch.

The controller step used here is exactly the deployed one (``ctrl.step`` on the observation
built by :func:`mppi_ros.core.policy.observe`), so what is trained is what runs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mppi_ros.core.controllers import Observation, TrackingTuning
from mppi_ros.core.controllers.base import MAX_REFERENCE_SPEED, border_clearance
from mppi_ros.core.controllers.step_mppi import LearnedState, PolicyWeights, StepMPPI
from mppi_ros.core.costs import penalty_cost, tracking_cost
from mppi_ros.core.dynamics import DynamicsModel
from mppi_ros.core.networks import gaussian_entropy
from mppi_ros.core.policy import observe
from mppi_ros.core.tracks import Track, TrackArrays, allowed_band, interpolate, project
from mppi_ros.training.config import InitialStateConfig

Array = jax.Array


def fixed_size_arrays(track: Track, points: int) -> TrackArrays:
    """Resamples ``track``'s arrays to exactly ``points`` points (uniform in arc length).

    Tracks of different lengths then stack into one batched pytree, so one compiled step
    serves every training track.
    """
    return _resample_arrays(track.arrays(), points)


@functools.partial(jax.jit, static_argnums=1)
def _resample_arrays(arrays: TrackArrays, points: int) -> TrackArrays:
    # Jitted: eagerly, each primitive under vmap compiles on its own (hundreds of compiles).
    s = jnp.arange(points, dtype=jnp.float32) * (arrays.length / points)
    xy, psi, speed, border = jax.vmap(lambda si: interpolate(arrays, si))(s)
    # TrackArrays keep border offsets relative to their own raceline point.
    border = border.at[:, 2:].add(-jnp.sum(border[:, :2] * xy, axis=1, keepdims=True))
    return TrackArrays(s=s, xy=xy, psi=psi, speed=speed, border=border, length=arrays.length)


def stack_tracks(tracks: list[Track], spacing: float = 0.2) -> TrackArrays:
    """One :class:`TrackArrays` with a leading track axis, every track at the same size."""
    points = max(round(t.length / spacing) for t in tracks)
    arrays = [fixed_size_arrays(t, points) for t in tracks]
    return jax.tree.map(lambda *a: jnp.stack(a), *arrays)


@struct.dataclass
class RolloutBatch:
    """Start conditions of a batch of rollouts (leading axis = batch, sharded over devices)."""

    track_index: Array  # (B,) int32
    x0: Array  # (B, nx)
    friction: Array  # (B,) multiplier of the plant friction
    reference_speed: Array  # (B,) m/s, constant mode (and the cap of capped profile rollouts)
    follow_profile: Array  # (B,) 1 = follow the track's speed profile
    speed_scale: Array  # (B,) multiplies the profile
    max_speed: Array  # (B,) cap of the reference speed
    key: Array  # (B, 2) sampling keys

    def tuning(self, base: TrackingTuning) -> TrackingTuning:
        """``base`` with this rollout's reference-speed law (call on one vmapped rollout)."""
        return base.replace(
            reference_speed=self.reference_speed,
            follow_profile=self.follow_profile,
            speed_scale=self.speed_scale,
            max_speed=self.max_speed,
        )


@dataclasses.dataclass(frozen=True)
class SpeedSampling:
    """How rollouts draw their reference-speed law and start speed (static, hashable).

    See :class:`mppi_ros.training.config.DataConfig` for the meaning of each field.
    """

    profile_share: float = 0.0
    speed_scale_range: tuple[float, float] = (1.0, 1.0)
    capped_share: float = 0.0
    standing_start_share: float = 0.0
    start_speed_fraction: tuple[float, float] | None = None

    @classmethod
    def from_config(cls, config: Any) -> SpeedSampling:
        """The sampling named by a config's fields of the same names (training ``data:`` or
        the softMPCritic ``vehicle:`` section); lists become tuples (hashable, static)."""
        fraction = config.start_speed_fraction
        return cls(
            profile_share=config.profile_share,
            speed_scale_range=tuple(config.speed_scale_range),
            capped_share=config.capped_share,
            standing_start_share=config.standing_start_share,
            start_speed_fraction=None if fraction is None else tuple(fraction),
        )


def sample_batch(
    key: Array,
    model: DynamicsModel,
    tracks: TrackArrays,
    size: int,
    init: InitialStateConfig,
    friction_range: tuple[float, float],
    speed_range: tuple[float, float],
    speeds: SpeedSampling = SpeedSampling(),
) -> RolloutBatch:
    """Draws rollout starts: a random track and raceline point, then uniform offsets.

    State entries are matched by name (``px, py, delta, v, yaw, yaw_rate, beta``); entries a
    model does not have are skipped, entries this does not know start at zero.
    """
    k_track, k_s, k_off, k_mu, k_noise = jax.random.split(key, 5)
    k_v = jax.random.fold_in(k_mu, 1)  # a new draw that leaves the older ones unchanged
    k_law = jax.random.split(jax.random.fold_in(k_mu, 2), 5)
    num_tracks = tracks.length.shape[0]
    index = jax.random.randint(k_track, (size,), 0, num_tracks)
    s = jax.random.uniform(k_s, (size,)) * tracks.length[index]
    one = jax.tree.map(lambda a: a[index], tracks)
    xy, psi, profile, _ = jax.vmap(interpolate)(one, s)
    u = jax.random.uniform(k_off, (size, 7), minval=-1.0, maxval=1.0)
    lo, hi = friction_range
    friction = jax.random.uniform(k_mu, (size,), minval=lo, maxval=hi)
    v_lo, v_hi = speed_range
    reference_speed = jax.random.uniform(k_v, (size,), minval=v_lo, maxval=v_hi)
    follow = (jax.random.uniform(k_law[0], (size,)) < speeds.profile_share).astype(jnp.float32)
    scale = jax.random.uniform(
        k_law[1], (size,), minval=speeds.speed_scale_range[0], maxval=speeds.speed_scale_range[1]
    )
    capped = follow * (jax.random.uniform(k_law[2], (size,)) < speeds.capped_share)
    max_speed = jnp.where(capped > 0, reference_speed, MAX_REFERENCE_SPEED)
    start_ref = jnp.minimum(jnp.where(follow > 0, scale * profile, reference_speed), max_speed)
    if speeds.start_speed_fraction is None:
        v_lo, v_hi = init.speed
        v0 = v_lo + (v_hi - v_lo) * 0.5 * (u[:, 3] + 1.0)
    else:
        f_lo, f_hi = speeds.start_speed_fraction
        v0 = start_ref * (f_lo + (f_hi - f_lo) * 0.5 * (u[:, 3] + 1.0))
    moving = (jax.random.uniform(k_law[3], (size,)) >= speeds.standing_start_share).astype(
        jnp.float32
    )
    columns = {
        "px": xy[:, 0] + init.position * u[:, 0],
        "py": xy[:, 1] + init.position * u[:, 1],
        "delta": moving * init.steering * u[:, 2],
        "v": moving * v0,
        "yaw": psi + init.heading * u[:, 4],
        "yaw_rate": moving * init.yaw_rate * u[:, 5],
        "beta": moving * init.slip * u[:, 6],
    }
    zeros = jnp.zeros(size)
    x0 = jnp.stack([columns.get(name, zeros) for name in model.state_names], axis=1)
    return RolloutBatch(
        track_index=index.astype(jnp.int32),
        x0=x0,
        friction=friction,
        reference_speed=reference_speed,
        follow_profile=follow,
        speed_scale=scale,
        max_speed=max_speed,
        key=jax.random.split(k_noise, size),
    )


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Static parts of the loss (the scheduled penalty weight is an argument)."""

    entropy_weight: float
    steps: int
    time_indexed_reference: bool = False
    gradient_window: int = 0  # truncated BPTT: cut state gradients every this many steps


def rollout_loss(
    ctrl: Any,
    weights: PolicyWeights,
    track: TrackArrays,
    x0: Array,
    friction: Array,
    key: Array,
    tuning: TrackingTuning,
    penalty_weight: Array,
    loss: LossWeights,
) -> tuple[Array, dict[str, Array]]:
    """Rolls the closed loop (network -> controller step -> model) for ``loss.steps`` steps.

    ``tuning.reference_speed`` is this rollout's speed (drawn per rollout by the caller).

    Returns:
        The mean per-step loss and per-rollout metrics.
    """
    model = ctrl.model
    step_fn = model.discrete(ctrl.dt, ctrl.config.integrator)
    plant_params = tuning.model_params
    if hasattr(plant_params, "mu"):
        plant_params = plant_params.replace(mu=plant_params.mu * friction)
    learned = isinstance(ctrl, StepMPPI)

    pos_idx = jnp.array(model.position_indices or (0, 1))

    def time_indexed(x: Array, s_ref: Array) -> Observation:
        """The next point of a reference that advances at the reference speed regardless of
        the car (the paper's training setup): falling behind costs more every step."""
        xy, psi, _, border = interpolate(track, s_ref)
        border = allowed_band(border, xy, border_clearance(tuning.model_params, tuning))
        ref = jnp.zeros(model.state_dim)
        i, j = model.position_indices or (0, 1)
        ref = ref.at[i].set(xy[0]).at[j].set(xy[1])
        if model.heading_index is not None:
            ref = ref.at[model.heading_index].set(psi)
        if model.speed_index is not None:
            ref = ref.at[model.speed_index].set(tuning.reference_speed)
        return Observation(state=x, reference=ref[None], border=border[None])

    def body(carry: tuple[Array, Array], inputs: tuple[Array, Array]) -> tuple:
        x, s_ref = carry
        k, t = inputs
        if loss.gradient_window:
            x = jnp.where(t % loss.gradient_window == 0, jax.lax.stop_gradient(x), x)
        s_ref = s_ref + tuning.reference_speed * ctrl.dt
        projected, window = observe(ctrl, track, x, tuning)
        if loss.time_indexed_reference:
            obs, origin = time_indexed(x, s_ref), jnp.zeros(2)
        else:
            obs, origin = projected, window.origin
        cstate = LearnedState(weights=weights, key=k, steps=jnp.zeros((), jnp.int32))
        u, _, info = ctrl.step(cstate, obs, tuning, k)
        x_next = step_fn(x, u, plant_params)
        ref, border = obs.reference[0], obs.border[0]
        x_frame = x_next.at[pos_idx].add(-origin)  # costs in the observation's frame
        track_cost = tracking_cost(
            x_frame, u, ref, tuning.q_weights, tuning.r_weights, model.angle_indices
        )
        # ``border`` is the allowed band already (car half-width and margin applied).
        border_pen = penalty_cost(
            x_frame,
            border,
            model.position_indices,
            1.0,
            0.0,
            0.0,
            tuning.state_min,
            tuning.state_max,
        )
        box_pen = penalty_cost(
            x_frame,
            border,
            model.position_indices,
            0.0,
            0.0,
            1.0,
            tuning.state_min,
            tuning.state_max,
        )
        entropy = gaussian_entropy(info.chol) if learned else jnp.zeros(())
        step_loss = (
            track_cost + penalty_weight * (border_pen + box_pen) - loss.entropy_weight * entropy
        )
        metrics = {
            "tracking_cost": track_cost,
            "border_penalty": border_pen,
            "box_penalty": box_pen,
            "entropy": entropy,
            "lateral_error": jnp.abs(window.lateral_error),
            "violation": (border_pen > 0).astype(jnp.float32),
        }
        return (x_next, s_ref), (step_loss, metrics)

    keys = jax.random.split(key, loss.steps)
    s0 = project(track, x0[pos_idx]).progress
    steps = jnp.arange(loss.steps)
    _, (step_losses, metrics) = jax.lax.scan(body, (x0, s0), (keys, steps))
    return jnp.mean(step_losses), jax.tree.map(jnp.mean, metrics)


def batch_loss(
    params: Any,
    stats: tuple[Array, Array],
    ctrl: Any,
    tracks: TrackArrays,
    batch: RolloutBatch,
    tuning: TrackingTuning,
    penalty_weight: Array,
    loss: LossWeights,
) -> tuple[Array, dict[str, Array]]:
    """Mean loss over a batch of rollouts, each on its own track (``vmap``)."""
    weights = PolicyWeights(params=params, input_mean=stats[0], input_std=stats[1])

    def one(item: RolloutBatch):
        track = jax.tree.map(lambda a: a[item.track_index], tracks)
        return rollout_loss(
            ctrl,
            weights,
            track,
            item.x0,
            item.friction,
            item.key,
            item.tuning(tuning),
            penalty_weight,
            loss,
        )

    losses, metrics = jax.vmap(one)(batch)
    metrics = jax.tree.map(jnp.mean, metrics)
    total = jnp.mean(losses)
    metrics["loss"] = total
    return total, metrics


def feature_statistics(
    ctrl: Any, tracks: TrackArrays, batch: RolloutBatch, tuning: TrackingTuning
) -> tuple[Array, Array]:
    """Mean and std of the policy features over a batch of start states.

    A feature that is constant in training (e.g. the reference speed) gets std 1, so a
    different value at run time shifts the input by its difference, not by 1000 sigmas.
    """

    def features(item: RolloutBatch) -> Array:
        track = jax.tree.map(lambda a: a[item.track_index], tracks)
        obs, _ = observe(ctrl, track, item.x0, item.tuning(tuning))
        return ctrl.features(obs)

    f = jax.jit(jax.vmap(features))(batch)  # one compile, not one per primitive
    std = jnp.std(f, axis=0)
    return jnp.mean(f, axis=0), jnp.where(std < 1e-3, 1.0, std)
