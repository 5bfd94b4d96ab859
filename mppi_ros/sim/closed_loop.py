"""Closed-loop simulation: a plant integrated by RK4 at its own step, a controller replanning
at its own period, command delay, process noise, friction scaling, lap counting and border
checks (laps and excursions counted by :mod:`mppi_ros.sim.laps`, as in the simulator node).

The plant advance between two controller calls is one jit-compiled ``lax.scan``; the loop over
controller calls is Python, so any controller (JAX or ONNX) can be timed per step after
``block_until_ready``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mppi_ros.core.controllers import Controller, TrackingTuning
from mppi_ros.core.costs import border_violation
from mppi_ros.core.dynamics import DynamicsModel, get_dynamics
from mppi_ros.core.policy import make_policy_step
from mppi_ros.core.tracks import Track, TrackArrays, interpolate, project
from mppi_ros.sim.laps import LapCounter, count_excursions

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Settings of one closed-loop run.

    Attributes:
        dynamics: Plant model name (registry).
        plant_dt: Plant integration step (s), RK4.
        control_period: Time between controller calls (s); a multiple of ``plant_dt``.
        command_delay_steps: Per control channel, plant steps between command and effect
            (F1TENTH gym: 2 for steering).
        process_noise_std: Per state entry, std of additive noise per sqrt(second).
        friction_scale: Multiplies the plant's friction coefficient ``mu``.
        laps: Laps to drive before stopping.
        max_time: Simulated-time limit (s); default from the track length and a 3 m/s floor.
        initial_speed: Speed at the start line (m/s); default: the reference speed.
        car_half_width: A border violation is any part of the car's width over an edge.
        lost_distance: Stop early when the car is this far from the raceline (m).
        seed: Seed for the controller's sampling and the process noise.
    """

    dynamics: str = "single_track"
    plant_dt: float = 0.01
    control_period: float = 0.05
    command_delay_steps: tuple[int, ...] = (0, 0)
    process_noise_std: tuple[float, ...] | None = None
    friction_scale: float = 1.0
    laps: int = 1
    max_time: float | None = None
    initial_speed: float | None = None
    car_half_width: float = 0.155
    lost_distance: float = 5.0
    seed: int = 0

    @property
    def substeps(self) -> int:
        n = round(self.control_period / self.plant_dt)
        if n < 1 or not math.isclose(n * self.plant_dt, self.control_period, rel_tol=1e-6):
            raise ValueError(
                f"control_period {self.control_period} must be a multiple of plant_dt "
                f"{self.plant_dt}"
            )
        return n


@struct.dataclass
class PlantState:
    """True vehicle state and the queue of recent commands (newest first)."""

    x: Array
    command_history: Array


def plant_params(model: DynamicsModel, friction_scale: float, dt: float) -> Any:
    params = model.params_for_step(model.default_params, dt)
    if hasattr(params, "mu"):
        params = params.replace(mu=params.mu * friction_scale)
    return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)


class Plant:
    """The simulated vehicle: ``advance`` integrates one control period (jit-compiled)."""

    def __init__(self, config: SimConfig, track: TrackArrays) -> None:
        self.config = config
        self.model = get_dynamics(config.dynamics)
        if len(config.command_delay_steps) != self.model.control_dim:
            raise ValueError(
                f"command_delay_steps needs {self.model.control_dim} entries "
                f"({', '.join(self.model.control_names)}), got {config.command_delay_steps}"
            )
        self.params = plant_params(self.model, config.friction_scale, config.plant_dt)
        self.track = track
        self._advance_on = _advance_function(config)

    def advance(
        self, plant: PlantState, command: Array, key: Array, params: Any
    ) -> tuple[PlantState, Array, Array]:
        """Integrates one control period holding ``command`` (see :func:`hold_command`).

        One compiled function per :class:`SimConfig` serves every track of the same size
        (the track is an argument), so a benchmark over many circuits compiles once.
        """
        return self._advance_on(plant, command, key, params, self.track)

    def initial_state(self, x: Array) -> PlantState:
        depth = max(self.config.command_delay_steps) + 1
        return PlantState(
            x=jnp.asarray(x, jnp.float32),
            command_history=jnp.zeros((depth, self.model.control_dim), jnp.float32),
        )


@functools.lru_cache(maxsize=16)
def _advance_function(config: SimConfig) -> Callable[..., Any]:
    """Jitted ``(plant, command, key, params, track) -> (plant, violation, applied)``."""
    model = get_dynamics(config.dynamics)
    delays = jnp.asarray(config.command_delay_steps, jnp.int32)
    noise = config.process_noise_std
    noise = None if noise is None else jnp.asarray(noise, jnp.float32)

    def advance(plant: PlantState, command: Array, key: Array, params: Any, track: TrackArrays):
        keys = jax.random.split(key, config.substeps)
        return hold_command(
            model,
            track,
            config.plant_dt,
            delays,
            config.car_half_width,
            plant,
            command,
            params,
            keys,
            noise,
        )

    return jax.jit(advance)


@jax.jit
def _project_position(track: TrackArrays, position: Array):
    return project(track, position)


def hold_command(
    model: DynamicsModel,
    track: TrackArrays,
    plant_dt: float,
    delays: Array,
    car_half_width: float,
    plant: PlantState,
    command: Array,
    params: Any,
    keys: Array,
    noise: Array | None = None,
) -> tuple[PlantState, Array, Array]:
    """Integrates ``len(keys)`` plant steps (RK4) holding ``command``, each channel delayed by
    its ``delays`` entry in plant steps (pure; ``track`` may be traced).

    Returns:
        The new plant state, the largest border violation (m, with the car's half width)
        seen on any plant step, and the applied (delayed) control of the last plant step.
    """
    step = model.discrete(plant_dt, "rk4")
    pos_idx = jnp.array(model.position_indices or (0, 1))
    channels = jnp.arange(model.control_dim)

    def body(carry: PlantState, k: Array) -> tuple[PlantState, tuple[Array, Array]]:
        history = jnp.concatenate([command[None], carry.command_history[:-1]], axis=0)
        applied = history[delays, channels]
        x = step(carry.x, applied, params)
        if noise is not None:
            x = x + noise * math.sqrt(plant_dt) * jax.random.normal(k, x.shape)
        pos = x[pos_idx]
        _, _, _, border = interpolate(track, project(track, pos).progress)
        violation = border_violation(pos, border, car_half_width)
        return PlantState(x=x, command_history=history), (violation, applied)

    plant, (violations, applied) = jax.lax.scan(body, plant, keys)
    return plant, jnp.max(violations), applied[-1]


@dataclasses.dataclass
class SimResult:
    """Per-control-step logs and summary of one closed-loop run."""

    track: str
    controller: str
    time: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    progress: np.ndarray  # unwrapped arc length along the raceline (m)
    lateral_error: np.ndarray  # signed distance to the raceline (m)
    violation: np.ndarray  # per step: largest border violation (m) during the period
    step_time_ms: np.ndarray
    lap_times: list[float]
    track_length: float
    stop_reason: str
    infos: list[Any] = dataclasses.field(default_factory=list, repr=False)

    @property
    def laps_completed(self) -> int:
        return len(self.lap_times)

    @property
    def border_violations(self) -> int:
        """Number of separate excursions of the car's body over a track edge."""
        return count_excursions(self.violation)

    def summary(self) -> dict[str, Any]:
        """The closed-loop benchmark keys (the documented bench JSON schema)."""
        err = np.abs(self.lateral_error)
        effort = float(np.mean(np.sum(self.actions**2, axis=1))) if len(self.actions) else 0.0
        return {
            "laps_completed": self.laps_completed,
            "border_violations": self.border_violations,
            "lap_time_s": float(np.mean(self.lap_times)) if self.lap_times else None,
            "lap_times_s": [round(t, 3) for t in self.lap_times],
            "tracking_error_mean_m": float(np.mean(err)) if len(err) else None,
            "tracking_error_p95_m": float(np.percentile(err, 95)) if len(err) else None,
            "tracking_error_max_m": float(np.max(err)) if len(err) else None,
            "control_effort": effort,
            "step_time_p50_ms": float(np.percentile(self.step_time_ms, 50)),
            "step_time_p99_ms": float(np.percentile(self.step_time_ms, 99)),
            "stop_reason": self.stop_reason,
        }


def start_state(model: DynamicsModel, track: Track, speed: float) -> np.ndarray:
    """The vehicle at the start line, on the raceline, heading along it."""
    x = np.zeros(model.state_dim, np.float32)
    i, j = model.position_indices or (0, 1)
    x[i], x[j] = track.xy[0]
    if model.heading_index is not None:
        x[model.heading_index] = track.psi[0]
        if model.speed_index is not None:
            x[model.speed_index] = speed
    elif "vx" in model.state_names:
        x[model.state_names.index("vx")] = speed * math.cos(track.psi[0])
        x[model.state_names.index("vy")] = speed * math.sin(track.psi[0])
    return x


def run_closed_loop(
    ctrl: Controller,
    track: Track,
    tuning: TrackingTuning | None = None,
    config: SimConfig = SimConfig(),
    policy_step: Callable | None = None,
    progress: Callable[[float], None] | None = None,
    keep_infos: bool = False,
    cstate: Any = None,
) -> SimResult:
    """Drives ``ctrl`` around ``track`` until ``config.laps`` laps, a time-out or losing the car.

    Args:
        ctrl: Any controller of the registry.
        track: The track (its raceline is the reference, its edges the borders).
        tuning: Live values; default ``ctrl.default_tuning()``.
        config: Plant and loop settings.
        policy_step: A pre-jitted ``make_policy_step`` (reuse one compilation across runs).
        progress: Called with the fraction of laps done after each control step.
        keep_infos: Keep each step's ``info`` pytree (e.g. predicted trajectories).
        cstate: Initial controller state for ``policy_step`` (default ``ctrl.init``).
    """
    tuning = tuning if tuning is not None else ctrl.default_tuning()
    arrays = track.arrays()
    plant = Plant(config, arrays)
    if policy_step is None:
        policy_step = jax.jit(make_policy_step(ctrl, arrays))
    ref_speed = float(tuning.reference_speed)
    speed0 = config.initial_speed if config.initial_speed is not None else ref_speed
    length = track.length
    max_time = config.max_time or config.laps * length / max(min(ref_speed, 3.0), 0.5) + 10.0

    key = jax.random.PRNGKey(config.seed)
    key, init_key, warm_key = jax.random.split(key, 3)
    cstate = ctrl.init(init_key) if cstate is None else cstate
    pstate = plant.initial_state(start_state(plant.model, track, speed0))
    # Compile and warm up outside the timed loop; the result is discarded.
    jax.block_until_ready(policy_step(cstate, pstate.x, tuning, warm_key))
    jax.block_until_ready(
        plant.advance(pstate, jnp.zeros(plant.model.control_dim), key, plant.params)
    )

    pos_idx = jnp.array(plant.model.position_indices or (0, 1))

    def project_position(x: Array):
        return _project_position(arrays, x[pos_idx])

    log: dict[str, list] = {k: [] for k in ("t", "x", "u", "s", "e", "viol", "ms")}
    infos: list[Any] = []
    laps = LapCounter(length, float(project_position(pstate.x).progress), time=0.0)
    t = 0.0
    stop_reason = "time_limit"
    while t < max_time:
        key, step_key, noise_key = jax.random.split(key, 3)
        tic = time.perf_counter()
        action, cstate, info, _ = policy_step(cstate, pstate.x, tuning, step_key)
        action = jax.block_until_ready(action)
        elapsed_ms = (time.perf_counter() - tic) * 1e3
        u = np.asarray(action)
        if not np.all(np.isfinite(u)):
            stop_reason = "non_finite_action"
            break
        x_before = np.asarray(pstate.x)
        pstate, violation, _ = plant.advance(pstate, action, noise_key, plant.params)
        t += config.control_period
        x_now = np.asarray(pstate.x)
        proj = project_position(pstate.x)
        laps.update(float(proj.progress), t)
        error = float(proj.lateral_error)
        for name, value in zip(
            ("t", "x", "u", "s", "e", "viol", "ms"),
            (t, x_before, u, laps.distance, error, float(violation), elapsed_ms),
            strict=True,
        ):
            log[name].append(value)
        if keep_infos:
            infos.append(jax.device_get(info))
        if progress is not None:
            progress(min(laps.distance / (config.laps * length), 1.0))
        if laps.laps >= config.laps:
            stop_reason = "laps_completed"
            break
        if not np.all(np.isfinite(x_now)):
            stop_reason = "non_finite_state"
            break
        if abs(float(proj.lateral_error)) > config.lost_distance:
            stop_reason = "lost_track"
            break

    return SimResult(
        track=track.name,
        controller=ctrl.name,
        time=np.asarray(log["t"]),
        states=np.asarray(log["x"]).reshape(-1, plant.model.state_dim),
        actions=np.asarray(log["u"]).reshape(-1, plant.model.control_dim),
        progress=np.asarray(log["s"]),
        lateral_error=np.asarray(log["e"]),
        violation=np.asarray(log["viol"]),
        step_time_ms=np.asarray(log["ms"]),
        lap_times=laps.lap_times,
        track_length=length,
        stop_reason=stop_reason,
        infos=infos,
    )
