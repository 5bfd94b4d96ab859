"""The controller node's plausibility checks as plain functions: each rejects what it names
with its value and limit, and passes what a real car and a real track give (every built-in
track and generated circuit, as the node rebuilds it from the published polylines)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mppi_ros.core.tracks import load_track, track_from_polylines
from mppi_ros.ros.controller.plausibility import (
    PLAUSIBILITY_PARAMETERS,
    PlausibilityLimits,
    border_fault,
    jump_fault,
    motion_fault,
    quaternion_fault,
    reference_fault,
)

LIMITS = PlausibilityLimits()


def test_declared_defaults_are_the_limits_defaults():
    values = {name: default for name, (default, _, _) in PLAUSIBILITY_PARAMETERS.items()}
    assert PlausibilityLimits.from_values(values) == LIMITS
    for default, _, (lo, hi) in PLAUSIBILITY_PARAMETERS.values():
        assert lo <= default <= hi


def test_quaternion_norm():
    yaw = 1.0
    assert quaternion_fault(0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2), 0.1) is None
    assert "norm 0" in quaternion_fault(0.0, 0.0, 0.0, 0.0, 0.1)
    assert "norm 0.5" in quaternion_fault(0.0, 0.0, 0.5, 0.0, 0.1)
    assert quaternion_fault(0.0, 0.0, 0.0, math.nan, 0.1).startswith("bad_quaternion")
    assert quaternion_fault(0.0, 0.0, 0.0, 1.05, 0.1) is None  # within the tolerance


def test_speed_and_yaw_rate_limits_in_either_direction():
    assert motion_fault(24.9, -29.9, LIMITS) is None
    assert motion_fault(-30.0, 0.0, LIMITS) == "implausible_speed: -30.0 m/s (limit 25)"
    assert motion_fault(5.0, 35.0, LIMITS) == "implausible_yaw_rate: 35.0 rad/s (limit 30)"


def test_a_jump_is_movement_that_speed_does_not_explain():
    # 20 m/s for 0.1 s explains 2 m, plus the 1 m allowance.
    assert jump_fault(2.9, 0.1, 20.0, 19.0, 1.0) is None
    assert jump_fault(3.1, 0.1, 20.0, 19.0, 1.0).startswith("position_jump: odometry moved 3.10")
    assert jump_fault(2.9, 0.1, 0.0, 20.0, 1.0) is None  # braked hard: the faster speed counts
    assert jump_fault(2.9, 0.1, 0.0, 0.0, 1.0) is not None
    assert jump_fault(1.5, -0.01, 5.0, 5.0, 1.0) is not None  # no time passed: 1 m at most


def test_reference_far_or_against_the_heading():
    track = load_track("default")
    i = 100
    start, psi = track.xy[i], float(track.psi[i])
    normal = np.array([-math.sin(psi), math.cos(psi)])
    assert reference_fault(start + 4.0 * normal, psi + 1.9, track.xy, track.psi, LIMITS) is None
    far = reference_fault(start + 6.0 * normal, psi, track.xy, track.psi, LIMITS)
    assert far == "reference_far: the car is 6.0 m from the reference (limit 5)"
    back = reference_fault(start, psi + math.pi, track.xy[::-1], track.psi[::-1], LIMITS)
    assert back is not None and back.startswith("reference_reversed: the reference heads 180")
    wrapped = reference_fault(start, psi + 2 * math.pi - 0.1, track.xy, track.psi, LIMITS)
    assert wrapped is None  # headings compare modulo a turn
    # Hysteresis: once failed, a check clears only inside 80 % of its limit.
    args = (track.xy, track.psi, LIMITS)
    near_limit = [(start + 4.5 * normal, psi), (start, psi + 0.95 * LIMITS.max_heading_error)]
    for position, yaw in near_limit:
        assert reference_fault(position, yaw, *args) is None
        assert reference_fault(position, yaw, *args, holding=True) is not None
    assert reference_fault(start + 3.9 * normal, psi + 1.5, *args, holding=True) is None


def node_border(track, shift=(0.0, 0.0)) -> np.ndarray:
    """The border rows the node computes from the published raceline and edges."""
    left, right = (b + np.asarray(shift) for b in track.border_polylines())
    rebuilt = track_from_polylines("reference", track.xy, left, right, points=2048)
    return np.asarray(rebuilt.arrays().border, np.float64)


@pytest.mark.parametrize("name", ["default", "sprint", "endurance", "circuit:9013"])
def test_every_published_track_passes_its_own_border_check(name):
    """Built-in tracks and generated circuits (racelines near the wall in hairpins) as the
    track publisher sends them; moved edges are caught."""
    track = load_track(name)
    assert border_fault(node_border(track)) is None
    fault = border_fault(node_border(track, shift=(3.0, 0.0)))
    assert fault is not None and fault.startswith("inconsistent_borders: ")


@pytest.mark.parametrize("frame", ["", "m", "map", "mapp", "a_longer_frame_name"])
@pytest.mark.parametrize("count", [0, 1, 7, 1300])
def test_the_pose_count_is_read_from_a_serialized_path(frame, count):
    """Oversized paths are refused from their bytes, before any deserialization."""
    from rclpy.serialization import serialize_message

    from mppi_ros.ros import conversions

    xy = np.random.default_rng(0).random((count, 2))
    raw = serialize_message(conversions.make_path(xy, frame, conversions.seconds_to_time(1.0)))
    assert conversions.path_pose_count(raw) == count
    assert conversions.path_pose_count(raw[:10]) is None


@pytest.mark.parametrize("count", [0, 1, 7, 1300])
def test_a_serialized_path_is_read_like_its_deserialized_message(count):
    """path_from_cdr against rclpy's deserialization: per-pose frame ids of every padding,
    random stamps and positions; truncated bytes are refused."""
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Path
    from rclpy.serialization import deserialize_message, serialize_message

    from mppi_ros.ros import conversions

    rng = np.random.default_rng(count)
    for frame in ("", "m", "map", "odom_frame"):
        msg = Path()
        msg.header.frame_id = frame
        for _ in range(count):
            pose = PoseStamped()
            pose.header.frame_id = "x" * int(rng.integers(0, 9))
            pose.header.stamp.sec = int(rng.integers(0, 2**31 - 1))
            pose.header.stamp.nanosec = int(rng.integers(0, 10**9))
            pose.pose.position.x, pose.pose.position.y = rng.normal(size=2) * 100.0
            msg.poses.append(pose)
        raw = serialize_message(msg)
        read_frame, xy, times = conversions.path_from_cdr(raw)
        expected_xy, expected_times = conversions.path_to_arrays(deserialize_message(raw, Path))
        assert read_frame == frame
        np.testing.assert_array_equal(xy, expected_xy.reshape(-1, 2))
        np.testing.assert_array_equal(times, expected_times)
        for cut in (3, len(raw) // 2, len(raw) - 1):
            if count or cut < 20:
                with pytest.raises(ValueError):
                    conversions.path_from_cdr(raw[:cut])
