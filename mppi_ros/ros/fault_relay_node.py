"""``fault_relay``: passes odometry from ``odom`` to ``odom_relay``, or what the fault chosen
on ``~/mode`` (std_msgs/String) makes of it, for ``mppi-ros bench faults``.

A node of its own, so that the bench process (building and publishing large paths) never
holds up the odometry on its way: one in the bench process delayed it past the controller's
timeout. Modes: ``pass``, ``drop``, ``nan``, ``zero_quaternion``, ``position_1e30``,
``yaw_rate_1e30``, ``future_stamp`` (+10 s), ``wrong_frame``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from std_msgs.msg import String

from mppi_ros.ros import conversions
from mppi_ros.ros.common import LATCHED, run_node


def _nan(msg: Odometry) -> None:
    msg.pose.pose.position.x = math.nan


def _zero_quaternion(msg: Odometry) -> None:
    q = msg.pose.pose.orientation
    q.x = q.y = q.z = q.w = 0.0


def _far(msg: Odometry) -> None:
    msg.pose.pose.position.x = 1e30


def _spin(msg: Odometry) -> None:
    msg.twist.twist.angular.z = 1e30


def _future(msg: Odometry) -> None:
    stamp = conversions.time_to_seconds(msg.header.stamp) + 10.0
    msg.header.stamp = conversions.seconds_to_time(stamp)


def _frame(msg: Odometry) -> None:
    msg.header.frame_id = "odom"


EDITS: dict[str, Callable[[Odometry], None] | None] = {
    "pass": None,
    "nan": _nan,
    "zero_quaternion": _zero_quaternion,
    "position_1e30": _far,
    "yaw_rate_1e30": _spin,
    "future_stamp": _future,
    "wrong_frame": _frame,
}
MODES = ("drop", *EDITS)


class FaultRelay(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("fault_relay")
        self.mode = "pass"
        self._pub = self.create_publisher(Odometry, "odom_relay", qos_profile_sensor_data)
        self.create_subscription(Odometry, "odom", self._on_odom, qos_profile_sensor_data)
        self.create_subscription(String, "~/mode", self._on_mode, LATCHED)

    def _on_mode(self, msg: String) -> None:
        if msg.data in MODES:
            self.mode = msg.data
        else:
            self.get_logger().error(f"unknown mode {msg.data!r}; valid: {', '.join(MODES)}")

    def _on_odom(self, msg: Odometry) -> None:
        if self.mode == "drop":
            return
        edit = EDITS[self.mode]
        if edit is not None:
            edit(msg)
        self._pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    raise SystemExit(run_node(FaultRelay, "fault_relay", (), args))


if __name__ == "__main__":
    main()
