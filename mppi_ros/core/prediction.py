"""Latency compensation: the measured state predicted forward from its stamp to the time the
next command is computed, with the controller's own model and the commands sent meanwhile.

A state measured at ``t_s`` and used at ``t_n`` is ``t_n - t_s`` old; during that time the car
kept driving on the commands already sent. A learned controller tolerates the delay it was
trained with (the plant's actuation delay) and oscillates beyond it (``single_track`` Step-MPPI
on ``default``: 0.006 m mean error up to 50 ms of steering delay, 0.29 m at 60 ms). Predicting
the measured part of the delay away keeps the loop inside that margin when the measurement
path is slow (a loaded machine, a busy network).

Pure functions plus a small host-side log of the commands; nothing here imports ROS.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.core.dynamics import DynamicsModel
from mppi_ros.core.dynamics.base import rk4

Array = jax.Array

PREDICTION_SLOTS = 12  # integration steps of one prediction (fixed: compiled shapes)
PREDICTION_STEP = 0.01  # s: the longest integration step before steps get longer


def predict_state(
    model: DynamicsModel, x: Array, controls: Array, durations: Array, params: Any
) -> Array:
    """``x`` integrated over consecutive intervals (RK4, one step each), each holding its control.

    Args:
        model: The controller's prediction model.
        x: ``(nx,)`` measured state.
        controls: ``(N, nu)`` control held over each interval.
        durations: ``(N,)`` interval lengths (s); 0 leaves the state unchanged (unused slots).
        params: The model's parameters as the controller plans with them
            (``tuning.model_params``).
    """

    def step(x: Array, slot: tuple[Array, Array]) -> tuple[Array, None]:
        u, h = slot
        return rk4(model.derivative, x, u, params, h), None

    x, _ = jax.lax.scan(step, jnp.asarray(x, jnp.float32), (controls, durations))
    return x


class CommandLog:
    """The controls sent recently, with the time each was sent (any one clock, in seconds).

    Args:
        control_dim: Entries of one control.
        capacity: Commands kept (older ones are dropped).
    """

    def __init__(self, control_dim: int, capacity: int = 64) -> None:
        self.control_dim = control_dim
        self._sent: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=capacity)

    def record(self, time: float, control: np.ndarray) -> None:
        """Adds the control sent at ``time`` (times must not decrease)."""
        self._sent.append((float(time), np.asarray(control, np.float32)))

    def clear(self) -> None:
        self._sent.clear()

    def active_at(self, time: float, delays: np.ndarray | None = None) -> np.ndarray:
        """The control in effect at ``time``: per channel, the last one sent before ``time``
        minus that channel's actuation delay (``delays``, s; zeros before any)."""
        delays = np.zeros(self.control_dim) if delays is None else delays
        control = np.zeros(self.control_dim, np.float32)
        for channel, delay in enumerate(delays):
            for sent, values in reversed(self._sent):
                if sent <= time - delay:
                    control[channel] = values[channel]
                    break
        return control

    def schedule(
        self,
        start: float,
        end: float,
        slots: int = PREDICTION_SLOTS,
        delays: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Controls and durations for :func:`predict_state` from ``start`` to ``end``.

        The span is cut into equal steps of at most :data:`PREDICTION_STEP` (longer when
        ``slots`` would not suffice); each step holds the control in effect at its middle,
        each channel ``delays`` (s, its actuation delay: a servo, an ESC) after it was sent.
        """
        controls = np.zeros((slots, self.control_dim), np.float32)
        durations = np.zeros(slots, np.float32)
        span = end - start
        if not span > 0:
            return controls, durations
        n = min(slots, math.ceil(span / PREDICTION_STEP - 1e-9))
        h = span / n
        for i in range(n):
            controls[i] = self.active_at(start + (i + 0.5) * h, delays)
            durations[i] = h
        return controls, durations
