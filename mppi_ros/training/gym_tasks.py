"""Gymnasium MuJoCo tasks for softMPCritic, with the analytic rewards used inside rollouts.

The planner predicts next observations with the learned ensemble and scores them with the
environment's own reward written in JAX (as the paper does); only the dynamics are learned.
``gymnasium`` is imported when an environment is made, so the rewards have no such dependency.
Registry: ``get_task(name)`` / ``task_names()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from mppi_ros.core.bundles import (
    BundleError,
    CriticBundle,
    load_soft_mpcritic_bundle,
    read_manifest,
)
from mppi_ros.core.registry import Registry

Array = jax.Array

IDP_POLE = 0.6  # m, each pole of InvertedDoublePendulum (tip site at the end of pole 2)
HOPPER_DT = 0.008  # s, frame_skip 4 x timestep 0.002


def double_pendulum_reward(s: Array, a: Array, s_next: Array) -> Array:
    """InvertedDoublePendulum-v5 reward of a transition, from the next observation.

    Observation: ``[x, sin q1, sin q2, cos q1, cos q2, xdot, q1dot, q2dot, constraint]``.
    ``alive 10 [y > 1] - (0.01 x_tip^2 + (y_tip - 2)^2) - (1e-3 q1dot^2 + 5e-3 q2dot^2)``.
    """
    del s, a
    x, s1, s2, c1, c2 = s_next[0], s_next[1], s_next[2], s_next[3], s_next[4]
    sin12 = s1 * c2 + c1 * s2
    cos12 = c1 * c2 - s1 * s2
    x_tip = x + IDP_POLE * (s1 + sin12)
    y_tip = IDP_POLE * (c1 + cos12)
    alive = 10.0 * (y_tip > 1.0)
    distance = 0.01 * x_tip**2 + (y_tip - 2.0) ** 2
    velocity = 1e-3 * s_next[6] ** 2 + 5e-3 * s_next[7] ** 2
    return alive - distance - velocity


def hopper_reward(s: Array, a: Array, s_next: Array) -> Array:
    """Hopper-v5 reward (observation with the x position: ``[x, z, angle, 3 joints, 6 vel]``).

    ``(x' - x) / dt + 1 [healthy'] - 1e-3 |a|^2``; healthy: ``z' > 0.7``, ``|angle'| < 0.2``
    and every entry after ``z`` inside (-100, 100).
    """
    forward = (s_next[0] - s[0]) / HOPPER_DT
    rest = s_next[2:]
    healthy = (s_next[1] > 0.7) & (jnp.abs(s_next[2]) < 0.2) & jnp.all(jnp.abs(rest) < 100.0)
    return forward + healthy.astype(s.dtype) - 1e-3 * jnp.sum(a**2)


@dataclasses.dataclass(frozen=True)
class GymTask:
    """A gymnasium environment and its analytic reward.

    Attributes:
        name: Registry name (the gymnasium id).
        obs_dim: Observation size.
        act_dim: Action size.
        action_low: Lower action bounds.
        action_high: Upper action bounds.
        reward: Pure ``(s, a, s_next) -> reward``.
        make_kwargs: Extra ``gymnasium.make`` keyword arguments.
    """

    name: str
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    reward: Callable[[Array, Array, Array], Array]
    make_kwargs: tuple[tuple[str, Any], ...] = ()

    def stage_cost(self, s: Array, a: Array, s_next: Array) -> Array:
        return -self.reward(s, a, s_next)

    def make_env(self):
        """A new ``gymnasium`` environment (default 1,000-step time limit)."""
        import gymnasium

        return gymnasium.make(self.name, **dict(self.make_kwargs))


_TASKS: Registry[GymTask] = Registry("task")


def register_task(task: GymTask) -> None:
    _TASKS.register(task.name, task)


def get_task(name: str) -> GymTask:
    """Looks a task up by name.

    Raises:
        ValueError: For an unknown name; the message lists the valid names.
    """
    return _TASKS.get(name)


def task_names() -> list[str]:
    return _TASKS.names()


def load_task_bundle(path: str | Path) -> tuple[CriticBundle, Any, Any, Any]:
    """:func:`~mppi_ros.core.bundles.load_soft_mpcritic_bundle` for a bundle of any task: a
    gymnasium task's stage cost (its negated reward) comes from this registry, a vehicle
    tracking bundle carries its own.

    Raises:
        BundleError: For a bad bundle or an unregistered task.
    """
    env = read_manifest(Path(path)).get("env", {})
    stage_cost = None
    if isinstance(env, dict) and env.get("kind") == "gymnasium":
        try:
            stage_cost = get_task(env["id"]).stage_cost
        except (KeyError, ValueError) as err:
            raise BundleError(f"model bundle {path}: {err}") from None
    return load_soft_mpcritic_bundle(path, stage_cost=stage_cost)


register_task(GymTask("InvertedDoublePendulum-v5", 9, 1, (-1.0,), (1.0,), double_pendulum_reward))
register_task(
    GymTask(
        "Hopper-v5",
        12,
        3,
        (-1.0,) * 3,
        (1.0,) * 3,
        hopper_reward,
        (("exclude_current_positions_from_observation", False),),
    )
)
