"""``mppi-ros train`` and ``mppi-ros eval``: train model bundles and evaluate softMPCritic ones."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from mppi_ros.cli.arguments import _add_graph_speed_arguments, _emit


def _run_training(args: argparse.Namespace, train_fn: Callable[..., Any], config, **extra: Any):
    """Calls a training entry point with the CLI's ``--out``, ``--resume``, progress and
    stderr logging; reports a ``TrainingError`` and returns ``None`` for it."""
    from mppi_ros.training import TrainingError

    try:
        return train_fn(
            config,
            args.out,
            resume=args.resume,
            progress=not args.no_progress,
            log=lambda line: print(line, file=sys.stderr, flush=True),
            **extra,
        )
    except TrainingError as err:
        print(f"mppi-ros train: error: {err}", file=sys.stderr)
        return None


def cmd_train_soft_mpcritic(args: argparse.Namespace) -> int:
    """``mppi-ros train soft-mpcritic``; 1 when training fails."""
    from mppi_ros.training.soft_mpcritic import train_soft_mpcritic
    from mppi_ros.training.soft_mpcritic_config import load_soft_mpcritic_config

    config = load_soft_mpcritic_config(
        args.config,
        seed=args.seed,
        total_steps=args.steps,
        cold_start=True if args.cold_start else None,
        target_iterations=args.target_iters,
    )
    result = _run_training(args, train_soft_mpcritic, config)
    if result is None:
        return 1
    last = result.returns[-10:]
    print(
        json.dumps(
            {
                "bundle": str(result.bundle),
                "task": config.task,
                "steps": result.steps,
                "episodes": result.episodes,
                "last10_return_mean": sum(last) / len(last) if last else None,
                "steps_per_s": round(result.steps_per_s, 1),
                "wall_s": round(result.wall_s, 1),
            },
            indent=2,
        )
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``mppi-ros eval``: runs a softMPCritic bundle; 1 for a bad bundle or option."""
    from mppi_ros.core.bundles import SOFT_MPCRITIC, BundleError, read_manifest, resolve_model
    from mppi_ros.training.soft_mpcritic_eval import evaluate_bundle

    try:
        path = resolve_model(args.model)
        if read_manifest(path).get("controller") != SOFT_MPCRITIC:
            raise BundleError(
                f"model bundle {path}: mppi-ros eval runs softMPCritic bundles (gymnasium or "
                f"vehicle); use mppi-ros bench closed-loop --controllers {path} for this model"
            )
        report = evaluate_bundle(
            path,
            args.episodes,
            args.seed,
            args.track,
            args.laps,
            args.speed_profile,
            args.speed_scale,
            args.reference_speed,
            seeds=args.seeds,
        )
    except (BundleError, ValueError) as err:
        print(f"mppi-ros eval: error: {err}", file=sys.stderr)
        return 1
    _emit(report, args.json)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``mppi-ros train``; 1 when training fails, 2 for options of another controller."""
    from mppi_ros.training import load_config, train

    if args.controller == "soft-mpcritic":
        return cmd_train_soft_mpcritic(args)
    if args.cold_start or args.target_iters is not None or args.steps is not None:
        print(
            "mppi-ros train: error: --cold-start, --target-iters and --steps are soft-mpcritic "
            "options",
            file=sys.stderr,
        )
        return 2
    controller = args.controller.replace("-", "_")
    config = load_config(args.config, controller=controller, seed=args.seed)
    if args.epochs is not None:
        import dataclasses

        config = dataclasses.replace(config, epochs=args.epochs)
    result = _run_training(args, train, config, extra_tracks=tuple(args.track or ()))
    if result is None:
        return 1
    print(
        json.dumps(
            {
                "bundle": str(result.bundle),
                "epochs": result.epochs,
                "best_epoch": result.best_epoch,
                "best_val_cost": result.best_val_cost,
                "wall_s": round(result.wall_s, 1),
                "stop_reason": result.stop_reason,
            },
            indent=2,
        )
    )
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Registers ``train`` and ``eval``.

    Args:
        sub: The subparsers of the ``mppi-ros`` parser.
    """
    tr = sub.add_parser(
        "train", help="train Step-MPPI, DPC or softMPCritic weights into a model bundle"
    )
    tr.add_argument("controller", choices=("step-mppi", "dpc", "soft-mpcritic"))
    tr.add_argument("--config", required=True, help="YAML training config (config/train/)")
    tr.add_argument(
        "--track",
        action="append",
        help="extra training track: built-in name, procedural:SEED or CSV (repeatable)",
    )
    tr.add_argument("--out", required=True, help="bundle folder to write (models/<name>)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    tr.add_argument("--seed", type=int, default=None, help="override the config's seed")
    tr.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    tr.add_argument("--steps", type=int, default=None, help="soft-mpcritic: environment steps")
    tr.add_argument(
        "--cold-start",
        action="store_true",
        help="soft-mpcritic: targets from a zero plan instead of the stored one (ablation)",
    )
    tr.add_argument(
        "--target-iters", type=int, default=None, help="soft-mpcritic: MPPI iterations per target"
    )
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="run a trained bundle in the environment of its manifest")
    ev.add_argument("model", help="bundle folder or shipped model name")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--seeds",
        type=lambda text: tuple(int(v) for v in text.split(",") if v.strip()),
        default=None,
        help="evaluation seeds, --episodes each (e.g. 0,1,2,3,4); the report names the worst "
        "episode",
    )
    ev.add_argument("--track", default="default", help="vehicle bundles: track name or CSV")
    ev.add_argument("--laps", type=int, default=1, help="vehicle bundles: closed-loop laps")
    _add_graph_speed_arguments(ev)
    ev.add_argument("--json", default=None)
    ev.set_defaults(func=cmd_eval)
