"""``mppi-ros demo``, ``export onnx``, ``inspect`` and ``tracks``: run and manage models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mppi_ros.cli.arguments import (
    _add_graph_speed_arguments,
    _emit,
    _graph_speed,
    _parameter,
    _positive_int,
)


def cmd_demo(args: argparse.Namespace) -> int:
    """Runs the demo; 2 (one error line) when the controller fails to configure."""
    from mppi_ros.core.catalog import controller_names
    from mppi_ros.ros.demo import DemoConfig, format_summary, run_demo
    from mppi_ros.ros.graph import ConfigureFailedError

    if args.controller not in controller_names():
        valid = ", ".join(controller_names())
        print(
            f"mppi-ros demo: error: unknown controller {args.controller!r}; valid names: {valid}",
            file=sys.stderr,
        )
        return 2
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
        record=not args.no_record,
        vehicle=args.vehicle,
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
    """``mppi-ros tracks list|generate|show``."""
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
    """``mppi-ros inspect``: prints a bundle's manifest after verifying it."""
    from mppi_ros.core.bundles import SOFT_MPCRITIC, load_bundle, read_manifest
    from mppi_ros.training.gym_tasks import load_task_bundle

    # Validates schema, checksums and weight shapes for either bundle family.
    if read_manifest(Path(args.model)).get("controller") == SOFT_MPCRITIC:
        bundle = load_task_bundle(args.model)[0]
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
    """``mppi-ros export onnx``: prints the path of the written model."""
    from mppi_ros.export.onnx_export import export_onnx

    path = export_onnx(
        args.model,
        out=args.out,
        reference_points=args.reference_points,
        num_samples=args.num_samples,
        horizon=args.horizon,
        control_period=args.control_period,
        config=dict(args.config),
    )
    print(path)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """``mppi-ros replay BAG``: 2 (one error line) when the bag or the model cannot be used."""
    from mppi_ros.core.bundles import BundleError
    from mppi_ros.ros.replay import ReplayError, format_report, read_run, replay_model

    try:
        run = read_run(args.bag)
        report = replay_model(run, args.model or "", args.backend or "", args.controller or "")
    except (ReplayError, BundleError, FileNotFoundError) as err:
        print(f"mppi-ros replay: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(report))
    print(format_report(report))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Registers ``demo``, ``export``, ``inspect`` and ``tracks``.

    Args:
        sub: The subparsers of the ``mppi-ros`` parser.
    """
    demo = sub.add_parser(
        "demo",
        help="the main job: simulator, track publisher and controller as ROS 2 processes",
    )
    demo.add_argument("--track", default="default", help="built-in track name or CSV")
    demo.add_argument(
        "--controller", default="step_mppi", help="a registered controller (default step_mppi)"
    )
    demo.add_argument("--model", default=None, help="model bundle (default: shipped weights)")
    demo.add_argument("--laps", type=_positive_int, default=3, help="laps to drive (>= 1)")
    demo.add_argument("--rate", type=float, default=100.0, help="control rate (Hz)")
    demo.add_argument(
        "--command-type",
        default=None,
        choices=("array", "twist_stamped", "ackermann"),
        help="type of cmd (default: the vehicle's; sim: array, f1tenth: ackermann)",
    )
    demo.add_argument(
        "--vehicle",
        default="sim",
        choices=("sim", "f1tenth"),
        help="f1tenth: config/f1tenth.yaml, Ackermann commands on /drive, odometry on "
        "/ego_racecar/odom (the simulator plays the F1TENTH gym bridge)",
    )
    demo.add_argument("--initial-speed", type=float, default=0.0, help="m/s at the start line")
    _add_graph_speed_arguments(demo)
    demo.add_argument(
        "--out", default="demo_output", help="folder for demo.png, JSON, logs, run.mcap"
    )
    demo.add_argument(
        "--no-record", action="store_true", help="do not write the MCAP bag out/run.mcap"
    )
    demo.add_argument("--json", default=None, help="also write the summary JSON here")
    demo.set_defaults(func=cmd_demo)

    exp = sub.add_parser("export", help="export a model bundle for deployment without JAX")
    exp_sub = exp.add_subparsers(dest="export_cmd", required=True)
    onnx = exp_sub.add_parser("onnx", help="the whole controller step as controller.onnx")
    onnx.add_argument(
        "model",
        help="bundle folder, shipped model name, or a classic controller ('mppi', 'em_mppi'; "
        "needs --out)",
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
    onnx.add_argument(
        "--config",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a classic controller's config parameter (repeatable), e.g. family=gaussian_full",
    )
    onnx.set_defaults(func=cmd_export_onnx)

    rep = sub.add_parser(
        "replay",
        help="a recorded run's states through a model, offline: how its commands differ",
    )
    rep.add_argument("bag", help="an MCAP bag of mppi-ros demo or bench ros --record")
    rep.add_argument("--model", default=None, help="bundle folder or name (default: the run's)")
    rep.add_argument("--controller", default=None, help="a bundle-less controller instead")
    rep.add_argument("--backend", default=None, choices=("jax", "onnx"))
    rep.add_argument("--json", default=None, help="write the report (with per-step differences)")
    rep.set_defaults(func=cmd_replay)

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
