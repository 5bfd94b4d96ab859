"""The controller's optional outputs, each built only while someone subscribes:
``~/loop_timing`` (per cycle: tick time, latency, data age), ``~/prediction`` (the predicted
states as a path) and ``~/candidates`` (sampled paths coloured by their weight).

They are published after the command, off the measured tick-to-command path; without a
subscriber no message is built (``built`` counts what was, and the diagnostics show it).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from nav_msgs.msg import Path
from rclpy.node import Node
from std_msgs.msg import ColorRGBA, Float64MultiArray
from visualization_msgs.msg import Marker, MarkerArray

from mppi_ros.ros import conversions

CANDIDATES_NAMESPACE = "candidates"
# A marker outlives a missed cycle or two, then vanishes when the node stops publishing.
CANDIDATES_LIFETIME_S = 0.2


def weight_colours(weights: np.ndarray) -> list[ColorRGBA]:
    """Blue and faint for samples that barely count, red and opaque for the heaviest: the
    weight relative to the heaviest shown (the weights of all K samples sum to 1)."""
    w = np.asarray(weights, np.float64)
    top = float(np.max(w)) if len(w) and np.max(w) > 0 else 1.0
    share = np.clip(np.nan_to_num(w / top), 0.0, 1.0)
    return [ColorRGBA(r=float(s), g=0.2, b=float(1.0 - s), a=float(0.25 + 0.75 * s)) for s in share]


def candidates_markers(xy: np.ndarray, weights: np.ndarray, frame_id: str, stamp) -> MarkerArray:
    """One ``LINE_LIST`` marker of ``M`` sampled paths ``xy (M, T, 2)``, each segment in its
    path's weight colour (:func:`weight_colours`)."""
    marker = Marker(ns=CANDIDATES_NAMESPACE, id=0, type=Marker.LINE_LIST, action=Marker.ADD)
    marker.header.frame_id, marker.header.stamp = frame_id, stamp
    marker.pose.orientation.w = 1.0
    marker.scale.x = 0.02  # line width (m)
    seconds = int(CANDIDATES_LIFETIME_S)
    marker.lifetime = Duration(sec=seconds, nanosec=int((CANDIDATES_LIFETIME_S - seconds) * 1e9))
    for path, colour in zip(np.asarray(xy, np.float64), weight_colours(weights), strict=True):
        for a, b in itertools.pairwise(path.tolist()):
            marker.points += [Point(x=a[0], y=a[1]), Point(x=b[0], y=b[1])]
            marker.colors += [colour, colour]
    return MarkerArray(markers=[marker])


class Visualisation:
    """The three optional publishers of a controller node.

    Args:
        node: The node they belong to.
    """

    def __init__(self, node: Node) -> None:
        self.timing = node.create_publisher(Float64MultiArray, "~/loop_timing", 100)
        self.prediction = node.create_publisher(Path, "~/prediction", 1)
        self.candidates = node.create_publisher(MarkerArray, "~/candidates", 1)
        self.built = {"prediction": 0, "candidates": 0}

    @property
    def publishers(self) -> tuple[Any, ...]:
        return self.timing, self.prediction, self.candidates

    def publish(
        self, result: Any, timing: tuple[float, float, float], xy: tuple[int, int], frame: str, now
    ) -> None:
        """Publishes what has subscribers.

        Args:
            result: The step's :class:`~mppi_ros.engine.StepResult`.
            timing: ``(tick wall time, latency, data age)`` of the cycle.
            xy: The state's position indices.
            frame: The frame of the states.
            now: Returns the node clock's time as a message (called only when needed).
        """
        if self.timing.get_subscription_count():
            self.timing.publish(Float64MultiArray(data=list(timing)))
        if result.predicted is not None and self.prediction.get_subscription_count():
            states = result.predicted_states[:, list(xy)]
            self.prediction.publish(conversions.make_path(states, frame, now()))
            self.built["prediction"] += 1
        if result.candidates is not None and self.candidates.get_subscription_count():
            states = np.asarray(result.candidates.states)[..., list(xy)]
            weights = np.asarray(result.candidates.weights)
            self.candidates.publish(candidates_markers(states, weights, frame, now()))
            self.built["candidates"] += 1
