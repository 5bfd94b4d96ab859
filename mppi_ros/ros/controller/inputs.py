"""What the ``mppi_controller`` node reads: odometry, the measured steering angle and the
reference path with its borders. Subscription callbacks only store the latest message (paths
serialized, their size read from the bytes); the newest paths are deserialized and turned into
track arrays on a worker thread; the control tick asks
:meth:`InputMonitor.check` for the state to control from, or the fault that holds the car."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import threading
import time
from typing import Any

import numpy as np
from nav_msgs.msg import Odometry, Path
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState

from mppi_ros.core.dynamics import DynamicsModel
from mppi_ros.core.tracks import TrackArrays, TrackFormatError, track_from_polylines
from mppi_ros.engine import UNTIMED_SPEED
from mppi_ros.realtime.memory import release_free_heap
from mppi_ros.realtime.scheduling import CycleGate
from mppi_ros.ros import conversions
from mppi_ros.ros.common import LATCHED
from mppi_ros.ros.controller.diagnostics import Stages
from mppi_ros.ros.controller.plausibility import (
    JUMP_SETTLE_S,
    PlausibilityLimits,
    border_fault,
    jump_fault,
    motion_fault,
    quaternion_fault,
    reference_fault,
)

NO_REFERENCE = "no_reference: no reference path received yet"
PATH_LABELS = ("reference", "border_left", "border_right")


@dataclasses.dataclass
class Latest:
    """Latest messages (written by subscription callbacks, read by the control tick)."""

    odom: Odometry | None = None
    odom_received: float = 0.0  # monotonic seconds
    odom_stamp: float = -math.inf
    out_of_order: bool = False
    # The paths as serialized messages, read on the build worker for the newest only
    # (conversions.path_from_cdr: ~1 ms for 1,300 poses; deserialize_message took seconds).
    reference: bytes | None = None
    border_left: bytes | None = None
    border_right: bytes | None = None
    steering: float | None = None  # measured, from joint_states
    steering_received: float = -math.inf  # monotonic seconds
    ahead_s: float = 0.0  # how far ahead of the clock the last dropped odometry was stamped
    ahead_received: float = -math.inf  # monotonic seconds


@dataclasses.dataclass(frozen=True)
class Continuity:
    """The last checked odometry's position, stamp and speed (for the jump check)."""

    x: float
    y: float
    stamp: float
    speed: float


@dataclasses.dataclass(frozen=True)
class Reference:
    """The last valid reference: its points and headings (for the checks and the safe stop)
    and the controller's track arrays (``None`` before the first), replaced as one."""

    xy: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))
    psi: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    arrays: TrackArrays | None = None


NO_TRACK = Reference()


@dataclasses.dataclass(frozen=True)
class Checked:
    """The outcome of one input check: a fault and/or the state (a fault with a state: the
    odometry passed its checks, the reference did not); once the check got as far as the
    odometry, the steering angle used (``None`` before) and whether it was measured; with a
    state, its odometry stamp (ROS seconds)."""

    fault: str | None
    state: np.ndarray | None = None
    steering: float | None = None
    steering_measured: bool = False
    measured_at: float = 0.0
    reference: Reference = NO_TRACK  # the one checked against: drive and stop on it


def reference_from_paths(paths: dict[str, tuple[str, np.ndarray, np.ndarray]], points: int):
    """The reference track the node drives on, from its decoded paths (``{label: (frame, xy,
    pose times)}`` of ``reference``, ``border_left`` and ``border_right``, as
    :func:`~mppi_ros.ros.conversions.path_from_cdr` gives them), resampled to ``points``.

    Raises:
        TrackFormatError: The paths do not make a track.
    """
    _, xy, times = paths["reference"]
    speed = conversions.speed_from_times(xy, times) if len(xy) else None
    return track_from_polylines(
        "reference",
        xy,
        paths["border_left"][1],
        paths["border_right"][1],
        speed=speed,
        points=points,
        max_speed=UNTIMED_SPEED,
    )


class InputMonitor:
    """Subscriptions, reference-to-track conversion and the per-cycle input check.

    Args:
        node: The node the subscriptions belong to.
        live: The loop parameters read every cycle (``state_timeout``, ``frame_id``).
        cycle_gate: Background work yields to control cycles through it.
        stages: Where reference builds are marked while they run (for the diagnostics).
    """

    def __init__(
        self, node: LifecycleNode, live: dict[str, Any], cycle_gate: CycleGate, stages: Stages
    ) -> None:
        self._node, self._live, self._gate, self._stages = node, live, cycle_gate, stages
        self._frame = node.get_parameter("frame_id").value  # read-only
        self._points = int(node.get_parameter("reference_points").value)
        self._joint = node.get_parameter("steering_joint").value  # read-only
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.latest = Latest()
        self.reference = NO_TRACK
        self.reference_fault: str | None = NO_REFERENCE
        self._continuity: Continuity | None = None
        self._jump: tuple[str, float] | None = None  # the fault, held until (monotonic s)
        self._misplaced = False  # the last tick's placement check failed (see reference_fault)
        self._build_lock = threading.Lock()
        self._refused: dict[str, str] = {}  # path label -> why its newest message was refused
        self._build_wanted = self._build_scheduled = False

    def subscribe(self, pool: concurrent.futures.ThreadPoolExecutor) -> list[Any]:
        """Creates the subscriptions; references are converted on ``pool``."""
        self._pool = pool
        subs = [
            (Odometry, "odom", self._on_odom, qos_profile_sensor_data),
            (JointState, "joint_states", self._on_joint_states, qos_profile_sensor_data),
        ]
        if not self._joint:
            subs.pop()
        made = [self._node.create_subscription(t, topic, cb, qos) for t, topic, cb, qos in subs]
        for label in PATH_LABELS:  # raw: the executor thread never deserializes a path
            store = lambda raw, label=label: self._store_path(label, raw)
            made.append(self._node.create_subscription(Path, label, store, LATCHED, raw=True))
        return made

    def reset(self) -> None:
        """Forgets every message (cleanup): the next configure starts without data."""
        self._pool = None
        self.latest, self.reference, self.reference_fault = Latest(), NO_TRACK, NO_REFERENCE
        self._continuity = self._jump = None
        self._refused, self._misplaced = {}, False

    # ------------------------------------------------------------------ callbacks

    def _on_odom(self, msg: Odometry) -> None:
        stamp = conversions.time_to_seconds(msg.header.stamp)
        latest = self.latest
        ahead = stamp - self._node.get_clock().now().nanoseconds * 1e-9
        if ahead > float(self._live["max_stamp_ahead"]):
            # Kept, it would make every later (correct) message look out of order.
            latest.ahead_s, latest.ahead_received = ahead, time.monotonic()
            return
        if stamp < latest.odom_stamp:
            latest.out_of_order = True  # keep the newer message; the tick reports the fault
            return
        latest.odom, latest.odom_stamp = msg, stamp
        latest.odom_received = time.monotonic()
        latest.out_of_order = False

    def _on_joint_states(self, msg: JointState) -> None:
        position = conversions.joint_position(msg, self._joint)
        if position is not None:  # other joints' messages, or a NaN reading: keep the last
            self.latest.steering = position
            self.latest.steering_received = time.monotonic()

    def _store_path(self, label: str, raw: bytes) -> None:
        limit = int(self._live["max_path_points"])
        count = conversions.path_pose_count(raw)
        if count is None or count > limit:  # refused before any conversion work
            self._refused[label] = (
                f"path_too_large: {label} has {count} points (max_path_points {limit})"
                if count is not None
                else f"bad_reference: {label} is not a readable nav_msgs/Path"
            )
            self.reference_fault = self._refused[label]
            return
        self._refused.pop(label, None)  # the fault holds until this path comes back valid
        setattr(self.latest, label, raw)
        latest = self.latest
        if None in (latest.reference, latest.border_left, latest.border_right):
            return
        with self._build_lock:  # coalesced: one build at a time, from the latest paths
            self._build_wanted = True
            if self._build_scheduled or self._pool is None:
                return
            self._build_scheduled = True
        self._pool.submit(self._build_latest)

    def _build_latest(self) -> None:
        """Builds from the newest paths until none arrived meanwhile (latest wins, no queue)."""
        while True:
            with self._build_lock:
                if not self._build_wanted:
                    self._build_scheduled = False
                    return
                self._build_wanted = False
                latest = self.latest
                paths = (latest.reference, latest.border_left, latest.border_right)
            try:
                with self._stages.busy("reference build"):
                    self._build_track(*paths)
            except Exception as err:  # any failure is a named fault; the worker lives on
                self.reference_fault = f"bad_reference: {type(err).__name__}: {err}"

    def _build_track(self, *raw: bytes) -> None:
        paths = {}
        for label, data in zip(PATH_LABELS, raw, strict=True):
            try:
                paths[label] = conversions.path_from_cdr(data)
            except ValueError as err:
                self.reference_fault = f"bad_reference: {label} is not a nav_msgs/Path: {err}"
                return
            frame = paths[label][0]
            if frame != self._frame:
                self.reference_fault = (
                    f"frame_mismatch: {label} is in frame {frame!r}, expected {self._frame!r}"
                )
                return
        _, xy, times = paths["reference"]
        timed = conversions.speed_from_times(xy, times) is not None
        try:
            track = reference_from_paths(paths, self._points)
        except TrackFormatError as err:
            self.reference_fault = f"bad_reference: {err}"
            return
        arrays = track.arrays()
        inconsistent = border_fault(np.asarray(arrays.border, np.float64))
        if inconsistent is not None:
            # The more specific cause first: a new reference far from the car meets the old
            # borders until its own arrive (the paths come one by one). A consistent one is
            # installed even when far: the tick's check brakes until the car is near it.
            far = self._far_from_car(track)
            self.reference_fault = far or inconsistent
            return
        self.reference = Reference(track.xy, track.psi, arrays)
        self.reference_fault = next(iter(self._refused.values()), None)
        self._node.get_logger().info(
            f"reference: {len(xy)} points, {track.length:.1f} m, {'timed' if timed else 'untimed'}"
        )
        self._gate.wait_cycle_end()
        release_free_heap()  # what building the track freed, back to the OS

    def _far_from_car(self, track) -> str | None:
        """``reference_far`` when the latest odometry is far from ``track``'s raceline."""
        odom = self.latest.odom
        if odom is None:
            return None
        fault = reference_fault(
            np.array([odom.pose.pose.position.x, odom.pose.pose.position.y]),
            conversions.quaternion_to_yaw(odom.pose.pose.orientation),
            track.xy,
            track.psi,
            PlausibilityLimits.from_values(self._live),
        )
        return fault if fault is not None and fault.startswith("reference_far") else None

    # ------------------------------------------------------------------ the tick's check

    def check(self, now: float, model: DynamicsModel, steering: float) -> Checked:
        """The state to control from, or the cause that holds the car. ``steering`` is the
        angle the commands imply; a recent measurement replaces it. A fault of the reference
        still carries the state when the odometry passed its own checks (the safe stop steers
        from it). The reference is read once: a build may replace it meanwhile."""
        reference = self.reference
        checked = self._check_odometry(now, model, steering, reference)
        checked = dataclasses.replace(checked, reference=reference)
        if self.reference_fault is not None:
            return dataclasses.replace(checked, fault=self.reference_fault)
        return checked

    def _check_odometry(
        self, now: float, model: DynamicsModel, steering: float, reference: Reference
    ) -> Checked:
        latest = self.latest
        odom = latest.odom  # one message throughout: the subscription may replace it
        if odom is None:
            return Checked("no_state: no odometry received yet")
        if latest.ahead_received > latest.odom_received:
            limit = float(self._live["max_stamp_ahead"])
            return Checked(
                f"future_stamp: odometry stamped {latest.ahead_s:.3g} s ahead of this node's "
                f"clock (limit {limit:g} s), dropped"
            )
        if latest.out_of_order:
            return Checked("out_of_order: odometry stamp went backwards")
        age = now - latest.odom_received
        timeout = float(self._live["state_timeout"])
        if age > timeout:
            return Checked(f"stale_state: odometry is {age * 1e3:.0f} ms old (timeout {timeout}s)")
        frame = self._live["frame_id"]
        if odom.header.frame_id != frame:
            return Checked(
                f"frame_mismatch: odometry in frame {odom.header.frame_id!r}, expected {frame!r}"
            )
        limits = PlausibilityLimits.from_values(self._live)
        q = odom.pose.pose.orientation
        implausible = quaternion_fault(q.x, q.y, q.z, q.w, limits.quaternion_tolerance)
        if implausible is None:
            implausible = self._plausible_motion(odom, now, limits)
        if implausible is not None:
            return Checked(implausible)
        measured = now - latest.steering_received <= timeout
        if measured:
            # A measurement replaces the integral of the commands, which drifts whenever the
            # actuator drops or repeats a command, or the car is reset.
            steering = latest.steering
        try:
            state = conversions.odometry_to_state(odom, model, steering=steering)
        except ValueError as err:
            return Checked(f"bad_state: {err}", steering=steering, steering_measured=measured)
        if not np.all(np.isfinite(state)):
            return Checked(
                "nonfinite_state: odometry contains NaN or inf",
                steering=steering,
                steering_measured=measured,
            )
        p = odom.pose.pose.position
        placed = reference_fault(
            np.array([p.x, p.y]),
            conversions.quaternion_to_yaw(q),
            reference.xy,
            reference.psi,
            limits,
            holding=self._misplaced,
        )
        self._misplaced = placed is not None
        stamp = conversions.time_to_seconds(odom.header.stamp)
        if placed is not None:  # the car's position or the reference is wrong: trust neither
            return Checked(placed, None, steering, measured)
        return Checked(None, state, steering, measured, stamp)

    def _plausible_motion(
        self, odom: Odometry, now: float, limits: PlausibilityLimits
    ) -> str | None:
        """Speed, yaw rate and continuity of the position."""
        p, twist = odom.pose.pose.position, odom.twist.twist
        speed = math.hypot(twist.linear.x, twist.linear.y)
        fault = motion_fault(speed, twist.angular.z, limits)
        if fault is not None:
            return fault
        stamp = conversions.time_to_seconds(odom.header.stamp)
        last = self._continuity
        if last is None or stamp != last.stamp:  # a new message
            if last is not None:
                moved = math.hypot(p.x - last.x, p.y - last.y)
                jump = jump_fault(
                    moved, stamp - last.stamp, speed, last.speed, limits.plausible_jump
                )
                if jump is not None:
                    self._jump = (jump, now + JUMP_SETTLE_S)
            self._continuity = Continuity(p.x, p.y, stamp, speed)
        if self._jump is not None:
            if now < self._jump[1]:
                return self._jump[0]
            self._jump = None
        return None
