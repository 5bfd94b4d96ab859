"""Training configuration: small frozen dataclasses grouped by concern, loaded from YAML.

Unknown keys are errors that list the valid ones, so a typo in a config file never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import yaml

from mppi_ros.core.catalog import controller_names, controller_spec


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Policy architecture (static: part of the bundle)."""

    hidden: tuple[int, ...] = (256, 256, 256, 256, 256)
    activation: str = "gelu"
    full_covariance: bool = False
    preview: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class InitialStateConfig:
    """Uniform initial-state distribution around a random raceline point (the Step-MPPI paper's).

    Attributes:
        position: Half-range (m) of the x and y offsets from the reference point.
        heading: Half-range (rad) of the heading offset from the raceline heading.
        speed: Range (m/s) of the initial speed.
        steering: Half-range (rad) of the steering angle.
        yaw_rate: Half-range (rad/s).
        slip: Half-range (rad) of the slip angle.
    """

    position: float = 2.0
    heading: float = math.pi / 4
    speed: tuple[float, float] = (1.0, 10.0)
    steering: float = math.pi / 8
    yaw_rate: float = math.pi / 2
    slip: float = math.pi / 16


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which tracks to train and validate on, and the driving conditions.

    Attributes:
        train_tracks: Number of procedural training tracks (seeds ``train_seed`` onwards).
        train_seed: First procedural seed for training.
        validation_tracks: Number of procedural validation tracks (held out from training).
        validation_seed: First procedural seed for validation.
        extra_tracks: More training tracks: built-in names, ``procedural:SEED`` or CSV paths.
        reference_speed: Nominal speed (m/s) at which the reference advances: the bundle's
            default tuning, and every rollout's speed unless ``reference_speed_range`` is set.
        reference_speed_range: Optional ``(lo, hi)``: each rollout draws its reference speed
            uniformly from this range, so the policy learns the speed as an input rather than
            a constant (a policy trained at one speed does not transfer to another).
        reference_speed_range_from: Epochs trained at the nominal speed before rollouts draw
            from ``reference_speed_range`` (a speed curriculum; validation and the input
            statistics always use the range).
        friction_scale: Range of the friction multiplier drawn per rollout (1, 1 = nominal).
        reference: ``time``: the reference point advances at the reference speed whatever the
            car does (the paper's setup; a car that stops falls ever further behind), or
            ``projection``: the deployed observation (projection + speed * dt).
        initial_state: Distribution of rollout start states.
        circuits: Generated real-circuit-like training tracks (``circuit:SEED``, seeds
            ``circuit_seed`` onwards): hairpins, chicanes, off-centre racelines, speed profiles.
        circuit_seed: First circuit seed for training.
        validation_circuits: Generated circuits added to validation (seeds
            ``validation_circuit_seed`` onwards).
        validation_circuit_seed: First circuit seed for validation.
        profile_share: Share of rollouts whose reference follows the track's speed profile
            (times a speed scale drawn from ``speed_scale_range``); the others advance at a
            constant speed drawn from the speed range.
        speed_scale_range: ``(lo, hi)`` of the speed scale of profile rollouts.
        capped_share: Share of profile rollouts whose reference speed is also capped at a
            constant drawn from the speed range (``min(scale x profile, cap)``: a constant
            speed wherever the track allows it, slower where it does not).
        standing_start_share: Share of rollouts that start at standstill with the wheels
            straight (the grid).
        start_speed_fraction: ``(lo, hi)``: the other rollouts start at this fraction of the
            reference speed at their start point (``None``: ``initial_state.speed`` in m/s).
    """

    train_tracks: int = 12
    train_seed: int = 100
    validation_tracks: int = 3
    validation_seed: int = 900
    extra_tracks: tuple[str, ...] = ()
    reference_speed: float = 10.0
    reference_speed_range: tuple[float, float] | None = None
    reference_speed_range_from: int = 0
    friction_scale: tuple[float, float] = (1.0, 1.0)
    reference: str = "projection"
    initial_state: InitialStateConfig = InitialStateConfig()
    circuits: int = 0
    circuit_seed: int = 1000
    validation_circuits: int = 0
    validation_circuit_seed: int = 5000
    profile_share: float = 0.0
    speed_scale_range: tuple[float, float] = (0.3, 1.05)
    capped_share: float = 0.0
    standing_start_share: float = 0.0
    start_speed_fraction: tuple[float, float] | None = None


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss = stage cost + scheduled constraint penalties - entropy_weight * entropy.

    Attributes:
        entropy_weight: gamma (Step-MPPI only; DPC has no distribution).
        border_weight: Initial weight of the squared border violation in the loss.
        penalty_growth: Factor applied to the penalty weights after every epoch.
        max_penalty_weight: Cap of the scheduled penalty weight.
        temperature: MPPI-layer temperature during training (the bundle's default tuning).
        q_weights: Diagonal state-error weights (None: the tracking defaults of make_tuning).
            A weight on speed gives every step a dense reason to keep moving, which the
            projected one-step reference alone does not (a stopped car pays only 0.5 m).
        r_weights: Diagonal control weights (None: 0.1 each).
    """

    entropy_weight: float = 0.1
    border_weight: float = 1e3
    penalty_growth: float = 1.1
    max_penalty_weight: float = 1e5
    temperature: float = 1.0
    q_weights: tuple[float, ...] | None = None
    r_weights: tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam(W) with gradient clipping, reduce-on-plateau and early stopping (per epoch)."""

    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    grad_clip: float = 3.0
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    min_learning_rate: float = 1e-6
    early_stopping_patience: int = 8


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; ``seed`` fixes every random draw.

    Attributes:
        controller: ``step_mppi`` or ``dpc``.
        dynamics: Prediction model (and training plant).
        dt: Model step (s); the controller's step and the reference spacing.
        rollout_steps: N, closed-loop steps per BPTT rollout.
        num_samples: K samples of the MPPI layer during training.
        deploy_samples: K written to the bundle (used online).
        batch_size: Rollouts per gradient step (split across local devices).
        validation_batch: Rollouts per validation (fixed start states).
        epochs: Maximum epochs.
        steps_per_epoch: Gradient steps per epoch.
        checkpoint_every: Epochs between checkpoints (the last epoch is always saved).
        curriculum: Shorter rollout lengths trained first, ``curriculum_epochs`` epochs each,
            before ``rollout_steps`` (BPTT through 100 steps of a randomly initialised closed
            loop gives gradients too chaotic to learn from; short rollouts teach tracking
            first). Validation always uses ``rollout_steps``.
        curriculum_epochs: Epochs per curriculum stage.
        gradient_window: Truncated BPTT: the rollout (and its loss) spans ``rollout_steps``,
            but state gradients are cut every ``gradient_window`` steps (0 = full BPTT).
            Full BPTT through 100 steps of this closed loop gave gradients too chaotic to
            learn from within the CPU budget; windows of 10 steps learn in minutes.
        init_from: Optional bundle whose network weights start this run: every parameter
            whose name and shape match is copied (a DPC bundle gives Step-MPPI its backbone
            and mean head; the covariance head starts fresh). Its first layer is re-expressed
            for this run's input statistics, so a different data config (e.g. a range of
            reference speeds) starts from exactly the donor's function.
    """

    controller: str = "step_mppi"
    seed: int = 0
    dynamics: str = "single_track"
    dt: float = 0.05
    rollout_steps: int = 100
    num_samples: int = 128
    deploy_samples: int = 1024
    batch_size: int = 64
    validation_batch: int = 64
    epochs: int = 100
    steps_per_epoch: int = 200
    checkpoint_every: int = 1
    curriculum: tuple[int, ...] = ()
    curriculum_epochs: int = 2
    gradient_window: int = 0
    init_from: str | None = None
    network: NetworkConfig = NetworkConfig()
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()

    def __post_init__(self) -> None:
        trainable = controller_names(lambda spec: spec.trainable)
        if self.controller not in trainable:
            raise ValueError(
                f"controller {self.controller!r} is not trainable here; "
                f"valid: {', '.join(trainable)}"
            )
        for name in ("rollout_steps", "batch_size", "validation_batch", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(n < 1 for n in self.curriculum) or self.curriculum_epochs < 1:
            raise ValueError("curriculum lengths and curriculum_epochs must be >= 1")
        if self.steps_per_epoch < 1 or self.checkpoint_every < 1:
            raise ValueError("steps_per_epoch and checkpoint_every must be >= 1")
        if controller_spec(self.controller).samples and self.num_samples < 1:
            raise ValueError(f"{self.controller} needs num_samples >= 1")
        if not self.dt > 0:
            raise ValueError(f"dt must be positive, got {self.dt}")
        speeds = self.data.reference_speed_range
        if speeds is not None and not (len(speeds) == 2 and 0 < speeds[0] <= speeds[1]):
            raise ValueError(
                f"data.reference_speed_range must be [lo, hi] with 0 < lo <= hi, got {speeds}"
            )
        for name in ("profile_share", "capped_share", "standing_start_share"):
            share = getattr(self.data, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"data.{name} must be in [0, 1], got {share}")
        if self.data.reference not in ("time", "projection"):
            raise ValueError(
                f"data.reference must be 'time' or 'projection', got {self.data.reference!r}"
            )

    @property
    def speed_range(self) -> tuple[float, float]:
        """Reference-speed range of the run (validation and input statistics use it)."""
        d = self.data
        if d.reference_speed_range is None:
            return (d.reference_speed, d.reference_speed)
        return tuple(d.reference_speed_range)

    def speed_range_at(self, epoch: int) -> tuple[float, float]:
        """Reference-speed range of (0-based) ``epoch``'s training rollouts."""
        if epoch < self.data.reference_speed_range_from:
            return (self.data.reference_speed, self.data.reference_speed)
        return self.speed_range

    def rollout_steps_at(self, epoch: int) -> int:
        """BPTT length of (0-based) ``epoch`` under the curriculum."""
        stage = epoch // max(self.curriculum_epochs, 1)
        return self.curriculum[stage] if stage < len(self.curriculum) else self.rollout_steps

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON values (tuples become lists)."""
    return _to_plain(dataclasses.asdict(config))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Builds dataclass ``cls`` from a mapping, recursing into nested dataclasses."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, raw in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw, f"{where}.{name}")
        elif isinstance(raw, list):
            kwargs[name] = tuple(raw)
        elif hint is float and isinstance(raw, int | float) and not isinstance(raw, bool):
            kwargs[name] = float(raw)
        else:
            kwargs[name] = raw
    return cls(**kwargs)


def dataclass_from_dict(cls: type, values: dict[str, Any], where: str = "config") -> Any:
    """Builds config dataclass ``cls`` (nested ones too) from plain values; errors name the
    offending key under ``where``."""
    return _build(cls, values, where)


def config_from_dict(values: dict[str, Any], **overrides: Any) -> TrainConfig:
    """Builds a :class:`TrainConfig`; top-level ``overrides`` win over ``values``."""
    merged = dict(values)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return _build(TrainConfig, merged, "config")


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Reads a YAML training config (``mppi-ros train --config``)."""
    return load_yaml_config(TrainConfig, path, **overrides)


def load_yaml_config(cls: type, path: str | Path, **overrides: Any) -> Any:
    """Builds config dataclass ``cls`` from a YAML file; ``overrides`` that are not ``None``
    win. Errors name the file and the offending key."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    values = dict(values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return _build(cls, values, "config")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
