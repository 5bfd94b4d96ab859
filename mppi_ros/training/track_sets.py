"""The track sets training draws from: seeded procedural tracks, generated circuits, and the
training / held-out validation split of a :class:`~mppi_ros.training.config.TrainConfig`."""

from __future__ import annotations

from mppi_ros.core.tracks import Track, generate_track, load_track, vehicle_limits
from mppi_ros.training.common import TrainingError
from mppi_ros.training.config import TrainConfig


def procedural_tracks(first_seed: int, count: int) -> list[Track]:
    """``count`` procedural tracks from consecutive seeds, skipping seeds with no valid track."""
    tracks: list[Track] = []
    seed = first_seed
    while len(tracks) < count:
        if seed - first_seed > 10 * count + 10:
            raise TrainingError(f"could not generate {count} tracks from seed {first_seed} on")
        try:
            track = generate_track(seed, name=f"procedural:{seed}")
            # A profile under the vehicle's limits (these smooth loops allow ~11 m/s).
            tracks.append(track.with_limited_profile(vehicle_limits(12.0)))
        except ValueError:
            pass  # this seed's random curve never met the geometric constraints
        seed += 1
    return tracks


def circuits(first_seed: int, count: int) -> list[Track]:
    """``count`` generated circuits from consecutive seeds (cached as CSVs, see
    :func:`mppi_ros.training.circuit_cache.cached_circuit`)."""
    from mppi_ros.training.circuit_cache import cached_circuit

    return [cached_circuit(seed) for seed in range(first_seed, first_seed + count)]


def training_tracks(
    config: TrainConfig, extra: tuple[str, ...] = ()
) -> tuple[list[Track], list[Track]]:
    """Procedural tracks and generated circuits (+ user tracks) for training, and the
    held-out validation tracks."""
    d = config.data
    train = procedural_tracks(d.train_seed, d.train_tracks)
    train += circuits(d.circuit_seed, d.circuits)
    train += [load_track(spec) for spec in (*d.extra_tracks, *extra)]
    if not train:
        raise TrainingError("no training tracks: set data.train_tracks > 0 or pass --track")
    val = procedural_tracks(d.validation_seed, d.validation_tracks)
    val += circuits(d.validation_circuit_seed, d.validation_circuits)
    if not val:
        raise TrainingError("data.validation_tracks must be >= 1 (early stopping needs it)")
    overlap = {t.name for t in train} & {t.name for t in val}
    if overlap:
        raise TrainingError(f"validation tracks also used for training: {sorted(overlap)}")
    return train, val
