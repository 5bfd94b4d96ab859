"""How the reference advances in a run: the track's speed profile (its file's, or one
computed from curvature and the vehicle's limits), scaled, or a constant speed."""

from __future__ import annotations

import dataclasses

import numpy as np

from mppi_ros.core.controllers import TrackingTuning, update_tuning
from mppi_ros.core.tracks import Track, load_track, vehicle_limits

SPEED_PROFILES = ("track", "friction", "constant")


@dataclasses.dataclass(frozen=True)
class SpeedSettings:
    """Attributes:
    profile: ``track`` (the file's ``vx_mps``; generated circuits carry a friction-limited
        one), ``friction`` (recomputed: ``v^2 |kappa| <= mu g`` with the model's full mu,
        its acceleration and braking limits, capped at ``profile_max_speed``) or
        ``constant`` (``reference_speed`` everywhere).
    scale: Multiplies the profile.
    reference_speed: The constant speed (m/s).
    profile_max_speed: Cap of a ``friction`` profile (m/s).
    raceline: ``auto``, ``file`` or ``optimise`` (see :func:`load_track`).
    """

    profile: str = "constant"
    scale: float = 1.0
    reference_speed: float = 10.0
    profile_max_speed: float = 10.0
    raceline: str = "auto"

    def __post_init__(self) -> None:
        if self.profile not in SPEED_PROFILES:
            raise ValueError(f"speed profile must be one of {', '.join(SPEED_PROFILES)}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"speed scale must be > 0, got {self.scale}")
        if not self.reference_speed > 0:
            raise ValueError(f"reference speed must be > 0, got {self.reference_speed}")

    def load(self, spec: str) -> Track:
        """The track of ``spec`` with the profile this setting asks for."""
        return self.with_profile(load_track(spec, raceline=self.raceline))

    def with_profile(self, track: Track) -> Track:
        """``track`` with the profile this setting asks for (``friction``: recomputed; a
        ``track`` profile that is not positive everywhere is recomputed too)."""
        if self.profile == "friction" or (
            self.profile == "track" and not np.all(np.asarray(track.speed) > 0)
        ):
            track = track.with_limited_profile(vehicle_limits(self.profile_max_speed))
        return track

    def tuning(self, base: TrackingTuning) -> TrackingTuning:
        """``base`` with this reference-speed law."""
        follow = 0.0 if self.profile == "constant" else 1.0
        return update_tuning(
            base,
            follow_profile=follow,
            speed_scale=self.scale,
            reference_speed=self.reference_speed,
        )

    def ideal_lap_time(self, track: Track) -> float:
        """Lap time driven exactly at the reference speed (profile as run, after the scale)."""
        if self.profile == "constant":
            return track.length / self.reference_speed
        return track.ideal_lap_time(self.scale)
