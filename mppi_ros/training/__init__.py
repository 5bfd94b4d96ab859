"""Offline training of the learned controllers (closed-loop BPTT through the controller)."""

from mppi_ros.training.common import TrainingError
from mppi_ros.training.config import TrainConfig, load_config
from mppi_ros.training.trainer import Trainer, TrainingResult, train

__all__ = ["TrainConfig", "Trainer", "TrainingError", "TrainingResult", "load_config", "train"]
