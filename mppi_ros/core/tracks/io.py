"""Track files: F1TENTH raceline / centerline CSVs, the built-in tracks and :func:`load_track`.

File formats (F1TENTH racetrack convention):
  * raceline: ``;``-separated ``s_m; x_m; y_m; psi_rad; kappa_radpm; vx_mps; ax_mps2``
    (psi = 0 along +x), ``#`` comments;
  * centerline: ``,``-separated ``x_m, y_m, w_tr_right_m, w_tr_left_m``.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np

from mppi_ros.core.tracks.generate import (
    BUILTIN_TRACKS,
    CIRCUIT_PREFIX,
    generate_circuit,
    generate_track,
)
from mppi_ros.core.tracks.track import (
    PROCEDURAL_PREFIX,
    Track,
    TrackFormatError,
    track_from_centerline,
)

RACELINE_COLUMNS = ("s_m", "x_m", "y_m", "psi_rad", "kappa_radpm", "vx_mps", "ax_mps2")
CENTERLINE_COLUMNS = ("x_m", "y_m", "w_tr_right_m", "w_tr_left_m")
RACELINE_CHOICES = ("auto", "file", "optimise")


def _read_rows(path: Path, delimiter: str, columns: tuple[str, ...]) -> np.ndarray:
    """Reads numeric rows, raising :class:`TrackFormatError` with file and line on problems."""
    rows: list[list[float]] = []
    try:
        text = path.read_text()
    except OSError as err:
        raise TrackFormatError(f"{path}: cannot read track file ({err.strerror})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in stripped.split(delimiter)]
        if len(fields) != len(columns):
            raise TrackFormatError(
                f"{path}:{lineno}: expected {len(columns)} {delimiter!r}-separated columns "
                f"({', '.join(columns)}), found {len(fields)}"
            )
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise TrackFormatError(f"{path}:{lineno}: non-numeric value in {stripped!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise TrackFormatError(f"{path}:{lineno}: NaN or infinite value in {stripped!r}")
        rows.append(values)
    if len(rows) < 3:
        raise TrackFormatError(f"{path}: a track needs at least 3 points, found {len(rows)}")
    return np.asarray(rows)


def _check_closed(path: Path, xy: np.ndarray) -> np.ndarray:
    """Drops a repeated end point and rejects loops whose ends are far apart."""
    if np.linalg.norm(xy[-1] - xy[0]) < 1e-6:
        xy = xy[:-1]
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    if np.any(seg < 1e-9):
        line = int(np.argmin(seg)) + 2
        raise TrackFormatError(f"{path}: point {line} repeats the previous point")
    gap = float(np.linalg.norm(xy[-1] - xy[0]))
    if gap > 5.0 * float(np.median(seg)) + 1e-6:
        raise TrackFormatError(
            f"{path}: the track is not a closed loop (last point is {gap:.2f} m from the first; "
            f"median spacing {np.median(seg):.2f} m)"
        )
    return xy


def load_centerline_csv(
    path: str | Path, max_speed: float = 10.0, raceline: str = "centerline"
) -> Track:
    """Loads an F1TENTH centerline file.

    Args:
        path: The CSV.
        max_speed: Cap of the computed speed profile.
        raceline: ``centerline`` (follow the resampled centerline) or ``optimise`` (a
            minimum-curvature raceline kept the car's half-width plus a margin from the edges,
            :func:`mppi_ros.core.tracks.raceline.optimise_raceline`).
    """
    path = Path(path)
    data = _read_rows(path, ",", CENTERLINE_COLUMNS)
    if np.any(data[:, 2:] <= 0):
        line = _first_data_line(path, int(np.argmax((data[:, 2:] <= 0).any(1))))
        raise TrackFormatError(f"{path}:{line}: track widths must be positive")
    xy = _check_closed(path, data[:, :2])
    n = len(xy)
    name = path.stem.removesuffix("_centerline")
    if raceline == "centerline":
        return track_from_centerline(name, xy, data[:n, 2], data[:n, 3], max_speed=max_speed)
    from mppi_ros.core.tracks.raceline import optimise_raceline

    return optimise_raceline(name, xy, data[:n, 2], data[:n, 3], max_speed=max_speed)


def load_raceline_csv(path: str | Path, centerline: str | Path | None = None) -> Track:
    """Loads an F1TENTH raceline file, with borders from ``centerline`` (or a sibling
    ``*_centerline.csv``). Without a centerline, borders are 1.1 m each side of the raceline.
    """
    path = Path(path)
    data = _read_rows(path, ";", RACELINE_COLUMNS)
    xy = _check_closed(path, data[:, 1:3])
    data = data[: len(xy)]
    if np.any(np.diff(data[:, 0]) <= 0):
        line = _first_data_line(path, int(np.argmax(np.diff(data[:, 0]) <= 0)) + 1)
        raise TrackFormatError(f"{path}:{line}: arc length s_m must increase")
    if centerline is None:
        sibling = path.with_name(path.name.replace("_raceline", "_centerline"))
        centerline = sibling if sibling != path and sibling.exists() else None
    if centerline is not None:
        center = load_centerline_csv(centerline, raceline="centerline")
        center_xy, w_right, w_left = center.center_xy, center.width_right, center.width_left
    else:
        center_xy, w_right, w_left = xy, np.full(len(xy), 1.1), np.full(len(xy), 1.1)
    return Track(
        name=path.stem.removesuffix("_raceline"),
        s=data[:, 0] - data[0, 0],
        xy=xy,
        psi=data[:, 3],
        kappa=data[:, 4],
        speed=data[:, 5],
        accel=data[:, 6],
        center_xy=center_xy,
        width_right=w_right,
        width_left=w_left,
    )


def _first_data_line(path: Path, row: int) -> int:
    """1-based file line number of the ``row``-th data row (comments skipped)."""
    count = -1
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip() and not line.strip().startswith("#"):
            count += 1
            if count == row:
                return lineno
    return -1


def save_track(track: Track, directory: str | Path) -> tuple[Path, Path]:
    """Writes ``<name>_raceline.csv`` and ``<name>_centerline.csv`` in the F1TENTH formats."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = track.name.replace(PROCEDURAL_PREFIX, "procedural_").replace(CIRCUIT_PREFIX, "circuit_")
    race = directory / f"{stem}_raceline.csv"
    center = directory / f"{stem}_centerline.csv"
    race_rows = np.column_stack(
        [track.s, track.xy, track.psi, track.kappa, track.speed, track.accel]
    )
    np.savetxt(race, race_rows, delimiter="; ", fmt="%.6f", header="; ".join(RACELINE_COLUMNS))
    center_rows = np.column_stack([track.center_xy, track.width_right, track.width_left])
    np.savetxt(
        center, center_rows, delimiter=", ", fmt="%.6f", header=", ".join(CENTERLINE_COLUMNS)
    )
    return race, center


def builtin_track_dir() -> Path:
    """Folder of the shipped built-in track CSVs."""
    return Path(str(resources.files("mppi_ros") / "data" / "tracks"))


def builtin_track_names() -> list[str]:
    """Names of the built-in tracks."""
    return sorted(BUILTIN_TRACKS)


def load_track(spec: str | Path, raceline: str = "auto") -> Track:
    """Loads a track from a built-in name, ``procedural:SEED``, ``circuit:SEED`` or a CSV path.

    A CSV path may be a raceline (``;``-separated, 7 columns) or a centerline (``,``-separated,
    4 columns); the format is recognised from the first data line.

    Args:
        spec: What to load.
        raceline: ``auto`` (the file's raceline; a minimum-curvature raceline when only a
            centerline is given), ``file`` (the file's raceline, or the centerline itself for a
            centerline file) or ``optimise`` (always the project's minimum-curvature raceline,
            kept the car's half-width plus a margin from the road edges).

    Raises:
        TrackFormatError: For an unknown name or a bad file; the message lists the valid names
            or names the file and line.
    """
    if raceline not in RACELINE_CHOICES:
        raise ValueError(f"raceline must be one of {', '.join(RACELINE_CHOICES)}, got {raceline!r}")
    track, optimised = _load(str(spec), raceline)
    if raceline == "optimise" and not optimised:
        from mppi_ros.core.tracks.raceline import optimise_raceline

        peak = float(np.max(track.speed))
        return optimise_raceline(
            track.name,
            track.center_xy,
            track.width_right,
            track.width_left,
            max_speed=peak if peak > 0 else 10.0,
        )
    return track


def _seed(spec: str, prefix: str) -> int:
    try:
        return int(spec[len(prefix) :])
    except ValueError:
        raise TrackFormatError(f"{prefix} track needs an integer seed, got {spec!r}") from None


def _load(spec: str, raceline: str) -> tuple[Track, bool]:
    """The track and whether its raceline is already the optimiser's."""
    if spec in BUILTIN_TRACKS:
        return load_raceline_csv(builtin_track_dir() / f"{spec}_raceline.csv"), False
    if spec.startswith(PROCEDURAL_PREFIX):
        return generate_track(_seed(spec, PROCEDURAL_PREFIX)), False
    if spec.startswith(CIRCUIT_PREFIX):
        return generate_circuit(_seed(spec, CIRCUIT_PREFIX)), True
    path = Path(spec)
    if not path.suffix == ".csv" or not path.exists():
        raise TrackFormatError(
            f"unknown track {spec!r}: not a built-in name ({', '.join(builtin_track_names())}), "
            f"not '{PROCEDURAL_PREFIX}SEED' or '{CIRCUIT_PREFIX}SEED', and not an existing "
            ".csv file"
        )
    first = next(
        (
            ln
            for ln in path.read_text().splitlines()
            if ln.strip() and not ln.strip().startswith("#")
        ),
        "",
    )
    if ";" in first:
        return load_raceline_csv(path), False
    if raceline == "file":
        return load_centerline_csv(path, raceline="centerline"), False
    return load_centerline_csv(path, raceline="optimise"), True


def generate_builtin_tracks(directory: str | Path | None = None) -> list[Path]:
    """Regenerates the shipped built-in tracks (deterministic; see ``BUILTIN_TRACKS``)."""
    directory = Path(directory) if directory is not None else builtin_track_dir()
    written: list[Path] = []
    for name, (seed, length) in BUILTIN_TRACKS.items():
        written.extend(save_track(generate_track(seed, length=length, name=name), directory))
    return written
