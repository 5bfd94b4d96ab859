"""What every controller shares: the observation, the live tuning pytree, the stage cost and
the functional interface ``init`` / ``step``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mppi_ros.core.costs import penalty_cost, tracking_cost
from mppi_ros.core.dynamics import DynamicsModel
from mppi_ros.core.tracks.window import ReferenceSpeed

Array = jax.Array

MAX_REFERENCE_SPEED = 100.0  # m/s: "no cap" as a finite number (tuning values stay finite)


def _finite_non_negative(v: np.ndarray) -> np.ndarray:
    return np.isfinite(v) & (v >= 0)


@struct.dataclass
class Observation:
    """What a controller sees at one control step.

    Attributes:
        state: ``(nx,)`` measured state.
        reference: ``(H, nx)`` reference states for the predicted states ``x_1 .. x_H``.
        border: ``(H, 4)`` border half-planes ``(a, b, c_left, c_right)`` per reference point.
    """

    state: Array
    reference: Array
    border: Array


@dataclasses.dataclass(frozen=True)
class TuningParameter:
    """A live tuning field a controller adds to :class:`TrackingTuning` (a node parameter).

    Attributes:
        name: The tuning field, also the parameter's name.
        description: What it does (the parameter's descriptor).
        bounds: Inclusive ``(low, high)`` range; ints for an integer parameter.
    """

    name: str
    description: str
    bounds: tuple[float, float] | tuple[int, int]

    @property
    def integer(self) -> bool:
        return all(isinstance(b, int) for b in self.bounds)


@dataclasses.dataclass(frozen=True)
class ConfigParameter:
    """A static config field of a bundle-less controller that a deployment may choose (a
    read-only node parameter; changing it means a new compiled controller).

    Attributes:
        name: The config field, also the parameter's name.
        description: What it does.
        choices: The valid values of a string field.
        bounds: Inclusive ``(low, high)`` of an integer field.
    """

    name: str
    description: str
    choices: tuple[str, ...] = ()
    bounds: tuple[int, int] | None = None


@struct.dataclass
class TrackingTuning:
    """Values that may change while the controller runs (ROS parameters); never recompile.

    Attributes:
        temperature: Softmax temperature lambda.
        noise_std: ``(nu,)`` sampling standard deviation (nominal; controllers may scale it).
        q_weights: ``(nx,)`` diagonal state-error weights.
        r_weights: ``(nu,)`` diagonal control weights.
        border_weight: Weight of the squared border violation.
        border_margin: Safety margin (m) kept between the car's side and the road edge (the
            allowed band is the road minus the car's half-width and this margin).
        box_weight: Weight of the squared state-box violation.
        state_min: ``(nx,)`` lower state limits (``-inf`` where free).
        state_max: ``(nx,)`` upper state limits (``+inf`` where free).
        reference_speed: Speed (m/s) at which the reference advances in constant-speed mode.
        follow_profile: 1 = the reference advances along the track's speed profile times
            ``speed_scale``; 0 = at ``reference_speed``.
        speed_scale: Multiplies the speed profile (``follow_profile`` = 1).
        max_speed: Caps the reference speed in both modes (m/s).
        model_params: Parameters of the prediction model (e.g. friction).
    """

    temperature: Array
    noise_std: Array
    q_weights: Array
    r_weights: Array
    border_weight: Array
    border_margin: Array
    box_weight: Array
    state_min: Array
    state_max: Array
    reference_speed: Array
    follow_profile: Array
    speed_scale: Array
    max_speed: Array
    model_params: Any

    def validity_checks(self) -> list[tuple[str, Any, Any, str]]:
        """``(name, value, ok(value) -> bool array, what ok means)`` for every checked field
        (:func:`update_tuning` raises for the first that fails); a controller's own tuning
        subclass extends the list."""
        return [
            ("temperature", self.temperature, lambda v: np.isfinite(v) & (v > 0), "finite and > 0"),
            ("noise_std", self.noise_std, lambda v: np.isfinite(v) & (v >= 0), "finite and >= 0"),
            ("q_weights", self.q_weights, lambda v: np.isfinite(v) & (v >= 0), "finite and >= 0"),
            ("r_weights", self.r_weights, lambda v: np.isfinite(v) & (v >= 0), "finite and >= 0"),
            ("border_weight", self.border_weight, _finite_non_negative, "finite, >= 0"),
            ("border_margin", self.border_margin, np.isfinite, "finite"),
            ("box_weight", self.box_weight, _finite_non_negative, "finite and >= 0"),
            ("reference_speed", self.reference_speed, np.isfinite, "finite"),
            ("follow_profile", self.follow_profile, lambda v: (v == 0) | (v == 1), "0 or 1"),
            ("speed_scale", self.speed_scale, _finite_non_negative, "finite and >= 0"),
            ("max_speed", self.max_speed, lambda v: np.isfinite(v) & (v > 0), "finite and > 0"),
        ]

    def reference_speed_law(self) -> ReferenceSpeed:
        """How fast the reference window advances under this tuning."""
        return ReferenceSpeed(
            constant=self.reference_speed,
            follow_profile=self.follow_profile,
            scale=self.speed_scale,
            cap=self.max_speed,
        )


def default_state_box(model: DynamicsModel, params: Any) -> tuple[np.ndarray, np.ndarray]:
    """State limits implied by a model's parameters (steering angle and speed for vehicles)."""
    lo = np.full(model.state_dim, -np.inf, np.float32)
    hi = np.full(model.state_dim, np.inf, np.float32)
    if hasattr(params, "delta_min") and "delta" in model.state_names:
        i = model.state_names.index("delta")
        lo[i], hi[i] = params.delta_min, params.delta_max
    if hasattr(params, "v_min") and model.speed_index is not None:
        lo[model.speed_index], hi[model.speed_index] = params.v_min, params.v_max
    return lo, hi


def make_tuning(model: DynamicsModel, **values: Any) -> TrackingTuning:
    """Builds a float32 tuning pytree with the Step-MPPI paper's vehicle defaults.

    Defaults: Q = diag(10, 10, 0, 0, 0.1, 0, 0) on position and heading (for other models,
    10 on position), R = 0.1 I, temperature 1, border weight 1e3, margin 0.1 m beyond the
    car's half-width, constant reference speed 10 m/s (no profile), no speed cap.
    """
    nx, nu = model.state_dim, model.control_dim
    q = np.zeros(nx, np.float32)
    if model.position_indices is not None:
        q[list(model.position_indices)] = 10.0
    if model.heading_index is not None:
        q[model.heading_index] = 0.1
    params = values.pop("model_params", model.default_params)
    lo, hi = default_state_box(model, params)
    base = dict(
        temperature=1.0,
        noise_std=np.ones(nu, np.float32),
        q_weights=q,
        r_weights=np.full(nu, 0.1, np.float32),
        border_weight=1e3,
        border_margin=0.1,
        box_weight=1e3,
        state_min=lo,
        state_max=hi,
        reference_speed=10.0,
        follow_profile=0.0,
        speed_scale=1.0,
        max_speed=MAX_REFERENCE_SPEED,
    )
    unknown = set(values) - set(base)
    if unknown:
        raise ValueError(f"unknown tuning field(s) {sorted(unknown)}; valid fields: {sorted(base)}")
    base.update(values)
    arrays = {k: jnp.asarray(v, jnp.float32) for k, v in base.items()}
    tuning = TrackingTuning(
        model_params=jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params), **arrays
    )
    return update_tuning(tuning)  # validates shapes


def update_tuning(tuning: TrackingTuning, **changes: Any) -> TrackingTuning:
    """Returns ``tuning`` with fields replaced, cast to the existing dtype and shape.

    Keeping dtypes and shapes fixed is what guarantees that a live change never recompiles.

    Raises:
        ValueError: For an unknown field, a shape mismatch, a non-finite value where one is not
            allowed, or a non-positive temperature / negative noise or weight.
    """
    fields = {f for f in tuning.__dataclass_fields__ if f != "model_params"}
    out = {}
    for name, value in changes.items():
        if name == "model_params":
            out[name] = jax.tree.map(
                lambda old, new: jnp.asarray(new, old.dtype), tuning.model_params, value
            )
            continue
        if name not in fields:
            raise ValueError(f"unknown tuning field {name!r}; valid fields: {sorted(fields)}")
        old = getattr(tuning, name)
        new = jnp.asarray(value, old.dtype)
        if new.shape != old.shape:
            raise ValueError(f"{name} must have shape {old.shape}, got {new.shape}")
        out[name] = new
    tuning = tuning.replace(**out)
    _check_tuning(tuning)
    return tuning


def _check_tuning(t: TrackingTuning) -> None:
    for name, value, ok, what in t.validity_checks():
        if isinstance(value, jax.core.Tracer):
            return
        if not np.all(ok(np.asarray(value))):
            raise ValueError(f"{name} must be {what}, got {np.asarray(value).tolist()}")
    if np.any(np.asarray(t.state_min) > np.asarray(t.state_max)):
        raise ValueError("state_min must not exceed state_max")


def border_clearance(params: Any, tuning: TrackingTuning) -> Array:
    """Distance kept between the car's centre and a road edge: its half-width (when the model
    has a ``width``) plus the live safety margin."""
    half_width = 0.5 * getattr(params, "width", 0.0)
    return half_width + tuning.border_margin


def step_keys(state_key: Array, key: Array | None) -> tuple[Array, Array]:
    """``(key for this step, key to store in the next controller state)``.

    With an explicit ``key`` the stored key is left as it is; without one, the stored key is
    split, so repeated calls with ``key=None`` draw fresh noise.
    """
    if key is None:
        next_key, key = jax.random.split(state_key)
        return key, next_key
    return key, state_key


def stage_cost(
    model: DynamicsModel, x_next: Array, u: Array, ref: Array, border: Array, t: TrackingTuning
) -> Array:
    """Tracking cost of ``x_next`` against ``ref`` plus control cost and soft constraints.

    ``border`` is already the allowed band (the observation applied the car's half-width and
    the margin), so no margin is subtracted here.
    """
    return tracking_cost(
        x_next, u, ref, t.q_weights, t.r_weights, model.angle_indices
    ) + penalty_cost(
        x_next,
        border,
        model.position_indices,
        t.border_weight,
        jnp.zeros(()),
        t.box_weight,
        t.state_min,
        t.state_max,
    )


class Controller(Protocol):
    """The functional interface shared by mppi, step_mppi, soft_mpcritic and dpc."""

    name: str
    model: DynamicsModel

    @property
    def reference_horizon(self) -> int:
        """How many reference points the observation must hold."""

    @property
    def dt(self) -> float:
        """Time step of the prediction model (spacing of the reference points)."""

    def default_tuning(self) -> TrackingTuning: ...

    def init(self, key: Array) -> Any: ...

    def step(
        self, cstate: Any, obs: Observation, tuning: TrackingTuning, key: Array | None = None
    ) -> tuple[Array, Any, Any]: ...


# Sampled paths a step reports for visualisation (``~/candidates``): the first samples, a
# fair subsample because they are drawn i.i.d.
CANDIDATE_COUNT = 32


@struct.dataclass
class Candidates:
    """Some of a step's sampled controls, as the states they lead to, with their weights.

    Attributes:
        states: ``(M, T, nx)``: each from the measured state (``states[:, 0]``) along its
            sampled controls, as the step's cost saw them.
        weights: ``(M,)``: their softmax weights in the step (all K samples sum to 1).
    """

    states: Array
    weights: Array


def candidate_count(samples: Any) -> int | None:
    """How many of ``samples`` to report; None for a symbolic sample count (an ONNX export's
    trace, which reports none)."""
    return min(CANDIDATE_COUNT, samples) if isinstance(samples, int) else None


def first_candidates(x0: Array, states: Array, weights: Array) -> Candidates | None:
    """:class:`Candidates` of the first :data:`CANDIDATE_COUNT` samples; ``states`` are
    ``(K, T, nx)`` without the start state ``x0`` (None: see :func:`candidate_count`)."""
    m = candidate_count(weights.shape[0])
    if m is None:
        return None
    start = jnp.broadcast_to(x0, (m, 1, x0.shape[-1]))
    return Candidates(jnp.concatenate([start, states[:m]], axis=1), weights[:m])


@runtime_checkable
class SampledController(Protocol):
    """A controller whose step draws noise of a fixed shape: it can take that noise as an
    argument instead of a key (what ONNX export traces, so both backends run one
    expression)."""

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Shape of one step's standard normal noise."""

    def step_with_noise(
        self, cstate: Any, obs: Observation, tuning: TrackingTuning, noise: Array
    ) -> tuple[Array, Any, Any]: ...


@runtime_checkable
class Replanner(Protocol):
    """A warm-started planner, which shifts its plan by the time between two calls."""

    def with_replan_period(self, period: float) -> Any:
        """This planner called every ``period`` seconds."""
