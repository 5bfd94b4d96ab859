"""The BPTT trainer's metrics CSV (``OUT/training/metrics.csv``): one row per epoch, epoch 0
being the untrained policy."""

from __future__ import annotations

from typing import Any

METRIC_FIELDS = (
    "epoch",
    "step",
    "wall_s",
    "learning_rate",
    "penalty_weight",
    "train_loss",
    "train_tracking_cost",
    "train_border_penalty",
    "train_entropy",
    "train_lateral_error",
    "train_violation",
    "skipped_steps",
    "val_cost",
    "val_lateral_error",
    "val_violation",
)


def metrics_row(
    state: dict[str, Any], train: dict[str, float], val: dict[str, Any], steps_per_epoch: int
) -> dict[str, Any]:
    """One row (keyed by :data:`METRIC_FIELDS`) from the loop state and the epoch's metrics.

    Args:
        state: The trainer's loop state after the epoch.
        train: Mean training metrics of the epoch (empty for epoch 0: blank cells).
        val: Validation metrics of the epoch's weights.
        steps_per_epoch: Turns the mean ``skipped`` fraction into a step count.
    """
    return {
        "epoch": state["epoch"],
        "step": state["step"],
        "wall_s": round(float(state["wall_s"]), 2),
        "learning_rate": state["learning_rate"],
        "penalty_weight": state["penalty_weight"],
        "train_loss": train.get("loss", ""),
        "train_tracking_cost": train.get("tracking_cost", ""),
        "train_border_penalty": train.get("border_penalty", ""),
        "train_entropy": train.get("entropy", ""),
        "train_lateral_error": train.get("lateral_error", ""),
        "train_violation": train.get("violation", ""),
        "skipped_steps": round(train.get("skipped", 0.0) * steps_per_epoch),
        "val_cost": float(val["loss"]),
        "val_lateral_error": float(val["lateral_error"]),
        "val_violation": float(val["violation"]),
    }
