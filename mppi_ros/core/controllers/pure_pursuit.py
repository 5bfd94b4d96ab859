"""Pure pursuit: the F1TENTH community's default path follower, as a baseline.

The car steers towards the point of the reference window that lies a lookahead distance
``L = clip(lookahead_time * v, lookahead_min, lookahead_max)`` away (the classic geometric
law ``delta* = atan(2 W sin(alpha) / L)``, ``W`` the wheelbase, ``alpha`` the angle of that
point seen from the car's heading), and tracks the reference speed of the next window point
with a proportional acceleration. The model's controls are steering *rate* and acceleration,
so the steering angle is driven towards ``delta*`` within one step, rate-limited.

It reads the same observation as every other controller (the reference window of the track,
its speed profile, in the car's frame), so every benchmark can show what a learned controller
buys over it. It has no weights and samples nothing.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from mppi_ros.core.controllers.base import Observation, TrackingTuning, make_tuning, step_keys
from mppi_ros.core.dynamics import DynamicsModel, get_dynamics

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PurePursuitConfig:
    """Static settings.

    Attributes:
        dynamics: Vehicle model (needs position, heading, speed and a ``delta`` state).
        dt: Spacing (s at the reference speed) of the window's points.
        horizon: Points in the window; ``horizon * dt * v`` must exceed the lookahead.
        lookahead_time: Lookahead distance per m/s of speed (s).
        lookahead_min: Smallest lookahead (m).
        lookahead_max: Largest lookahead (m).
        steer_time: Time constant (s) of the steering-angle servo.
        speed_gain: Acceleration per m/s of speed error (1/s).
    """

    dynamics: str = "single_track"
    dt: float = 0.05
    horizon: int = 60
    lookahead_time: float = 0.25
    lookahead_min: float = 0.8
    lookahead_max: float = 4.0
    steer_time: float = 0.05
    speed_gain: float = 4.0

    def __post_init__(self) -> None:
        if self.horizon < 2 or not self.dt > 0:
            raise ValueError("horizon must be >= 2 and dt > 0")
        if not 0 < self.lookahead_min <= self.lookahead_max:
            raise ValueError("need 0 < lookahead_min <= lookahead_max")
        if self.lookahead_time < 0 or self.steer_time <= 0 or self.speed_gain <= 0:
            raise ValueError("lookahead_time >= 0, steer_time > 0 and speed_gain > 0 required")


@struct.dataclass
class PurePursuitState:
    """Only the PRNG key and a step count: pure pursuit keeps no plan."""

    key: Array
    steps: Array


@struct.dataclass
class PurePursuitInfo:
    target: Array  # (2,) lookahead point in the observation frame
    lookahead: Array  # m
    steering_target: Array  # rad


@dataclasses.dataclass(frozen=True)
class PurePursuit:
    """Pure pursuit on the shared controller interface (see the module docstring)."""

    config: PurePursuitConfig = PurePursuitConfig()
    name: str = "pure_pursuit"

    @property
    def model(self) -> DynamicsModel:
        return get_dynamics(self.config.dynamics)

    @property
    def reference_horizon(self) -> int:
        return self.config.horizon

    @property
    def dt(self) -> float:
        return self.config.dt

    def default_tuning(self) -> TrackingTuning:
        model = self.model
        return make_tuning(model, model_params=model.params_for_step(model.default_params, 0.05))

    def init(self, key: Array) -> PurePursuitState:
        return PurePursuitState(key=key, steps=jnp.zeros((), jnp.int32))

    def step(
        self,
        cstate: PurePursuitState,
        obs: Observation,
        tuning: TrackingTuning,
        key: Array | None = None,
    ) -> tuple[Array, PurePursuitState, PurePursuitInfo]:
        model, c = self.model, self.config
        _, next_key = step_keys(cstate.key, key)
        i, j = model.position_indices
        h, v_i = model.heading_index, model.speed_index
        d_i = model.state_names.index("delta")
        x = obs.state
        physical = model.physical_params(tuning.model_params)
        wheelbase = physical.lf + physical.lr
        speed = jnp.maximum(x[v_i], 0.0)
        lookahead = jnp.clip(c.lookahead_time * speed, c.lookahead_min, c.lookahead_max)
        rel = jnp.stack([obs.reference[:, i] - x[i], obs.reference[:, j] - x[j]], axis=1)
        dist = jnp.linalg.norm(rel, axis=1)
        # The first window point at least a lookahead away (the last one if none is).
        beyond = dist >= lookahead
        k = jnp.where(jnp.any(beyond), jnp.argmax(beyond), dist.shape[0] - 1)
        target = rel[k]
        alpha = jnp.arctan2(target[1], target[0]) - x[h]
        reach = jnp.maximum(dist[k], 1e-3)
        delta_target = jnp.arctan2(2.0 * wheelbase * jnp.sin(alpha), reach)
        delta_target = jnp.clip(delta_target, physical.delta_min, physical.delta_max)
        lo, hi = model.control_bounds(tuning.model_params)
        steer_rate = (delta_target - x[d_i]) / c.steer_time
        accel = c.speed_gain * (obs.reference[0, v_i] - x[v_i])
        action = jnp.clip(jnp.stack([steer_rate, accel]), lo, hi)
        info = PurePursuitInfo(target=target, lookahead=lookahead, steering_target=delta_target)
        return action, cstate.replace(key=next_key, steps=cstate.steps + 1), info
