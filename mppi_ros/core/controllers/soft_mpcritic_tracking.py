"""softMPCritic on the vehicle tracking task: the planning problem and the controller.

The planner (:mod:`mppi_ros.core.controllers.soft_mpcritic`) rolls a learned, pose-invariant
dynamics ensemble over a short horizon, scores each step with the same tracking cost and
border / box penalties as the other controllers (against the reference point of that step),
and closes the horizon with a learned soft Q-function of track-frame features.

Observation of the learning loop (what the replay buffer stores), one flat vector::

    [origin (2), state (nx; position zeroed), reference (R, nx), border (R, 4)]

``origin`` is the world position of the frame the reference and borders are expressed in
(the car's position), so the ensemble learns from world-frame transitions while the planner
always starts at the origin. ``R = horizon + 1 + max(preview)`` reference points, spaced by
``v_ref * dt`` along the raceline, as every controller's observation.

Q features of a state (the observation's, or a rollout's last): where the state lies on the
reference window (lateral offset and heading error to its nearest segment), its non-pose
entries, the reference speed, the border distances, and for each preview offset ``p`` the
lateral offset and heading change of the reference ``p`` points further on (what the track
does next), each divided by a fixed physical scale so the network sees order-one inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mppi_ros.core.controllers.base import (
    Observation,
    TrackingTuning,
    make_tuning,
    stage_cost,
    step_keys,
    update_tuning,
)
from mppi_ros.core.controllers.mppi import shift_plan
from mppi_ros.core.controllers.soft_mpcritic import (
    CriticProblem,
    CriticWeights,
    SoftMPCriticConfig,
    SoftTuning,
    improve,
)
from mppi_ros.core.controllers.soft_mpcritic_start import start_plan
from mppi_ros.core.dynamics import DynamicsModel, get_dynamics, wrap_angle

Array = jax.Array

# Order-one scales of the state features (across, sin, cos, delta, v, yaw rate, slip,
# reference speed, left, right distance) and of each preview pair (offset m, sin dpsi).
POLICY_FEATURE_SCALE = (0.5, 0.3, 1.0, 0.2, 5.0, 2.0, 0.1, 5.0, 1.0, 1.0)
PREVIEW_SCALE = (2.0, 0.5)


@dataclasses.dataclass(frozen=True)
class TrackingCriticProblem(CriticProblem):
    """softMPCritic's problem for reference tracking with a vehicle model.

    Attributes (besides :class:`CriticProblem`'s; ``stage_cost`` is unused, pass ``None``):
        dynamics: Vehicle model name (defines the state and the tracking cost's angles).
        horizon: Planner horizon H of the stored observations (``reference_points``).
        preview: Reference offsets (steps past ``t``) the Q-function previews.
        q_weights: Diagonal state-error weights of the stage cost during training.
        r_weights: Diagonal control weights.
        border_weight: Weight of the squared border violation (margin ``border_margin``).
        border_margin: Safety margin (m) subtracted from the half-widths.
        box_weight: Weight of the squared state-box violation.
    """

    dynamics: str = "single_track"
    horizon: int = 10
    preview: tuple[int, ...] = (5, 10, 20)
    q_weights: tuple[float, ...] = (10.0, 10.0, 0.0, 0.0, 0.1, 0.0, 0.0)
    r_weights: tuple[float, ...] = (0.1, 0.1)
    border_weight: float = 1000.0
    border_margin: float = 0.3
    box_weight: float = 1000.0

    @property
    def model(self) -> DynamicsModel:
        return get_dynamics(self.dynamics)

    def spec(self) -> dict[str, Any]:
        """This problem's own fields (what a bundle stores to rebuild it)."""
        own = {f.name for f in dataclasses.fields(TrackingCriticProblem)}
        own -= {f.name for f in dataclasses.fields(CriticProblem)}
        return {name: getattr(self, name) for name in sorted(own)}

    @property
    def reference_points(self) -> int:
        """R: reference points an observation holds for planner horizon ``self.horizon``."""
        return reference_points(self.horizon, self.preview)

    @property
    def obs_dim(self) -> int:
        nx = self.model.state_dim
        return 2 + nx + self.reference_points * (nx + 4)

    @property
    def critic_dim(self) -> int:
        # pose on the window (3), the non-pose state (nx - 3), speed and borders (3), preview
        return self.model.state_dim + 3 + 2 * len(self.preview)

    def stage_tuning(self) -> TrackingTuning:
        """The stage-cost weights the task was trained with, as a tuning pytree."""
        return make_tuning(
            self.model,
            q_weights=np.asarray(self.q_weights, np.float32),
            r_weights=np.asarray(self.r_weights, np.float32),
            border_weight=self.border_weight,
            border_margin=self.border_margin,
            box_weight=self.box_weight,
        )

    # ----- flat observations (replay buffer) ------------------------------------------------

    def flatten(self, obs: Observation, origin: Array) -> Array:
        """The flat observation of :class:`Observation` ``obs`` whose frame sits at ``origin``."""
        return jnp.concatenate(
            [origin, obs.state, obs.reference.reshape(-1), obs.border.reshape(-1)]
        )

    def unflatten(self, flat: Array) -> tuple[Array, Observation]:
        """``(origin, observation)`` of a flat observation."""
        nx, r = self.model.state_dim, self.reference_points
        ref_end = 2 + nx + r * nx
        return flat[:2], Observation(
            state=flat[2 : 2 + nx],
            reference=flat[2 + nx : ref_end].reshape(r, nx),
            border=flat[ref_end:].reshape(r, 4),
        )

    # ----- CriticProblem hooks --------------------------------------------------------------

    def split(self, obs: Array) -> tuple[Array, Any]:
        _, o = self.unflatten(obs)
        return o.state, (o.reference, o.border, self.stage_tuning())

    def dynamics_state(self, obs: Array) -> Array:
        origin, o = self.unflatten(obs)
        i, j = self.model.position_indices
        return o.state.at[i].set(origin[0]).at[j].set(origin[1])

    def stage(self, s: Array, a: Array, s_next: Array, t: Array, context: Any) -> Array:
        reference, border, tuning = context
        return stage_cost(self.model, s_next, a, reference[t], border[t], tuning)

    def critic_features(self, s: Array, t: Array | int, context: Any) -> Array:
        reference, border, _ = context
        return critic_features(self.model, self.preview, s, reference, border)


def reference_points(horizon: int, preview: tuple[int, ...]) -> int:
    """Reference points a horizon-``horizon`` planner with ``preview`` offsets reads."""
    return horizon + 1 + max(preview, default=0)


def critic_features(
    model: DynamicsModel,
    preview: tuple[int, ...],
    s: Array,
    reference: Array,
    border: Array,
) -> Array:
    """Scaled Q-network input of state ``s`` against a reference window.

    The state is located on the window itself (nearest reference segment, projected on its
    line), not on ``reference[t]``: the observation's window re-anchors at the car's
    projection every step, so features relative to a fixed slot would take values in a
    rollout (a car faster or slower than the reference drifts along the window) that no
    stored observation ever has. Features: lateral offset and heading error to that segment,
    the non-pose state, the reference speed, both border distances, and per preview offset
    the lateral offset and heading change of the reference that many points further on.
    """
    i, j = model.position_indices
    h = model.heading_index
    points = reference[:, jnp.array([i, j])]
    pos = s[jnp.array([i, j])]
    last = reference.shape[0] - 1
    k = jnp.argmin(jnp.sum((points[:-1] - pos) ** 2, axis=1))
    seg = points[k + 1] - points[k]
    tangent = seg / jnp.maximum(jnp.linalg.norm(seg), 1e-6)
    rel = pos - points[k]
    across = tangent[0] * rel[1] - tangent[1] * rel[0]
    psi = jnp.arctan2(tangent[1], tangent[0])
    dyaw = wrap_angle(s[h] - psi)
    here = border[k]
    left = here[2] - jnp.dot(here[:2], pos)
    right = jnp.dot(here[:2], pos) - here[3]
    rest = [n for n in range(model.state_dim) if n not in (i, j, h)]
    speed_ref = reference[k, model.speed_index] if model.speed_index is not None else 0.0
    pairs = []
    for p in preview:
        ahead = reference[jnp.minimum(k + p, last)]
        d = ahead[jnp.array([i, j])] - points[k]
        pairs += [tangent[0] * d[1] - tangent[1] * d[0], jnp.sin(wrap_angle(ahead[h] - psi))]
    features = jnp.concatenate(
        [
            jnp.stack([across, jnp.sin(dyaw), jnp.cos(dyaw)]),
            s[jnp.array(rest)],
            jnp.stack([speed_ref, left, right]),
            jnp.stack(pairs) if pairs else jnp.zeros(0),
        ]
    )
    scale = jnp.asarray(POLICY_FEATURE_SCALE + PREVIEW_SCALE * len(preview), jnp.float32)
    return features / scale


# --------------------------------------------------------------------------- controller


@struct.dataclass
class CriticState:
    """Controller state: learned weights, warm-start plan, PRNG key and step count."""

    weights: CriticWeights
    plan: Array
    key: Array
    steps: Array


@struct.dataclass
class SoftMPCriticInfo:
    value: Array  # soft value V(s0), cost units
    cost_min: Array
    effective_samples: Array
    predicted_states: Array  # (H + 1, nx): the plan rolled with the ensemble mean


@dataclasses.dataclass(frozen=True)
class SoftMPCritic:
    """softMPCritic on the shared controller interface (``init`` / ``step``).

    Live (``TrackingTuning``): temperature, ``noise_std`` (the sampling std of each action
    entry), the stage-cost weights, border margin and reference speed. Static (recompile):
    the planner config (``num_samples``, ``horizon``, ``iterations``) and the discount the
    Q-function was trained with.

    Attributes:
        problem: The tracking problem (ensemble, Q architecture, preview, trained weights of
            the stage cost).
        config: Planner settings.
        weights: Learned weights (``init`` puts them in the controller state).
        temperature: Default lambda.
        noise_std: Default sampling std per action entry.
        discount: gamma of the learned Q (static: Q is only valid for it).
        dt: Model step (s) and reference spacing.
        replan_period: Seconds between calls (default ``dt``); the warm start advances by
            ``replan_period / dt`` steps per call.
        reference_speed: Default reference speed (m/s; a bundle's is its training speed).
    """

    problem: TrackingCriticProblem
    config: SoftMPCriticConfig
    weights: CriticWeights | None = dataclasses.field(default=None, compare=False, hash=False)
    temperature: float = 1.0
    noise_std: tuple[float, ...] = (1.0, 2.0)
    discount: float = 0.99
    dt: float = 0.05
    replan_period: float | None = None
    reference_speed: float = 6.0
    name: str = "soft_mpcritic"

    @property
    def model(self) -> DynamicsModel:
        return self.problem.model

    @property
    def reference_horizon(self) -> int:
        return reference_points(self.config.horizon, self.problem.preview)

    def with_replan_period(self, period: float) -> SoftMPCritic:
        """This controller called every ``period`` seconds (its warm start shifts to match)."""
        return dataclasses.replace(self, replan_period=period)

    @property
    def shift_steps(self) -> float:
        period = self.replan_period
        return 1.0 if period is None else round(period / self.dt, 6)

    def default_tuning(self) -> TrackingTuning:
        """The stage-cost weights of the training, with this controller's sampling values."""
        model = self.model
        return update_tuning(
            self.problem.stage_tuning(),
            model_params=model.params_for_step(model.default_params, self.dt),
            temperature=self.temperature,
            noise_std=np.asarray(self.noise_std, np.float32),
            reference_speed=self.reference_speed,
        )

    def init(self, key: Array) -> CriticState:
        key, wkey = jax.random.split(key)
        weights = self.weights if self.weights is not None else self.problem.init_weights(wkey)
        plan = jnp.zeros((self.config.horizon + 1, self.problem.act_dim), jnp.float32)
        return CriticState(weights=weights, plan=plan, key=key, steps=jnp.zeros((), jnp.int32))

    def step(
        self,
        cstate: CriticState,
        obs: Observation,
        tuning: TrackingTuning,
        key: Array | None = None,
    ) -> tuple[Array, CriticState, SoftMPCriticInfo]:
        key, next_key = step_keys(cstate.key, key)
        soft = SoftTuning(
            temperature=tuning.temperature,
            noise_std=tuning.noise_std,
            discount=jnp.float32(self.discount),
        )
        context = (obs.reference, obs.border, tuning)
        # An episode's first step plans at its first state, as training starts episodes.
        plan = jax.lax.cond(
            cstate.steps == 0,
            lambda: start_plan(
                self.problem,
                self.config,
                cstate.weights,
                soft,
                obs.state,
                jax.random.fold_in(key, 1),
                context,
            ),
            lambda: cstate.plan,
        )
        result = improve(
            self.problem, self.config, cstate.weights, soft, obs.state, plan, key, context=context
        )
        ensemble = self.problem.ensemble

        def predict(x: Array, u: Array) -> tuple[Array, Array]:
            x_next = ensemble.predict_mean(cstate.weights.dynamics, x, u)
            return x_next, x_next

        low, high = self.problem.bounds()
        _, states = jax.lax.scan(predict, obs.state, jnp.clip(result.plan[:-1], low, high))
        info = SoftMPCriticInfo(
            value=result.value,
            cost_min=result.cost_min,
            effective_samples=result.effective_samples,
            predicted_states=jnp.concatenate([obs.state[None], states]),
        )
        fill = jnp.zeros_like(result.plan[0])
        cstate = cstate.replace(
            plan=shift_plan(result.plan, fill, self.shift_steps),
            key=next_key,
            steps=cstate.steps + 1,
        )
        return result.action, cstate, info
