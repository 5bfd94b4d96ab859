"""Conversions between ROS messages and the NumPy arrays of the core (no math lives here).

State layout follows the dynamics model's ``state_names``: ``px, py`` from the pose, ``yaw``
from the orientation, ``v`` and ``beta`` from the body-frame twist, ``yaw_rate`` from the
angular twist, ``vx, vy`` (point mass) from the linear twist. The steering angle ``delta`` is
not part of nav_msgs/Odometry: the controller node takes it from the steering joint of
sensor_msgs/JointState when that is published, and integrates its own commands otherwise.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, Quaternion, TwistStamped
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from mppi_ros.core.dynamics import DynamicsModel

COMMAND_TYPES = ("ackermann", "twist_stamped", "array")


def ackermann_message_class():
    """``AckermannDriveStamped`` or ``None`` when ackermann_msgs is not installed."""
    try:
        from ackermann_msgs.msg import AckermannDriveStamped
    except ImportError:
        return None
    return AckermannDriveStamped


def command_message_class(command_type: str):
    """The message class of a ``command_type``.

    Raises:
        ValueError: For an unknown type, or ``ackermann`` without ackermann_msgs installed.
    """
    if command_type == "twist_stamped":
        return TwistStamped
    if command_type == "array":
        return Float64MultiArray
    if command_type == "ackermann":
        cls = ackermann_message_class()
        if cls is None:
            raise ValueError(
                "command_type 'ackermann' needs the ackermann_msgs package, which is not "
                "installed (install ros-<distro>-ackermann-msgs, or use command_type "
                "'twist_stamped' or 'array')"
            )
        return cls
    raise ValueError(f"unknown command_type {command_type!r}; valid: {', '.join(COMMAND_TYPES)}")


# --------------------------------------------------------------------------- time and angles


def time_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_time(seconds: float) -> Time:
    """``builtin_interfaces/Time`` of ``seconds``, rounded to the nanosecond.

    Rounding the whole value (not the fraction alone) carries into ``sec``: 0.9999999999 s is
    1 s, never 0 s (a stamp a second early would make a timed path's speed wrong).
    """
    sec, nanosec = divmod(round(seconds * 1e9), 1_000_000_000)
    return Time(sec=int(sec), nanosec=int(nanosec))


def yaw_to_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def quaternion_to_yaw(q: Quaternion) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


# --------------------------------------------------------------------------- odometry


def joint_position(msg: JointState, joint: str) -> float | None:
    """Position of ``joint`` in ``msg``, or ``None`` when it is absent or not finite."""
    try:
        value = float(msg.position[list(msg.name).index(joint)])
    except (ValueError, IndexError):
        return None
    return value if math.isfinite(value) else None


def make_joint_state(joint: str, position: float, stamp: Time) -> JointState:
    msg = JointState(name=[joint], position=[float(position)])
    msg.header.stamp = stamp
    return msg


def odometry_to_state(msg: Odometry, model: DynamicsModel, steering: float = 0.0) -> np.ndarray:
    """The model's state vector from an Odometry message (``delta`` = ``steering``)."""
    names = model.state_names
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
    speed = math.copysign(math.hypot(lin.x, lin.y), lin.x if lin.x != 0.0 else 1.0)
    sign = 1.0 if lin.x >= 0.0 else -1.0
    values = {
        "px": p.x,
        "py": p.y,
        "yaw": quaternion_to_yaw(q),
        "v": speed,
        "beta": math.atan2(sign * lin.y, sign * lin.x) if speed != 0.0 else 0.0,
        "yaw_rate": ang.z,
        "delta": steering,
        "vx": lin.x,
        "vy": lin.y,
    }
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"Odometry cannot provide state entries {missing} of {model.name}")
    return np.array([values[n] for n in names], np.float64)


def state_to_odometry(
    x: np.ndarray, model: DynamicsModel, stamp: Time, frame_id: str, child_frame_id: str
) -> Odometry:
    """An Odometry message (pose in ``frame_id``, twist in the body frame) for state ``x``."""
    get = dict(zip(model.state_names, (float(v) for v in x), strict=True)).get
    msg = Odometry()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    msg.pose.pose.position.x = get("px", 0.0)
    msg.pose.pose.position.y = get("py", 0.0)
    msg.pose.pose.orientation = yaw_to_quaternion(get("yaw", 0.0))
    if "v" in model.state_names:
        beta = get("beta", 0.0)
        msg.twist.twist.linear.x = get("v") * math.cos(beta)
        msg.twist.twist.linear.y = get("v") * math.sin(beta)
    else:
        msg.twist.twist.linear.x = get("vx", 0.0)
        msg.twist.twist.linear.y = get("vy", 0.0)
    msg.twist.twist.angular.z = get("yaw_rate", 0.0)
    return msg


# --------------------------------------------------------------------------- paths


def make_path(
    xy: np.ndarray,
    frame_id: str,
    stamp: Time,
    yaw: np.ndarray | None = None,
    times: Sequence[float] | None = None,
) -> Path:
    """A nav_msgs/Path through ``xy``; pose stamps are ``times`` (s) when given, else ``stamp``."""
    msg = Path()
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    poses = []
    for i, (px, py) in enumerate(np.asarray(xy, float)):
        pose = PoseStamped()
        pose.header.frame_id = frame_id
        pose.header.stamp = seconds_to_time(times[i]) if times is not None else stamp
        pose.pose.position.x = float(px)
        pose.pose.position.y = float(py)
        pose.pose.orientation = yaw_to_quaternion(float(yaw[i]) if yaw is not None else 0.0)
        poses.append(pose)
    msg.poses = poses
    return msg


def path_to_arrays(msg: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(xy (N, 2), pose stamp times (N,))`` of a Path."""
    n = len(msg.poses)
    xy = np.empty((n, 2))
    times = np.empty(n)
    for i, pose in enumerate(msg.poses):
        xy[i] = pose.pose.position.x, pose.pose.position.y
        times[i] = time_to_seconds(pose.header.stamp)
    return xy, times


def speed_from_times(xy: np.ndarray, times: np.ndarray) -> np.ndarray | None:
    """Per-point speed of a timed closed path (``None`` when the stamps do not increase).

    The speed at point i is the distance to point i+1 over the time between them; the last
    point uses the previous segment (its successor is the first point of the next lap).
    """
    if len(times) < 3 or not np.all(np.diff(times) > 0.0):
        return None
    dist = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    speed = dist / np.diff(times)
    return np.concatenate([speed, speed[-1:]])


# --------------------------------------------------------------------------- commands


def encode_command(
    command_type: str,
    control: np.ndarray,
    targets: tuple[float, float],
    stamp: Time,
    frame_id: str,
    wheelbase: float,
    control_names: Sequence[str] = ("steering_rate", "accel"),
):
    """The ``cmd`` message for a raw control and its integrated targets.

    Args:
        command_type: One of :data:`COMMAND_TYPES`.
        control: Raw control (``array`` sends it unchanged).
        targets: ``(steering angle, speed)`` the control leads to after one control period.
        stamp: The control tick the command was computed for.
        frame_id: Header frame.
        wheelbase: ``lf + lr``, for the yaw rate of ``twist_stamped``.
        control_names: Labels of the ``array`` layout.
    """
    steering, speed = float(targets[0]), float(targets[1])
    if command_type == "array":
        msg = Float64MultiArray()
        msg.layout.dim = [
            MultiArrayDimension(label=",".join(control_names), size=len(control), stride=1)
        ]
        msg.data = [float(v) for v in control]
        return msg
    if command_type == "twist_stamped":
        msg = TwistStamped()
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        msg.twist.linear.x = speed
        msg.twist.angular.z = speed * math.tan(steering) / wheelbase
        return msg
    cls = command_message_class(command_type)
    msg = cls()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.drive.steering_angle = steering
    msg.drive.speed = speed
    if len(control) >= 2:
        msg.drive.steering_angle_velocity = abs(float(control[0]))
        msg.drive.acceleration = abs(float(control[1]))
    return msg


def command_stamp(msg) -> float | None:
    """The header stamp (s) of a command message, ``None`` for ``array`` (no header)."""
    header = getattr(msg, "header", None)
    return None if header is None else time_to_seconds(header.stamp)


def decode_command(msg) -> tuple[str, np.ndarray]:
    """``("raw", control)`` for arrays, else ``("targets", [steering angle, speed])``.

    ``twist_stamped`` yaw rates are turned into steering angles by the simulator, which knows
    the wheelbase; here they are returned as ``("twist", [yaw_rate, speed])``.
    """
    if isinstance(msg, Float64MultiArray):
        return "raw", np.asarray(msg.data, np.float64)
    if isinstance(msg, TwistStamped):
        return "twist", np.array([msg.twist.angular.z, msg.twist.linear.x])
    return "targets", np.array([msg.drive.steering_angle, msg.drive.speed])


def path_from_cdr(raw: bytes) -> tuple[str, np.ndarray, np.ndarray]:
    """``(frame_id, xy (N, 2), pose stamp times (N,))`` of a serialized nav_msgs/Path, read
    from its CDR bytes (see :func:`path_pose_count`) without building a Python object per pose:
    ``deserialize_message`` takes ~60 ms for 1,300 poses, and seconds on a worker that yields
    to control cycles; this takes ~1 ms.

    Each PoseStamped: stamp (int32 sec, uint32 nanosec), frame_id (uint32 length, characters),
    padding to 8 bytes (alignment counts from the end of the encapsulation header), position
    (3 float64) and orientation (4 float64).

    Raises:
        ValueError: Bytes that do not hold a whole Path.
    """
    count = path_pose_count(raw)
    if count is None:
        raise ValueError("too short for a nav_msgs/Path")
    little = raw[1] == 1
    u32 = struct.Struct("<I" if little else ">I")
    (frame_length,) = u32.unpack_from(raw, 12)
    frame = raw[16 : 16 + max(frame_length - 1, 0)].decode("utf-8", errors="replace")
    offset = 16 + frame_length
    offset += -(offset - 4) % 4 + 4  # the count, then the first pose
    if count > (len(raw) - offset) // 68:  # the smallest pose: 12 + 56 bytes
        raise ValueError(f"{len(raw)} bytes cannot hold {count} poses")
    stamps, doubles = np.empty(count, np.int64), np.empty(count, np.int64)
    for i in range(count):
        stamps[i] = offset
        if offset + 12 > len(raw):
            break
        offset += 12 + u32.unpack_from(raw, offset + 8)[0]
        offset += -(offset - 4) % 8
        doubles[i] = offset
        offset += 56
    if offset > len(raw):
        raise ValueError(f"{len(raw)} bytes end inside pose {count - 1}")
    data = np.frombuffer(raw, np.uint8)

    def gather(at: np.ndarray, dtype: str) -> np.ndarray:
        size = np.dtype(dtype).itemsize
        chunks = data[at[:, None] + np.arange(size)]
        return chunks.view(("<" if little else ">") + dtype).ravel()

    xy = np.stack([gather(doubles, "f8"), gather(doubles + 8, "f8")], axis=1).astype(np.float64)
    times = gather(stamps, "i4").astype(np.float64) + gather(stamps + 4, "u4") * 1e-9
    return frame, xy, times


def path_pose_count(raw: bytes) -> int | None:
    """The pose count of a serialized nav_msgs/Path, read from its CDR bytes without
    deserializing (``None`` for bytes too short to hold one).

    The layout: a 4-byte encapsulation header (byte 1: 1 little-endian, 0 big-endian), the
    header's stamp (8 bytes), its frame_id (uint32 length with the terminating NUL, the
    characters, padding to 4 bytes), then the uint32 length of ``poses``.
    """
    if len(raw) < 20:
        return None
    order = "<" if raw[1] == 1 else ">"
    (frame_length,) = struct.unpack_from(order + "I", raw, 12)
    offset = 16 + frame_length
    offset += -(offset - 4) % 4
    if offset + 4 > len(raw):
        return None
    return struct.unpack_from(order + "I", raw, offset)[0]
