"""Race tracks: files, procedural circuits, racelines, speed profiles and the pure JAX
functions that turn a track and a vehicle state into a controller observation.

NumPy side: :class:`Track` (load, generate, optimise, save). JAX side: :class:`TrackArrays`,
a pytree of arrays, and pure functions (:func:`project`, :func:`reference_window`, ...) that
controllers call inside jit.

Modules: :mod:`.geometry` (polylines), :mod:`.track` (the Track and its constructors),
:mod:`.profile` (speed profiles), :mod:`.raceline` (minimum-curvature raceline),
:mod:`.generate` (procedural tracks and circuits), :mod:`.io` (CSV files, ``load_track``),
:mod:`.window` (JAX).
"""

from mppi_ros.core.tracks.generate import (
    BUILTIN_TRACKS,
    CIRCUIT_PREFIX,
    CircuitStyle,
    generate_circuit,
    generate_track,
)
from mppi_ros.core.tracks.io import (
    CENTERLINE_COLUMNS,
    RACELINE_CHOICES,
    RACELINE_COLUMNS,
    builtin_track_dir,
    builtin_track_names,
    generate_builtin_tracks,
    load_centerline_csv,
    load_raceline_csv,
    load_track,
    save_track,
)
from mppi_ros.core.tracks.profile import (
    ProfileLimits,
    accel_from_speed,
    limited_profile,
    profile_lap_time,
    speed_profile,
)
from mppi_ros.core.tracks.raceline import (
    CAR_HALF_WIDTH,
    RACELINE_MARGIN,
    optimise_raceline,
    vehicle_limits,
)
from mppi_ros.core.tracks.track import (
    PROCEDURAL_PREFIX,
    Track,
    TrackFormatError,
    border_coefficients,
    circuit_stats,
    local_border,
    raceline_track,
    resample_track,
    track_from_centerline,
    track_from_polylines,
)
from mppi_ros.core.tracks.window import (
    Projection,
    ReferenceSpeed,
    ReferenceWindow,
    TrackArrays,
    allowed_band,
    interpolate,
    interpolate_ahead,
    project,
    reference_window,
)

__all__ = [
    "BUILTIN_TRACKS",
    "CAR_HALF_WIDTH",
    "CENTERLINE_COLUMNS",
    "CIRCUIT_PREFIX",
    "PROCEDURAL_PREFIX",
    "RACELINE_CHOICES",
    "RACELINE_COLUMNS",
    "RACELINE_MARGIN",
    "CircuitStyle",
    "ProfileLimits",
    "Projection",
    "ReferenceSpeed",
    "ReferenceWindow",
    "Track",
    "TrackArrays",
    "TrackFormatError",
    "accel_from_speed",
    "allowed_band",
    "border_coefficients",
    "builtin_track_dir",
    "builtin_track_names",
    "circuit_stats",
    "generate_builtin_tracks",
    "generate_circuit",
    "generate_track",
    "interpolate",
    "interpolate_ahead",
    "limited_profile",
    "load_centerline_csv",
    "load_raceline_csv",
    "load_track",
    "local_border",
    "optimise_raceline",
    "profile_lap_time",
    "project",
    "raceline_track",
    "reference_window",
    "resample_track",
    "save_track",
    "speed_profile",
    "track_from_centerline",
    "track_from_polylines",
    "vehicle_limits",
]
