"""Topic names of F1TENTH vehicles, shared by ``launch/f1tenth.launch.py`` and its tests.

Two targets publish the same interface under different odometry topics:

- ``sim``: the F1TENTH gym ROS bridge (``f1tenth_gym_ros``) publishes the car's odometry in
  the ``map`` frame on ``/ego_racecar/odom`` and drives from
  ``ackermann_msgs/AckermannDriveStamped`` on ``/drive``.
- ``car``: a real F1TENTH car (``f1tenth_system``). ``ackermann_mux`` takes navigation
  commands on ``/drive``; the map-frame pose comes from the particle filter's
  ``/pf/pose/odom``. The VESC's ``/odom`` is wheel odometry in a drifting ``odom`` frame and
  cannot be compared with a raceline drawn in the map.

The controller's own names are ``odom`` and ``cmd``; the launch file remaps them.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class F1tenthTopics:
    """Where a target's odometry comes from and where its drive commands go."""

    odom: str
    drive: str


TARGETS = {
    "sim": F1tenthTopics(odom="/ego_racecar/odom", drive="/drive"),
    "car": F1tenthTopics(odom="/pf/pose/odom", drive="/drive"),
}


def f1tenth_topics(target: str, odom: str = "", drive: str = "") -> F1tenthTopics:
    """The topics of ``target`` (``sim`` or ``car``); a non-empty ``odom`` or ``drive`` wins.

    Raises:
        ValueError: For an unknown target (the message lists the valid ones).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown F1TENTH target {target!r}; valid: {', '.join(TARGETS)}")
    return dataclasses.replace(
        TARGETS[target], **{k: v for k, v in (("odom", odom), ("drive", drive)) if v}
    )


def controller_remappings(topics: F1tenthTopics) -> list[tuple[str, str]]:
    """``(from, to)`` remappings of the controller node onto the vehicle's topics."""
    return [("odom", topics.odom), ("cmd", topics.drive)]


def ros_args(remappings: list[tuple[str, str]]) -> tuple[str, ...]:
    """The same remappings as ``--ros-args`` arguments (``-r from:=to`` each)."""
    return tuple(arg for a, b in remappings for arg in ("-r", f"{a}:={b}"))
