"""A training run's working folder (``OUT/training``): the resumable checkpoint and the name
of the metrics CSV.

The checkpoint is a Flax state dict in msgpack (never pickle) plus a JSON sidecar holding the
run's config, which ``--resume`` checks against the config it is given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flax import serialization

from mppi_ros.training.common import TrainingError

CHECKPOINT = "checkpoint.msgpack"
CHECKPOINT_INFO = "checkpoint.json"
METRICS = "metrics.csv"


def _atomic_write(path: Path, data: bytes) -> None:
    # Write-then-rename: an interrupted run never leaves a truncated checkpoint behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_checkpoint(work: Path, host_state: Any, info: dict[str, Any]) -> None:
    """Writes ``work/checkpoint.msgpack`` (a Flax state dict, never pickle) and
    ``work/checkpoint.json`` (``info``, which holds the run's ``config``), each atomically."""
    work.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        work / CHECKPOINT,
        serialization.msgpack_serialize(serialization.to_state_dict(host_state)),
    )
    _atomic_write(work / CHECKPOINT_INFO, json.dumps(info, indent=2).encode())


def read_checkpoint(work: Path, config: dict[str, Any], may_change: str) -> dict[str, Any]:
    """The raw state dict of ``work``'s checkpoint, after checking that its config equals
    ``config`` in every key but ``may_change`` (the run's length, which ``--resume`` may
    extend).

    Raises:
        TrainingError: No checkpoint, or a config that differs.
    """
    info_path = work / CHECKPOINT_INFO
    if not info_path.exists() or not (work / CHECKPOINT).exists():
        raise TrainingError(f"--resume: no checkpoint in {work}")
    saved = json.loads(info_path.read_text())["config"]
    changed = sorted(k for k in config if k != may_change and saved.get(k) != config[k])
    if changed:
        raise TrainingError(
            f"--resume: the config differs from the checkpoint's in {changed}; "
            "resume with the same config or start a new --out"
        )
    return serialization.msgpack_restore((work / CHECKPOINT).read_bytes())
