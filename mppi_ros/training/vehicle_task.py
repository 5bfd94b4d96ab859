"""The vehicle tracking task for softMPCritic training (Algorithm 2 on the project's plant).

Environment: the single-track plant integrated by RK4 at ``plant_dt`` with the steering
command delayed by ``steer_delay_steps`` plant steps (as ``mppi-ros bench closed-loop``),
held for one model step ``dt``; procedural training tracks (the built-in tracks stay held out);
each episode starts at a random raceline point with the Step-MPPI initial-state distribution
and draws its reference speed. Reward: minus the planner's own stage cost of the transition
(tracking cost against the first reference point plus border and box penalties). Episodes are
truncated (never terminated: with positive costs a terminal state would be a reward) after
``episode_steps`` or when the car is more than ``lost_distance`` from the raceline.

The environment has gymnasium's ``reset`` / ``step`` signatures so the trainer drives it like a
MuJoCo task; its physics and observation are one compiled JAX function per call.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.core.controllers.base import MAX_REFERENCE_SPEED, border_clearance
from mppi_ros.core.controllers.soft_mpcritic_tracking import TrackingCriticProblem
from mppi_ros.core.dynamics import get_dynamics
from mppi_ros.core.dynamics.ensemble import EnsembleModel
from mppi_ros.core.policy import observe_window
from mppi_ros.core.tracks import ReferenceSpeed, load_track
from mppi_ros.sim.closed_loop import PlantState, SimConfig, hold_command
from mppi_ros.training.config import InitialStateConfig
from mppi_ros.training.rollout import SpeedSampling, sample_batch, stack_tracks
from mppi_ros.training.track_sets import circuits, procedural_tracks

Array = jax.Array

VEHICLE_TASK = "f1tenth-tracking"


@dataclasses.dataclass(frozen=True)
class VehicleTaskConfig:
    """The vehicle task's settings (``vehicle:`` in a softMPCritic training YAML).

    Attributes:
        dynamics: Plant and planner state model.
        dt: Model step (s): one environment step, one planner step, reference spacing.
        plant_dt: Plant integration step (s).
        steer_delay_steps: Plant steps between a steering command and its effect.
        train_tracks: Procedural tracks ``train_seed ..`` to drive on.
        train_seed: Seed of the first training track.
        reference_speed: Nominal reference speed (m/s; the bundle's default).
        speed_range: Per-episode reference speed range (m/s); empty: always ``reference_speed``.
        episode_steps: Time limit of an episode in steps.
        lost_distance: Truncate when the car is this far from the raceline (m).
        preview: Reference offsets the Q-function previews (steps ahead).
        q_weights: Stage cost state weights (the tracking defaults plus a little speed).
        r_weights: Stage cost control weights.
        border_weight: Squared border violation weight.
        border_margin: Border safety margin (m).
        initial_state: Start distribution around a random raceline point.
        value_rescaling: Fit the Q-network on rescaled costs-to-go
            (:attr:`CriticProblem.value_rescaling`).
        circuits: Generated real-circuit-like tracks added to the procedural ones (seeds
            ``circuit_seed`` onwards).
        circuit_seed: First circuit seed.
        profile_share, speed_scale_range, capped_share, standing_start_share,
        start_speed_fraction: The reference-speed law and start speed of each episode, as
            in :class:`mppi_ros.training.config.DataConfig`.
        friction_scale: Range of the plant's friction multiplier drawn per episode.
    """

    dynamics: str = "single_track"
    dt: float = 0.05
    plant_dt: float = 0.01
    steer_delay_steps: int = 2
    train_tracks: int = 12
    train_seed: int = 100
    reference_speed: float = 6.0
    speed_range: tuple[float, ...] = ()
    episode_steps: int = 400
    lost_distance: float = 2.0
    preview: tuple[int, ...] = (5, 10, 20)
    q_weights: tuple[float, ...] = (10.0, 10.0, 0.0, 0.5, 0.1, 0.0, 0.0)
    r_weights: tuple[float, ...] = (0.1, 0.01)
    border_weight: float = 1000.0
    border_margin: float = 0.3
    initial_state: InitialStateConfig = dataclasses.field(
        default_factory=lambda: InitialStateConfig(
            position=0.3, heading=0.1, speed=(3.0, 6.0), steering=0.1, yaw_rate=0.2, slip=0.02
        )
    )
    value_rescaling: bool = True
    circuits: int = 0
    circuit_seed: int = 1000
    profile_share: float = 0.0
    speed_scale_range: tuple[float, float] = (1.0, 1.0)
    capped_share: float = 0.0
    standing_start_share: float = 0.0
    start_speed_fraction: tuple[float, float] | None = None
    friction_scale: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        substeps = round(self.dt / self.plant_dt)
        if substeps < 1 or not np.isclose(substeps * self.plant_dt, self.dt):
            raise ValueError(f"dt {self.dt} must be a multiple of plant_dt {self.plant_dt}")
        if self.speed_range and (len(self.speed_range) != 2 or self.speed_range[0] <= 0):
            raise ValueError(f"speed_range must be [low, high] m/s, got {self.speed_range}")
        if self.train_tracks < 1 or self.episode_steps < 1:
            raise ValueError("train_tracks and episode_steps must be >= 1")

    @property
    def speeds(self) -> tuple[float, float]:
        return tuple(self.speed_range) if self.speed_range else (self.reference_speed,) * 2

    @property
    def sampling(self) -> SpeedSampling:
        """How episodes draw their reference-speed law and start speed."""
        return SpeedSampling.from_config(self)

    def problem(
        self, horizon: int, members: int, hidden: tuple[int, ...], critics: int
    ) -> TrackingCriticProblem:
        """The planning problem of this task for planner horizon ``horizon``."""
        model = get_dynamics(self.dynamics)
        lo, hi = model.control_bounds(model.default_params)
        pose = (*model.position_indices, model.heading_index)
        return TrackingCriticProblem(
            ensemble=EnsembleModel(
                model.state_dim, model.control_dim, members, hidden, "silu", pose
            ),
            stage_cost=None,
            action_low=tuple(float(v) for v in np.asarray(lo)),
            action_high=tuple(float(v) for v in np.asarray(hi)),
            q_hidden=hidden,
            critics=critics,
            value_rescaling=self.value_rescaling,
            dynamics=self.dynamics,
            horizon=horizon,
            preview=tuple(self.preview),
            q_weights=tuple(self.q_weights),
            r_weights=tuple(self.r_weights),
            border_weight=self.border_weight,
            border_margin=self.border_margin,
        )


class VehicleTrackingEnv:
    """gymnasium-style environment of :class:`VehicleTaskConfig` (see the module docstring).

    Args:
        task: Settings.
        problem: The planning problem (its observation layout and stage cost).
        tracks: Track names or seeds to drive on instead of the procedural training tracks
            (evaluation on held-out tracks).
    """

    def __init__(
        self, task: VehicleTaskConfig, problem: TrackingCriticProblem, tracks: list | None = None
    ) -> None:
        self.task = task
        self.problem = problem
        self.model = problem.model
        if tracks is None:
            chosen = procedural_tracks(task.train_seed, task.train_tracks)
            chosen += circuits(task.circuit_seed, task.circuits)
        else:
            chosen = [load_track(str(t)) for t in tracks]
        self.track_names = [t.name for t in chosen]
        self.tracks = stack_tracks(chosen)
        self.params = self.model.params_for_step(self.model.default_params, task.plant_dt)
        self._tuning = problem.stage_tuning()
        self._key = jax.random.PRNGKey(0)
        self._reset = jax.jit(self._reset_fn)
        self._step = jax.jit(self._step_fn)
        self._state: dict[str, Any] | None = None

    # ----- pure pieces ------------------------------------------------------------------------

    def _observe(self, track, x: Array, law: ReferenceSpeed) -> tuple[Array, Array]:
        task = self.task
        tuning = self._tuning
        obs, window = observe_window(
            self.model,
            track,
            x,
            self.problem.reference_points,
            task.dt,
            law,
            border_clearance(tuning.model_params, tuning),
        )
        return self.problem.flatten(obs, window.origin), window.lateral_error

    def _reset_fn(self, key: Array, speed: Array):
        """A start; ``speed`` > 0 forces a constant reference speed (evaluation)."""
        task = self.task
        batch = sample_batch(
            key,
            self.model,
            self.tracks,
            1,
            task.initial_state,
            tuple(task.friction_scale),
            task.speeds,
            task.sampling,
        )
        index = batch.track_index[0]
        track = jax.tree.map(lambda a: a[index], self.tracks)
        x = batch.x0[0]
        forced = speed > 0
        law = ReferenceSpeed(
            constant=jnp.where(forced, speed, batch.reference_speed[0]),
            follow_profile=jnp.where(forced, 0.0, batch.follow_profile[0]),
            scale=batch.speed_scale[0],
            cap=jnp.where(forced, MAX_REFERENCE_SPEED, batch.max_speed[0]),
        )
        obs, lateral = self._observe(track, x, law)
        history = jnp.zeros((task.steer_delay_steps + 1, self.model.control_dim))
        episode = (law, batch.friction[0])
        return index, PlantState(x=x, command_history=history), episode, obs, lateral

    def _step_fn(self, index, plant: PlantState, episode, obs, action):
        task, model, problem = self.task, self.model, self.problem
        track = jax.tree.map(lambda a: a[index], self.tracks)
        low, high = problem.bounds()
        action = jnp.clip(action, low, high)
        delays = jnp.array([task.steer_delay_steps] + [0] * (model.control_dim - 1))
        substeps = round(task.dt / task.plant_dt)
        keys = jax.random.split(jax.random.PRNGKey(0), substeps)  # no process noise
        law, friction = episode
        params = self.params.replace(mu=self.params.mu * friction)
        plant, violation, _ = hold_command(
            model,
            track,
            task.plant_dt,
            delays,
            SimConfig.car_half_width,
            plant,
            action,
            params,
            keys,
        )
        # The stage cost of the true transition, in the frame of the observation it left.
        origin, _ = problem.unflatten(obs)
        s, context = problem.split(obs)
        pos = jnp.array(model.position_indices)
        cost = problem.stage(s, action, plant.x.at[pos].add(-origin), 0, context)
        next_obs, lateral = self._observe(track, plant.x, law)
        return plant, next_obs, cost, lateral, violation

    # ----- gymnasium-style API ----------------------------------------------------------------

    def reset(self, seed: int | None = None, speed: float | None = None):
        """Starts an episode; returns ``(obs, info)``."""
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        self._key, key = jax.random.split(self._key)
        index, plant, episode, obs, lateral = self._reset(key, jnp.float32(speed or 0.0))
        self._state = dict(index=index, plant=plant, episode=episode, obs=obs, t=0)
        law = episode[0]
        return np.asarray(obs), {
            "track": self.track_names[int(index)],
            "reference_speed": float(law.constant),
            "follow_profile": bool(law.follow_profile > 0.5),
            "lateral_error": float(lateral),
        }

    def step(self, action):
        """``(obs, reward, terminated, truncated, info)``; reward = minus the stage cost."""
        s = self._state
        if s is None:
            raise RuntimeError("call reset() before step()")
        plant, obs, cost, lateral, violation = self._step(
            s["index"], s["plant"], s["episode"], s["obs"], jnp.asarray(action, jnp.float32)
        )
        s.update(plant=plant, obs=obs, t=s["t"] + 1)
        x = plant.x
        lateral = float(lateral)
        finite = bool(np.all(np.isfinite(np.asarray(x))))
        truncated = (
            s["t"] >= self.task.episode_steps
            or abs(lateral) > self.task.lost_distance
            or not finite
        )
        info = {"lateral_error": lateral, "violation": float(violation), "state": np.asarray(x)}
        return np.asarray(obs), -float(cost), False, truncated, info
