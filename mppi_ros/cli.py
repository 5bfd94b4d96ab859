"""The `mppi-ros` command: benchmarks, demo, track tools.

mppi-ros bench closed-loop --track default --controllers mppi --laps 2 --json out.json
mppi-ros bench latency --controllers mppi --num-samples 1024,16384 --json lat.json
mppi-ros train step-mppi|dpc --config config/train/f1tenth_step_mppi.yaml --out models/NAME
mppi-ros export onnx MODEL [--out FILE]
mppi-ros demo
mppi-ros tracks list | generate [--out DIR] | show NAME --plot FILE.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mppi_ros.allocator import ALLOCATORS
from mppi_ros.bench.reference import (
    SPEED_PROFILES,
    add_circuit_arguments,
    add_speed_arguments,
    speed_settings,
)

if TYPE_CHECKING:
    from mppi_ros.ros.graph import GraphSpeed

# Controllers a node can run (``mppi_ros.core.controllers.controller_names()``; listed here so
# that parsing the command line does not import JAX).
DEMO_CONTROLLERS = ("step_mppi", "dpc", "soft_mpcritic", "mppi", "pure_pursuit")


def _positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _csv_list(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in _csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _emit(report: dict[str, Any], json_path: str | None) -> None:
    text = json.dumps(report, indent=2)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text + "\n")
    print(text)


def _add_closed_loop_args(p: argparse.ArgumentParser, laps: int) -> None:
    p.add_argument(
        "--track",
        default="default",
        help="built-in name, procedural:SEED, or a raceline/centerline CSV",
    )
    p.add_argument(
        "--controllers",
        type=_csv_list,
        default=("mppi",),
        help="comma-separated NAME[@SAMPLES]: mppi, step_mppi, dpc (shipped weights) or a "
        "bundle folder, e.g. mppi@16384,step_mppi,step_mppi@256,dpc",
    )
    p.add_argument("--laps", type=int, default=laps)
    add_speed_arguments(p, profile="constant")
    p.add_argument("--friction-scale", type=float, default=1.0)
    p.add_argument("--plant-dt", type=float, default=0.01)
    p.add_argument(
        "--control-period",
        type=float,
        default=None,
        help="seconds between controller calls, a multiple of --plant-dt (default: every plant "
        "step)",
    )
    p.add_argument(
        "--steer-delay-steps",
        type=int,
        default=2,
        help="plant steps between a steering command and its effect",
    )
    p.add_argument("--num-samples", type=int, default=None)
    p.add_argument("--horizon", type=int, default=None, help="classic MPPI horizon")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the JSON report here")
    p.add_argument("--plot", default=None, help="write a PNG of paths and errors here")


def _closed_loop(args: argparse.Namespace) -> dict[str, Any]:
    from mppi_ros.bench import closed_loop
    from mppi_ros.bench.plots import plot_closed_loop

    bench = closed_loop.ClosedLoopBench(
        track=args.track,
        controllers=tuple(args.controllers),
        laps=args.laps,
        speed=speed_settings(args),
        friction_scale=args.friction_scale,
        plant_dt=args.plant_dt,
        control_period=args.control_period,
        steer_delay_steps=args.steer_delay_steps,
        num_samples=args.num_samples,
        horizon=args.horizon,
        seed=args.seed,
    )
    report, raw = closed_loop.run(bench, show_progress=sys.stderr.isatty())
    if args.plot:
        report["plot"] = str(
            plot_closed_loop(speed_settings(args).load(args.track), raw, args.plot)
        )
    return report


def cmd_bench_closed_loop(args: argparse.Namespace) -> int:
    _emit(_closed_loop(args), args.json)
    return 0


def cmd_bench_circuits(args: argparse.Namespace) -> int:
    from mppi_ros.bench import circuits

    try:
        bench = circuits.bench_from_args(args)
    except ValueError as err:
        print(f"mppi-ros bench circuits: error: {err}", file=sys.stderr)
        return 2
    report, raw, tracks = circuits.run(bench, progress=sys.stderr.isatty())
    if args.plot:
        report["plot"] = str(circuits.plot_grid(raw, tracks, args.plot))
    _emit(report, args.json)
    return 0


def _soft_mpcritic_config(args: argparse.Namespace):
    """The training config of a softMPCritic benchmark: ``--config`` (or the paper defaults
    for ``--env``) with ``--steps``."""
    from mppi_ros.training.soft_mpcritic import SoftMPCriticTrainConfig, load_soft_mpcritic_config

    if args.config:
        return load_soft_mpcritic_config(args.config, task=args.env, total_steps=args.steps)
    task = args.env or "InvertedDoublePendulum-v5"
    return SoftMPCriticTrainConfig(task=task, total_steps=args.steps or 50_000)


def cmd_bench_soft_mpcritic(args: argparse.Namespace) -> int:
    from mppi_ros.bench import soft_mpcritic as bench_sm
    from mppi_ros.bench.plots import plot_learning_curves

    config = _soft_mpcritic_config(args)
    bench = bench_sm.LearningCurveBench(
        config=config,
        seeds=tuple(range(args.seeds)),
        out=Path(args.out or f"bench_output/soft_mpcritic_{config.task}"),
        parallel=args.jobs,
    )
    report = bench_sm.run_learning_curves(bench, log=lambda m: print(m, file=sys.stderr))
    if args.plot:
        report["plot"] = str(
            plot_learning_curves(
                {f"{config.task} ({args.seeds} seeds)": report["curve"]},
                f"softMPCritic on {config.task}: median and 20-80 % band",
                args.plot,
            )
        )
    _emit(report, args.json)
    return 0


def cmd_bench_amortisation(args: argparse.Namespace) -> int:
    from mppi_ros.bench import soft_mpcritic as bench_sm
    from mppi_ros.bench.plots import plot_amortisation

    config = _soft_mpcritic_config(args)
    bench = bench_sm.AmortisationBench(
        config=config,
        target_samples=tuple(args.target_samples),
        seeds=tuple(range(args.seeds)),
        out=Path(args.out or f"bench_output/amortisation_{config.task}"),
        parallel=args.jobs,
    )
    report = bench_sm.run_amortisation(bench, log=lambda m: print(m, file=sys.stderr))
    if args.plot:
        title = f"Amortised targets on {config.task}"
        report["plot"] = str(plot_amortisation(report["table"], title, args.plot))
    _emit(report, args.json)
    return 0


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from mppi_ros.bench import latency

    bench = latency.LatencyBench(
        controllers=tuple(args.controllers),
        num_samples=tuple(args.num_samples),
        horizon=args.horizon,
        baseline_samples=args.baseline_samples,
        baseline_horizon=args.baseline_horizon,
        iterations=args.iterations,
        track=args.track,
        backend=args.backend,
    )
    _emit(latency.run(bench), args.json)
    return 0


def _cpu_list(text: str) -> tuple[int, ...] | str:
    """``auto``, ``none`` or a comma-separated CPU list (``2,3``)."""
    if text in ("auto", "none"):
        return "auto" if text == "auto" else ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, none or CPUs like 2,3; got {text!r}"
        ) from None


def _parameter(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` with the value read as YAML (``0`` is an int, ``[1, 2]`` a list)."""
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"bad value for {name}: {err}") from None


def cmd_bench_ros(args: argparse.Namespace) -> int:
    from mppi_ros.ros import bench

    config = bench.RosBench(
        duration_s=args.duration,
        rate_hz=args.rate,
        controller=args.controller,
        track=args.track,
        events=not args.no_events,
        log_dir=args.log_dir,
        backend=args.backend,
        controller_cpus=args.controller_cpus,
        controller_params=tuple(args.param),
        allocator=args.allocator,
        speed=_graph_speed(args),
    )
    log = lambda line: print(line, file=sys.stderr, flush=True)
    _emit(bench.run_compared(config, log=log), args.json)
    return 0


def _add_graph_speed_arguments(p: argparse.ArgumentParser) -> None:
    """The speed law of a node graph (:class:`mppi_ros.ros.graph.GraphSpeed`)."""
    p.add_argument(
        "--speed-profile",
        choices=SPEED_PROFILES,
        default="constant",
        help="constant: the controller's reference speed throughout; track: the track's speed "
        "profile (timed reference path); friction: one computed from curvature, mu and the "
        "acceleration limits (default: %(default)s)",
    )
    p.add_argument("--speed-scale", type=float, default=1.0, help="multiplies the profile")
    p.add_argument(
        "--reference-speed",
        type=float,
        default=None,
        help="constant speed, or the cap of a profile (m/s; default: the model's)",
    )


def _graph_speed(args: argparse.Namespace) -> GraphSpeed:
    from mppi_ros.ros.graph import GraphSpeed

    if not (args.speed_scale > 0 and (args.reference_speed is None or args.reference_speed > 0)):
        raise ValueError("--speed-scale and --reference-speed must be > 0")
    return GraphSpeed(args.speed_profile, args.speed_scale, args.reference_speed)


def cmd_demo(args: argparse.Namespace) -> int:
    """Runs the demo; 2 (one error line) when the controller fails to configure."""
    from mppi_ros.ros.demo import DemoConfig, format_summary, run_demo
    from mppi_ros.ros.graph import ConfigureFailedError

    config = DemoConfig(
        track=args.track,
        controller=args.controller,
        model_path=args.model or "",
        laps=args.laps,
        control_rate=args.rate,
        command_type=args.command_type,
        initial_speed=args.initial_speed,
        out_dir=args.out,
        speed=_graph_speed(args),
    )
    try:
        summary = run_demo(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    except ConfigureFailedError as err:
        where = f" (log: {err.log_path})" if err.log_path else ""
        print(f"mppi-ros demo: error: {err}{where}", file=sys.stderr)
        return 2
    _emit(summary, args.json)
    print("\n=== mppi-ros demo ===\n" + format_summary(summary), file=sys.stderr)
    ok = summary["laps_completed"] >= args.laps and summary["border_violations"] == 0
    return 0 if ok else 1


def cmd_tracks(args: argparse.Namespace) -> int:
    from mppi_ros.core import tracks

    if args.tracks_cmd == "list":
        for name in tracks.builtin_track_names():
            t = tracks.load_track(name)
            print(f"{name}: {t.length:.1f} m, {len(t.xy)} points")
        return 0
    if args.tracks_cmd == "generate":
        for path in tracks.generate_builtin_tracks(args.out):
            print(path)
        return 0
    if args.tracks_cmd == "show":
        from mppi_ros.bench.plots import plot_closed_loop

        t = tracks.load_track(args.track)
        print(f"{t.name}: {t.length:.1f} m, {len(t.xy)} points")
        if args.plot:
            print(plot_closed_loop(t, {}, args.plot))
        return 0
    return 2


def cmd_inspect(args: argparse.Namespace) -> int:
    from mppi_ros.core.bundle import load_bundle, load_soft_mpcritic_bundle, read_manifest

    # Validates schema, checksums and weight shapes for either bundle family.
    if read_manifest(Path(args.model)).get("controller") == "soft_mpcritic":
        bundle = load_soft_mpcritic_bundle(args.model)[0]
    else:
        bundle = load_bundle(args.model)
    print(json.dumps(bundle.manifest, indent=2))
    print(
        f"OK: {bundle.model_id}: checksums of {len(bundle.manifest['files'])} file(s) verified, "
        f"weights match the architecture",
        file=sys.stderr,
    )
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from mppi_ros.export.onnx_export import export_onnx

    path = export_onnx(
        args.model,
        out=args.out,
        reference_points=args.reference_points,
        num_samples=args.num_samples,
        horizon=args.horizon,
        control_period=args.control_period,
    )
    print(path)
    return 0


def _run_training(args: argparse.Namespace, train_fn, config, **extra: Any):
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
    from mppi_ros.training.soft_mpcritic import load_soft_mpcritic_config, train_soft_mpcritic

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
    from mppi_ros.core.bundle import BundleError, read_manifest, resolve_model
    from mppi_ros.training.soft_mpcritic import evaluate_bundle

    try:
        path = resolve_model(args.model)
        if read_manifest(path).get("controller") != "soft_mpcritic":
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
        )
    except (BundleError, ValueError) as err:
        print(f"mppi-ros eval: error: {err}", file=sys.stderr)
        return 1
    _emit(report, args.json)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mppi-ros", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks (JSON to stdout and --json FILE)")
    bench_sub = bench.add_subparsers(dest="bench_cmd", required=True)
    cl = bench_sub.add_parser("closed-loop", help="laps, tracking error, violations, step time")
    _add_closed_loop_args(cl, laps=2)
    cl.set_defaults(func=cmd_bench_closed_loop)

    circ = bench_sub.add_parser(
        "circuits", help="held-out real-circuit-like tracks: standing start, speed profile"
    )
    add_circuit_arguments(circ)
    circ.set_defaults(func=cmd_bench_circuits)
    lat = bench_sub.add_parser("latency", help="controller step time p50/p99, ratio to MPPI")
    lat.add_argument("--controllers", type=_csv_list, default=("mppi",))
    lat.add_argument("--num-samples", type=_int_list, default=(1024, 16384))
    lat.add_argument("--horizon", type=int, default=40)
    lat.add_argument("--baseline-samples", type=int, default=16384)
    lat.add_argument("--baseline-horizon", type=int, default=40)
    lat.add_argument("--iterations", type=int, default=100)
    lat.add_argument("--track", default="default")
    lat.add_argument(
        "--backend",
        choices=("jax", "onnx"),
        default="jax",
        help="onnx: also time learned controllers on both deployment backends (ratio to jax)",
    )
    lat.add_argument("--json", default=None)
    lat.set_defaults(func=cmd_bench_latency)

    ros = bench_sub.add_parser(
        "ros", help="real nodes over DDS: loop latency, missed cycles, swap and tuning"
    )
    ros.add_argument("--duration", type=float, default=60.0, help="seconds of driving")
    ros.add_argument("--rate", type=float, default=100.0, help="control rate (Hz)")
    ros.add_argument("--controller", default="step_mppi")
    ros.add_argument("--track", default="default")
    ros.add_argument("--no-events", action="store_true", help="no model swap or parameter changes")
    _add_graph_speed_arguments(ros)
    ros.add_argument("--log-dir", default=None, help="node logs (default: a temp folder)")
    ros.add_argument(
        "--backend", choices=("jax", "onnx"), default="jax", help="the controller's backend"
    )
    ros.add_argument(
        "--controller-cpus",
        type=_cpu_list,
        default="auto",
        help="CPUs of the controller node, the rest run the other processes; auto: the last "
        "CPU (with two or more), none: no pinning, or a list like 2,3",
    )
    ros.add_argument(
        "--param",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a controller parameter on top of config/<controller>.yaml (repeatable), e.g. "
        "kept_replaced_steps=0",
    )
    ros.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="auto",
        help="heap allocator of the controller process; auto: jemalloc when libjemalloc2 is "
        "installed (it returns freed executables' memory to the OS), else glibc",
    )
    ros.add_argument("--json", default=None)
    ros.set_defaults(func=cmd_bench_ros)

    def soft_mpcritic_bench_args(p: argparse.ArgumentParser, seeds: int, what: str) -> None:
        p.add_argument("--env", default=None, help="gymnasium task (default: the config's)")
        p.add_argument("--config", default=None, help="training YAML (default: paper settings)")
        p.add_argument("--steps", type=int, default=None, help="environment steps per run")
        p.add_argument("--seeds", type=int, default=seeds, help="seeds 0..S-1 per " + what)
        p.add_argument("--jobs", type=int, default=1, help="training processes at once")
        p.add_argument("--out", default=None, help="run folders (finished runs are reused)")
        p.add_argument("--json", default=None)
        p.add_argument("--plot", default=None, help="learning-curve PNG")

    smb = bench_sub.add_parser(
        "soft-mpcritic", help="softMPCritic learning curves over seeds (median, 20-80 %% band)"
    )
    soft_mpcritic_bench_args(smb, seeds=3, what="run")
    smb.set_defaults(func=cmd_bench_soft_mpcritic)
    amo = bench_sub.add_parser(
        "amortisation", help="warm 1-iteration vs cold 1/5/10-iteration targets (Table I)"
    )
    soft_mpcritic_bench_args(amo, seeds=1, what="cell")
    amo.add_argument(
        "--target-samples", type=_int_list, default=(10, 20, 50), help="N: samples per target"
    )
    amo.set_defaults(func=cmd_bench_amortisation)

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
    ev.add_argument("--track", default="default", help="vehicle bundles: track name or CSV")
    ev.add_argument("--laps", type=int, default=1, help="vehicle bundles: closed-loop laps")
    _add_graph_speed_arguments(ev)
    ev.add_argument("--json", default=None)
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser(
        "demo",
        help="the main job: simulator, track publisher and controller as ROS 2 processes",
    )
    demo.add_argument("--track", default="default", help="built-in track name or CSV")
    demo.add_argument("--controller", default="step_mppi", choices=DEMO_CONTROLLERS)
    demo.add_argument("--model", default=None, help="model bundle (default: shipped weights)")
    demo.add_argument("--laps", type=_positive_int, default=3, help="laps to drive (>= 1)")
    demo.add_argument("--rate", type=float, default=100.0, help="control rate (Hz)")
    demo.add_argument(
        "--command-type", default="array", choices=("array", "twist_stamped", "ackermann")
    )
    demo.add_argument("--initial-speed", type=float, default=0.0, help="m/s at the start line")
    _add_graph_speed_arguments(demo)
    demo.add_argument("--out", default="demo_output", help="folder for demo.png, JSON, logs")
    demo.add_argument("--json", default=None, help="also write the summary JSON here")
    demo.set_defaults(func=cmd_demo)

    exp = sub.add_parser("export", help="export a model bundle for deployment without JAX")
    exp_sub = exp.add_subparsers(dest="export_cmd", required=True)
    onnx = exp_sub.add_parser("onnx", help="the whole controller step as controller.onnx")
    onnx.add_argument(
        "model", help="bundle folder, shipped model name, or 'mppi' (classic, needs --out)"
    )
    onnx.add_argument(
        "--out", default=None, help="write only this file (default: into the bundle + manifest)"
    )
    onnx.add_argument("--num-samples", type=int, default=0, help="classic MPPI K (default 1024)")
    onnx.add_argument("--horizon", type=int, default=0, help="classic MPPI H (default 40)")
    onnx.add_argument(
        "--control-period", type=float, default=0.01, help="classic MPPI s between calls"
    )
    onnx.add_argument(
        "--reference-points", type=int, default=2048, help="raceline points (node parameter)"
    )
    onnx.set_defaults(func=cmd_export_onnx)

    insp = sub.add_parser("inspect", help="print a model bundle's manifest, verify checksums")
    insp.add_argument("model", help="bundle folder (models/<name>)")
    insp.set_defaults(func=cmd_inspect)

    trk = sub.add_parser("tracks", help="list, generate or show tracks")
    trk_sub = trk.add_subparsers(dest="tracks_cmd", required=True)
    trk_sub.add_parser("list", help="built-in tracks")
    gen = trk_sub.add_parser("generate", help="regenerate the built-in track CSVs")
    gen.add_argument("--out", default=None, help="directory (default: the package's)")
    show = trk_sub.add_parser("show", help="print a track and optionally plot it")
    show.add_argument("track")
    show.add_argument("--plot", default=None)
    trk.set_defaults(func=cmd_tracks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mppi_ros.runtime import enable_compilation_cache

    enable_compilation_cache()
    try:
        return args.func(args)
    except ValueError as err:  # bad user input: one clear line, no traceback
        print(f"mppi-ros: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
