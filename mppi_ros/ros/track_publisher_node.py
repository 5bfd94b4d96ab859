"""``track_publisher`` node: publishes a track's raceline and edges as latched nav_msgs/Path.

Topics (all reliable, transient-local, keep-last 1, so late subscribers get the current track):
  * ``reference``: the raceline; pose orientations are the raceline heading. With ``timed`` the
    pose stamps are the times at which each point is reached (from 0) driving a speed profile
    capped at ``reference_speed``: ``speed_profile`` ``track`` (the raceline file's ``vx_mps``,
    a generated circuit's profile, or one computed for a centerline), ``friction`` (computed
    from curvature, friction and the acceleration limits) or ``constant`` (``reference_speed``
    throughout). The speed profile travels with the path. Otherwise every pose stamp equals
    the header stamp.
  * ``border_left``, ``border_right``: the track edges.

``track``, ``timed``, ``speed_profile`` and ``reference_speed`` may be changed at run time:
the new track is loaded while the change is validated, so an unknown name or a bad file is
rejected with the loader's message as the reason and the old track stays published.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from nav_msgs.msg import Path
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from mppi_ros.core.speed import SPEED_PROFILES
from mppi_ros.core.tracks import Track, TrackFormatError, load_track, vehicle_limits
from mppi_ros.ros.common import LATCHED, run_node
from mppi_ros.ros.conversions import make_path

NODE_NAME = "track_publisher"
LIVE_PARAMETERS = ("track", "timed", "reference_speed", "speed_profile")


@dataclasses.dataclass(frozen=True)
class TrackSettings:
    """What is published: the track (spec and loaded data) and the reference timing."""

    spec: str
    track: Track
    timed: bool
    reference_speed: float
    speed_profile: str = "track"


def reference_times(
    track: Track, reference_speed: float, speed_profile: str = "constant"
) -> np.ndarray:
    """Seconds at which each raceline point is reached (first = 0): at ``reference_speed``
    (``constant``), or along the track's profile (``track``) or a friction-limited one
    (``friction``), capped at ``reference_speed``.

    Raises:
        ValueError: If ``reference_speed`` is not positive, ``speed_profile`` unknown, or the
            profile not positive.
    """
    if not reference_speed > 0.0:
        raise ValueError(f"reference_speed must be > 0, got {reference_speed}")
    if speed_profile not in SPEED_PROFILES:
        raise ValueError(
            f"speed_profile must be one of {', '.join(SPEED_PROFILES)}, got {speed_profile!r}"
        )
    s = np.asarray(track.s, float) - float(track.s[0])
    if speed_profile == "constant":
        return s / reference_speed
    if speed_profile == "friction":
        track = track.with_limited_profile(vehicle_limits(reference_speed))
    v = np.minimum(np.asarray(track.speed, float), reference_speed)
    if not np.all(v > 0.0):
        raise ValueError(f"{track.name}: its speed profile is not positive everywhere")
    mean_v = 0.5 * (v[:-1] + v[1:])
    return np.concatenate([[0.0], np.cumsum(np.diff(s) / mean_v)])


def settings_from(
    current: TrackSettings | None,
    spec: str,
    timed: bool,
    reference_speed: float,
    speed_profile: str = "track",
) -> TrackSettings:
    """Validated settings; the track is reloaded only when ``spec`` changed.

    Raises:
        TrackFormatError: For an unknown track name or an unreadable/invalid file.
        ValueError: For a non-positive ``reference_speed`` or an unknown ``speed_profile``.
    """
    if not reference_speed > 0.0:
        raise ValueError(f"reference_speed must be > 0, got {reference_speed}")
    if current is not None and current.spec == spec:
        track = current.track
    else:
        track = load_track(spec)
    settings = TrackSettings(spec, track, timed, reference_speed, speed_profile)
    reference_times(track, reference_speed, speed_profile)  # validates, timed or not
    return settings


class TrackPublisher(Node):
    """Publishes ``reference``, ``border_left`` and ``border_right`` for one track."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.declare_parameter(
            "track",
            "default",
            ParameterDescriptor(
                description="Built-in track name (default, sprint, endurance), "
                "'procedural:SEED', 'circuit:SEED', or the path of an F1TENTH "
                "raceline/centerline CSV",
            ),
        )
        self.declare_parameter(
            "frame_id",
            "map",
            ParameterDescriptor(description="Frame of the published paths", read_only=True),
        )
        self.declare_parameter(
            "timed",
            False,
            ParameterDescriptor(
                description="Stamp reference poses with the time the raceline is reached at "
                "reference_speed (from 0); false: every pose stamp equals the header stamp",
            ),
        )
        self.declare_parameter(
            "speed_profile",
            "track",
            ParameterDescriptor(
                description="Timed references: stamps follow the track's speed profile "
                "(track), one computed from curvature and friction (friction), or "
                "reference_speed throughout (constant); profiles are capped at reference_speed",
                additional_constraints="track, friction or constant",
            ),
        )
        self.declare_parameter(
            "reference_speed",
            10.0,
            ParameterDescriptor(
                description="Speed (m/s) used for the pose stamps of a timed reference",
                additional_constraints="> 0",
            ),
        )
        self._frame_id = self.get_parameter("frame_id").value
        # Raises TrackFormatError / ValueError on a bad start-up value; main() reports it.
        self._settings = settings_from(
            None,
            self.get_parameter("track").value,
            self.get_parameter("timed").value,
            self.get_parameter("reference_speed").value,
            self.get_parameter("speed_profile").value,
        )
        self._pending: TrackSettings | None = None
        self._reference_pub = self.create_publisher(Path, "reference", LATCHED)
        self._left_pub = self.create_publisher(Path, "border_left", LATCHED)
        self._right_pub = self.create_publisher(Path, "border_right", LATCHED)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._publish_track()

    # ------------------------------------------------------------------ parameters

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Loads and checks the requested track settings; rejects with the loader's message."""
        changed = {p.name: p.value for p in parameters if p.name in LIVE_PARAMETERS}
        if not changed:
            return SetParametersResult(successful=True)
        current = self._settings
        try:
            self._pending = settings_from(
                current,
                str(changed.get("track", current.spec)),
                bool(changed.get("timed", current.timed)),
                float(changed.get("reference_speed", current.reference_speed)),
                str(changed.get("speed_profile", current.speed_profile)),
            )
        except (TrackFormatError, ValueError) as err:
            self._pending = None
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        """Publishes the settings accepted by :meth:`_validate_parameters`."""
        if self._pending is None or not any(p.name in LIVE_PARAMETERS for p in parameters):
            return
        previous, self._settings, self._pending = self._settings, self._pending, None
        if previous.spec != self._settings.spec:
            self.get_logger().info(f"track changed: {previous.spec!r} -> {self._settings.spec!r}")
        self._publish_track()

    # ------------------------------------------------------------------ publishing

    def _publish_track(self) -> None:
        settings = self._settings
        track = settings.track
        stamp = self.get_clock().now().to_msg()
        times = (
            reference_times(track, settings.reference_speed, settings.speed_profile)
            if settings.timed
            else None
        )
        self._reference_pub.publish(
            make_path(track.xy, self._frame_id, stamp, yaw=track.psi, times=times)
        )
        left, right = track.border_polylines()
        self._left_pub.publish(make_path(left, self._frame_id, stamp))
        self._right_pub.publish(make_path(right, self._frame_id, stamp))
        self.get_logger().info(
            f"published track {track.name!r} ({settings.spec}): {len(track.xy)} raceline points, "
            f"{track.length:.1f} m"
            + (f", timed at {settings.reference_speed:g} m/s" if settings.timed else "")
        )


def main(args: list[str] | None = None) -> int:
    """Runs the node until Ctrl-C; returns the process exit code."""
    return run_node(TrackPublisher, NODE_NAME, (TrackFormatError, ValueError), args)


if __name__ == "__main__":
    sys.exit(main())
