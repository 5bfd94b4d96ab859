"""Glue between a track and a controller: observations, a fused jit-able policy step, and the
NumPy convenience wrapper :func:`load_controller`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.core.catalog import controller_for
from mppi_ros.core.controllers import Controller, Observation, TrackingTuning
from mppi_ros.core.controllers.base import border_clearance
from mppi_ros.core.dynamics import DynamicsModel
from mppi_ros.core.tracks import (
    ReferenceSpeed,
    ReferenceWindow,
    Track,
    TrackArrays,
    reference_window,
)

Array = jax.Array
PolicyStep = Callable[[Any, Array, TrackingTuning, Array], tuple[Array, Any, Any, ReferenceWindow]]


def observe(
    ctrl: Controller,
    track: TrackArrays,
    state: Array,
    tuning: TrackingTuning,
) -> tuple[Observation, ReferenceWindow]:
    """Builds the controller's observation for ``state`` on ``track`` (pure, jit-able).

    The reference advances along the track's speed profile (scaled) or at the constant
    reference speed, as ``tuning`` says; borders are the allowed band (road minus the car's
    half-width and the margin).

    The observation is expressed in a frame translated to the vehicle (its position is 0;
    references and borders are offsets): every controller is translation invariant, and
    float32 world coordinates lose precision far from the map origin (the along-track
    feature, normalised by a few mm, turned that rounding into command noise).
    ``window.origin`` maps positions back (:func:`prediction_to_world`).
    """
    return observe_window(
        ctrl.model,
        track,
        state,
        ctrl.reference_horizon,
        ctrl.dt,
        tuning.reference_speed_law(),
        border_clearance(tuning.model_params, tuning),
    )


def observe_window(
    model: DynamicsModel,
    track: TrackArrays,
    state: Array,
    horizon: int,
    dt: float,
    speed: ReferenceSpeed,
    clearance: Array | float = 0.0,
) -> tuple[Observation, ReferenceWindow]:
    """:func:`observe` for ``horizon`` reference points of ``model`` spaced ``v * dt``."""
    origin = None
    if model.position_indices is not None:
        origin = state[jnp.array(model.position_indices)]
    window = reference_window(
        track,
        state,
        horizon=horizon,
        dt=dt,
        speed=speed,
        state_dim=model.state_dim,
        position_indices=model.position_indices or (0, 1),
        heading_index=model.heading_index,
        speed_index=model.speed_index,
        origin=origin,
        clearance=clearance,
    )
    if origin is not None:
        state = state.at[jnp.array(model.position_indices)].set(0.0)
    return Observation(state=state, reference=window.states, border=window.border), window


def prediction_to_world(ctrl: Controller, predicted: Array, window: ReferenceWindow) -> Array:
    """``(T, nx)`` predicted states from the observation frame back to the world frame."""
    if ctrl.model.position_indices is None:
        return predicted
    i, j = ctrl.model.position_indices
    return predicted.at[..., i].add(window.origin[0]).at[..., j].add(window.origin[1])


def info_to_world(ctrl: Controller, info: Any, window: ReferenceWindow) -> Any:
    """``info`` with its ``predicted_states`` and ``candidates`` (when it has them) in the
    world frame."""
    predicted = getattr(info, "predicted_states", None)
    if predicted is None:
        return info
    info = info.replace(predicted_states=prediction_to_world(ctrl, predicted, window))
    candidates = getattr(info, "candidates", None)
    if candidates is None:
        return info
    states = prediction_to_world(ctrl, candidates.states, window)
    return info.replace(candidates=candidates.replace(states=states))


def make_policy_step(ctrl: Controller, track: TrackArrays) -> PolicyStep:
    """``(cstate, state, tuning, key) -> (action, cstate, info, window)``, observation built in.

    The track arrays are closed over (they are data of the deployment, not tunable), the
    tuning is an argument. Wrap the result in ``jax.jit``.
    """

    def policy_step(cstate: Any, state: Array, tuning: TrackingTuning, key: Array):
        obs, window = observe(ctrl, track, state, tuning)
        action, cstate, info = ctrl.step(cstate, obs, tuning, key)
        return action, cstate, info_to_world(ctrl, info, window), window

    return policy_step


class NumpyController:
    """Stateful NumPy wrapper for examples and external harnesses: ``u = ctrl(x)``.

    The warm start lives in ``self.cstate`` (explicit, inspectable); ``reset()`` clears it.
    """

    def __init__(
        self, ctrl: Controller, track: Track, tuning: TrackingTuning | None = None, seed: int = 0
    ) -> None:
        self.controller = ctrl
        self.track = track
        self.tuning = tuning if tuning is not None else ctrl.default_tuning()
        self._seed = seed
        self._step = jax.jit(make_policy_step(ctrl, track.arrays()))
        self.reset()

    def reset(self) -> None:
        self._key = jax.random.PRNGKey(self._seed)
        self._key, init_key = jax.random.split(self._key)
        self.cstate = self.controller.init(init_key)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The control for state ``x`` (``model.state_names`` order), as a NumPy array.

        Raises:
            ValueError: If ``x`` does not have the model's state shape or is not finite.
        """
        model = self.controller.model
        x = np.asarray(x, np.float32)
        if x.shape != (model.state_dim,):
            raise ValueError(
                f"state must have shape ({model.state_dim},) "
                f"[{', '.join(model.state_names)}], got {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(f"state must be finite, got {x.tolist()}")
        self._key, key = jax.random.split(self._key)
        action, self.cstate, self.last_info, _ = self._step(
            self.cstate, jnp.asarray(x), self.tuning, key
        )
        return np.asarray(action)


def load_controller(
    name_or_path: str,
    track: Track | str = "default",
    speed_profile: str = "track",
    speed_scale: float = 1.0,
    reference_speed: float = 10.0,
    raceline: str = "auto",
    seed: int = 0,
    **overrides: Any,
) -> NumpyController:
    """A ready-to-call controller: ``load_controller("step_mppi", track="default")(x) -> u``.

    Args:
        name_or_path: A registered controller; the learned names (``step_mppi``, ``dpc``,
            ``soft_mpcritic``) load their shipped bundle; or a bundle folder.
        track: A :class:`Track` or anything :func:`load_track` takes (built-in name,
            ``circuit:SEED``, raceline / centerline CSV).
        speed_profile: ``track`` (the track's profile), ``friction`` (computed from
            curvature and the vehicle's limits) or ``constant`` (``reference_speed``).
        speed_scale: Multiplies the profile.
        reference_speed: The constant speed (m/s).
        raceline: For a track given by name: ``auto``, ``file`` or ``optimise``.
        seed: Sampling seed.
        **overrides: Static config fields, e.g. ``num_samples``.

    Raises:
        ValueError: For an unknown controller, speed profile or track.
    """
    from mppi_ros.core.speed import SpeedSettings

    speed = SpeedSettings(
        profile=speed_profile,
        scale=speed_scale,
        reference_speed=reference_speed,
        raceline=raceline,
    )
    if isinstance(track, str):
        track = speed.load(track)
    elif speed_profile == "friction":
        track = speed.with_profile(track)
    ctrl = controller_for(name_or_path, **overrides)
    return NumpyController(ctrl, track, speed.tuning(ctrl.default_tuning()), seed=seed)
