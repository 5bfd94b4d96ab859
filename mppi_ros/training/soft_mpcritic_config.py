"""softMPCritic training settings (``mppi-ros train soft-mpcritic --config``): the task, the
online and target planners, the networks and the learning schedule."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from mppi_ros.core.controllers.soft_mpcritic import (
    SoftMPCriticConfig,
    SoftTuning,
    make_soft_tuning,
)
from mppi_ros.training.config import load_yaml_config
from mppi_ros.training.vehicle_task import VEHICLE_TASK, VehicleTaskConfig


@dataclasses.dataclass(frozen=True)
class SoftMPCriticTrainConfig:
    """Everything one training run depends on (YAML: ``mppi-ros train soft-mpcritic``).

    Defaults are the paper's Gaussian-prior settings (the softMPCritic paper). ``task`` is a
    gymnasium id or ``f1tenth-tracking`` (the vehicle task, set up by ``vehicle``).

    ``noise_std`` (one entry per action) replaces ``sqrt(noise_var)`` where actions have
    different units (the vehicle's steering rate and acceleration). ``learning_starts``: the
    first steps only fill the buffer (the untrained planner explores), then the ensemble's
    input and output statistics are set from it and learning starts; 0 (the paper's
    Algorithm 2) learns from the first step with identity statistics.
    """

    task: str = "InvertedDoublePendulum-v5"
    total_steps: int = 50_000
    seed: int = 0
    num_samples: int = 200
    target_samples: int = 20
    horizon: int = 4
    iterations: int = 1
    target_iterations: int = 1
    cold_start: bool = False
    prior: str = "gaussian"
    member_sampling: str = "step"
    temperature: float = 0.1
    noise_var: float = 0.1
    discount: float = 0.99
    ensemble_size: int = 4
    critics: int = 1
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 3e-4
    batch_size: int = 32
    tau: float = 0.005
    target_every: int = 2
    buffer_size: int = 1_000_000
    checkpoint_every: int = 10_000
    noise_std: tuple[float, ...] = ()
    learning_starts: int = 0
    vehicle: VehicleTaskConfig = dataclasses.field(default_factory=VehicleTaskConfig)

    def __post_init__(self) -> None:
        positive = ("total_steps", "num_samples", "target_samples", "horizon", "iterations")
        for name in (*positive, "target_iterations", "ensemble_size", "batch_size", "buffer_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.tau <= 1 or self.target_every < 1:
            raise ValueError("tau must lie in (0, 1] and target_every be >= 1")
        make_soft_tuning(1, self.temperature, self.noise_var, self.discount)  # validates
        self.online_config()  # validates prior / member_sampling

    def online_config(self) -> SoftMPCriticConfig:
        return SoftMPCriticConfig(
            self.num_samples, self.horizon, self.iterations, self.prior, self.member_sampling
        )

    def target_config(self) -> SoftMPCriticConfig:
        return SoftMPCriticConfig(
            self.target_samples,
            self.horizon,
            self.target_iterations,
            self.prior,
            self.member_sampling,
        )

    def tuning(self, act_dim: int) -> SoftTuning:
        tuning = make_soft_tuning(act_dim, self.temperature, self.noise_var, self.discount)
        if self.noise_std:
            if len(self.noise_std) != act_dim or min(self.noise_std) <= 0:
                raise ValueError(
                    f"noise_std needs {act_dim} positive entries, got {self.noise_std}"
                )
            tuning = tuning.replace(noise_std=jnp.asarray(self.noise_std, jnp.float32))
        return tuning

    @property
    def is_vehicle(self) -> bool:
        return self.task == VEHICLE_TASK

    @property
    def capacity(self) -> int:
        return min(self.buffer_size, self.total_steps)


def load_soft_mpcritic_config(path: str | Path, **overrides: Any) -> SoftMPCriticTrainConfig:
    """Reads a YAML config; ``overrides`` that are not ``None`` win."""
    return load_yaml_config(SoftMPCriticTrainConfig, path, **overrides)
