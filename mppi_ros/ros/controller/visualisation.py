"""The controller's optional outputs, each built only while someone subscribes:
``~/loop_timing`` (per cycle: tick time, latency, data age), ``~/prediction`` (the predicted
states as a path), ``~/candidates`` (sampled paths coloured by their weight) and
``~/step_input`` (per step: tick time, the state the step was given and the action it
returned, for ``mppi-ros replay``).

They are published after the command, off the measured tick-to-command path; without a
subscriber no message is built (``built`` counts what was, and the diagnostics show it).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from nav_msgs.msg import Path
from rclpy.node import Node
from std_msgs.msg import ColorRGBA, Float64MultiArray, MultiArrayDimension
from visualization_msgs.msg import Marker, MarkerArray

from mppi_ros.ros import conversions

CANDIDATES_NAMESPACE = "candidates"
# Markers are built at most this often (they cost ~1 ms of Python per message for 32 paths of
# 31 points); each outlives a missed message or two, then vanishes when the node stops.
CANDIDATES_MAX_RATE_HZ = 20.0
CANDIDATES_LIFETIME_S = 0.2


def weight_colours(weights: np.ndarray) -> list[ColorRGBA]:
    """Blue and faint for samples that barely count, red and opaque for the heaviest: the
    weight relative to the heaviest shown (the weights of all K samples sum to 1)."""
    w = np.asarray(weights, np.float64)
    top = float(np.max(w)) if len(w) and np.max(w) > 0 else 1.0
    share = np.clip(np.nan_to_num(w / top), 0.0, 1.0)
    return [ColorRGBA(r=float(s), g=0.2, b=float(1.0 - s), a=float(0.25 + 0.75 * s)) for s in share]


def candidates_markers(xy: np.ndarray, weights: np.ndarray, frame_id: str, stamp) -> MarkerArray:
    """One ``LINE_STRIP`` marker per sampled path ``xy (M, T, 2)`` (ids 0..M-1), in its
    path's weight colour (:func:`weight_colours`)."""
    seconds = int(CANDIDATES_LIFETIME_S)
    lifetime = Duration(sec=seconds, nanosec=int((CANDIDATES_LIFETIME_S - seconds) * 1e9))
    markers = []
    for k, (path, colour) in enumerate(
        zip(np.asarray(xy, np.float64).tolist(), weight_colours(weights), strict=True)
    ):
        marker = Marker(ns=CANDIDATES_NAMESPACE, id=k, type=Marker.LINE_STRIP, action=Marker.ADD)
        marker.header.frame_id, marker.header.stamp = frame_id, stamp
        marker.pose.orientation.w = 1.0
        marker.scale.x = 0.02  # line width (m)
        marker.lifetime, marker.color = lifetime, colour
        marker.points = [Point(x=x, y=y) for x, y in path]
        markers.append(marker)
    return MarkerArray(markers=markers)


def step_input_message(wall: float, state: np.ndarray, action: np.ndarray) -> Float64MultiArray:
    """``[tick wall time, state..., action...]``, the layout naming the three parts."""
    msg = Float64MultiArray(data=[float(wall), *map(float, state), *map(float, action)])
    msg.layout.dim = [
        MultiArrayDimension(label=label, size=size, stride=size)
        for label, size in (("tick_wall", 1), ("state", len(state)), ("action", len(action)))
    ]
    return msg


def split_step_input(msg: Float64MultiArray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(tick wall time, state, action)`` of a :func:`step_input_message`."""
    sizes = {d.label: d.size for d in msg.layout.dim}
    data, nx = np.asarray(msg.data, np.float64), sizes["state"]
    return float(data[0]), data[1 : 1 + nx], data[1 + nx : 1 + nx + sizes["action"]]


class Visualisation:
    """The three optional publishers of a controller node.

    Args:
        node: The node they belong to.
    """

    def __init__(self, node: Node) -> None:
        self.timing = node.create_publisher(Float64MultiArray, "~/loop_timing", 100)
        self.prediction = node.create_publisher(Path, "~/prediction", 1)
        self.candidates = node.create_publisher(MarkerArray, "~/candidates", 1)
        # Reliable and deep: a replay needs every step, in order.
        self.step_input = node.create_publisher(Float64MultiArray, "~/step_input", 1000)
        self.built = {"prediction": 0, "candidates": 0}
        self._candidates_due = 0.0  # monotonic time the next candidates message may be built

    @property
    def publishers(self) -> tuple[Any, ...]:
        return self.timing, self.prediction, self.candidates, self.step_input

    def publish(
        self,
        result: Any,
        state: np.ndarray,
        timing: tuple[float, float, float],
        xy: tuple[int, int],
        frame: str,
        now,
    ) -> None:
        """Publishes what has subscribers.

        Args:
            result: The step's :class:`~mppi_ros.engine.StepResult`.
            state: The state the step was given.
            timing: ``(tick wall time, latency, data age)`` of the cycle.
            xy: The state's position indices.
            frame: The frame of the states.
            now: Returns the node clock's time as a message (called only when needed).
        """
        if self.timing.get_subscription_count():
            self.timing.publish(Float64MultiArray(data=list(timing)))
        if self.step_input.get_subscription_count():
            self.step_input.publish(step_input_message(timing[0], state, result.action))
        if result.predicted is not None and self.prediction.get_subscription_count():
            states = result.predicted_states[:, list(xy)]
            self.prediction.publish(conversions.make_path(states, frame, now()))
            self.built["prediction"] += 1
        if (
            result.candidates is not None
            and time.monotonic() >= self._candidates_due
            and self.candidates.get_subscription_count()
        ):
            self._candidates_due = time.monotonic() + 1.0 / CANDIDATES_MAX_RATE_HZ
            states = np.asarray(result.candidates.states)[..., list(xy)]
            weights = np.asarray(result.candidates.weights)
            self.candidates.publish(candidates_markers(states, weights, frame, now()))
            self.built["candidates"] += 1
