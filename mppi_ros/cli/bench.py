"""``mppi-ros bench``: closed-loop, circuits, latency, ROS graph and softMPCritic benchmarks.

Each benchmark prints a JSON report to stdout and, with ``--json FILE``, also writes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mppi_ros.bench.reference import (
    FIRST_HELD_OUT_SEED,
    add_circuit_arguments,
    speed_settings,
)
from mppi_ros.cli.arguments import (
    _add_closed_loop_args,
    _add_graph_speed_arguments,
    _cpu_list,
    _csv_list,
    _emit,
    _graph_speed,
    _int_list,
    _parameter,
)
from mppi_ros.realtime.memory import ALLOCATORS


def _closed_loop(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the closed-loop benchmark of parsed options; returns its report."""
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
    """``mppi-ros bench closed-loop``."""
    _emit(_closed_loop(args), args.json)
    return 0


def cmd_bench_circuits(args: argparse.Namespace) -> int:
    """``mppi-ros bench circuits``; 2 for inconsistent options."""
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


def cmd_bench_em(args: argparse.Namespace) -> int:
    """``mppi-ros bench em``; 2 for inconsistent options."""
    from mppi_ros.bench import em

    try:
        bench = em.EMBench(
            num_samples=args.num_samples,
            iterations=args.iterations,
            families=args.families or em.FAMILIES,
            classic=not args.no_classic,
            tracks=args.tracks,
            reference_speed=args.reference_speed,
            circuits=args.circuits,
            first_seed=args.first_seed,
            circuit_speed_scale=args.circuit_speed_scale,
            horizon=args.horizon,
            seed=args.seed,
        )
    except ValueError as err:
        print(f"mppi-ros bench em: error: {err}", file=sys.stderr)
        return 2
    log = lambda line: print(line, file=sys.stderr, flush=True)
    report = em.run(bench, args.json, resume=args.resume, log=log)
    if args.plot:
        report["plot"] = str(em.plot_pareto(report, args.plot))
    _emit({"summary": report["summary"], "plot": report.get("plot")}, None)
    return 0


def _soft_mpcritic_config(args: argparse.Namespace):
    """The training config of a softMPCritic benchmark: ``--config`` (or the paper defaults
    for ``--env``) with ``--steps``."""
    from mppi_ros.training.soft_mpcritic_config import (
        SoftMPCriticTrainConfig,
        load_soft_mpcritic_config,
    )

    if args.config:
        return load_soft_mpcritic_config(args.config, task=args.env, total_steps=args.steps)
    task = args.env or "InvertedDoublePendulum-v5"
    return SoftMPCriticTrainConfig(task=task, total_steps=args.steps or 50_000)


def cmd_bench_soft_mpcritic(args: argparse.Namespace) -> int:
    """``mppi-ros bench soft-mpcritic``: learning curves over seeds."""
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
    """``mppi-ros bench amortisation``: warm vs cold softMPCritic targets (Table I)."""
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


def cmd_bench_soft_mpcritic_speed(args: argparse.Namespace) -> int:
    """``mppi-ros bench soft-mpcritic-speed``: training throughput; 2 for bad options."""
    import dataclasses

    from mppi_ros.bench import soft_mpcritic_speed as speed

    try:
        config = _soft_mpcritic_config(args)
        if args.critics is not None:
            config = dataclasses.replace(config, critics=args.critics)
        out = Path(args.out or f"bench_output/speed_{config.task}_{config.total_steps}")
        bench = speed.SpeedBench(config, out, profile_steps=args.profile_steps)
    except ValueError as err:
        print(f"mppi-ros bench soft-mpcritic-speed: error: {err}", file=sys.stderr)
        return 2
    _emit(speed.run(bench, log=lambda m: print(m, file=sys.stderr)), args.json)
    return 0


def cmd_bench_latency(args: argparse.Namespace) -> int:
    """``mppi-ros bench latency``: controller step times."""
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


def cmd_bench_ros(args: argparse.Namespace) -> int:
    """``mppi-ros bench ros``: real nodes over DDS."""
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
        record=args.record,
        speed=_graph_speed(args),
        candidates_subscriber=args.candidates,
    )
    log = lambda line: print(line, file=sys.stderr, flush=True)
    _emit(bench.run_compared(config, log=log), args.json)
    return 0


def cmd_bench_faults(args: argparse.Namespace) -> int:
    """``mppi-ros bench faults``: the node graph through a campaign of faults."""
    from mppi_ros.ros import fault_bench

    try:
        config = fault_bench.FaultBench(
            track=args.track,
            controller=args.controller,
            speed=args.speed,
            cases=tuple(args.cases.split(",")) if args.cases else fault_bench.CASE_NAMES,
            fault_s=args.fault_seconds,
            log_dir=args.log_dir,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log = lambda line: print(line, file=sys.stderr, flush=True)
    report = fault_bench.run_fault_bench(config, log=log)
    if args.plot:
        fault_bench.plot_fault_bench(report, args.plot)
    _emit(report, args.json)
    return 0 if report["crashes"] == 0 else 1


def _add_soft_mpcritic_bench_args(p: argparse.ArgumentParser, seeds: int, what: str) -> None:
    """Adds the options shared by the softMPCritic benchmarks.

    Args:
        p: The subcommand's parser.
        seeds: The default of ``--seeds``.
        what: What the seeds repeat, for the help text ("run", "cell").
    """
    p.add_argument("--env", default=None, help="gymnasium task (default: the config's)")
    p.add_argument("--config", default=None, help="training YAML (default: paper settings)")
    p.add_argument("--steps", type=int, default=None, help="environment steps per run")
    p.add_argument("--seeds", type=int, default=seeds, help="seeds 0..S-1 per " + what)
    p.add_argument("--jobs", type=int, default=1, help="training processes at once")
    p.add_argument("--out", default=None, help="run folders (finished runs are reused)")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="learning-curve PNG")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Registers ``bench`` and its subcommands.

    Args:
        sub: The subparsers of the ``mppi-ros`` parser.
    """
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
    emb = bench_sub.add_parser(
        "em", help="EM-MPPI: K x EM iterations x family beside MPPI; Pareto of error vs time"
    )
    emb.add_argument("--num-samples", type=_int_list, default=(128, 512, 2048, 8192))
    emb.add_argument("--iterations", type=_int_list, default=(1, 2, 4))
    emb.add_argument(
        "--families",
        type=_csv_list,
        default=None,
        help="default: gaussian_diag,gaussian_full,squashed_gaussian",
    )
    emb.add_argument("--no-classic", action="store_true", help="leave out classic MPPI")
    emb.add_argument(
        "--tracks",
        type=_csv_list,
        default=("default", "sprint", "endurance"),
        help="tracks driven at --reference-speed (flying start)",
    )
    emb.add_argument("--reference-speed", type=float, default=10.0)
    emb.add_argument("--circuits", type=int, default=20, help="held-out circuits (0: none)")
    emb.add_argument("--first-seed", type=int, default=FIRST_HELD_OUT_SEED)
    emb.add_argument("--circuit-speed-scale", type=float, default=0.9)
    emb.add_argument("--horizon", type=int, default=None)
    emb.add_argument("--seed", type=int, default=0)
    emb.add_argument("--json", default="bench_em.json", help="rows, written after every run")
    emb.add_argument("--resume", action="store_true", help="skip the rows --json already has")
    emb.add_argument("--plot", default=None, help="Pareto PNG (error vs step time)")
    emb.set_defaults(func=cmd_bench_em)
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
    ros.add_argument(
        "--record", default=None, metavar="FILE.mcap", help="also write an MCAP bag of the run"
    )
    ros.add_argument(
        "--candidates",
        action="store_true",
        help="subscribe to ~/candidates for the second half and report the loop's latency "
        "without and with that subscriber (candidates_comparison)",
    )
    ros.add_argument("--json", default=None)
    ros.set_defaults(func=cmd_bench_ros)

    flt = bench_sub.add_parser(
        "faults", help="real nodes through bad input and process faults: brake, offset, recovery"
    )
    flt.add_argument("--track", default="default")
    flt.add_argument("--controller", default="step_mppi")
    flt.add_argument("--speed", type=float, default=10.0, help="reference speed (m/s)")
    flt.add_argument("--cases", default="", help="comma-separated cases (default: all)")
    flt.add_argument("--fault-seconds", type=float, default=4.0, help="length of each fault")
    flt.add_argument("--log-dir", default=None, help="node logs (default: a temp folder)")
    flt.add_argument("--plot", default=None, help="one-page PNG")
    flt.add_argument("--json", default=None)
    flt.set_defaults(func=cmd_bench_faults)

    smb = bench_sub.add_parser(
        "soft-mpcritic", help="softMPCritic learning curves over seeds (median, 20-80 %% band)"
    )
    _add_soft_mpcritic_bench_args(smb, seeds=3, what="run")
    smb.set_defaults(func=cmd_bench_soft_mpcritic)
    amo = bench_sub.add_parser(
        "amortisation", help="warm 1-iteration vs cold 1/5/10-iteration targets (Table I)"
    )
    _add_soft_mpcritic_bench_args(amo, seeds=1, what="cell")
    amo.add_argument(
        "--target-samples", type=_int_list, default=(10, 20, 50), help="N: samples per target"
    )
    amo.set_defaults(func=cmd_bench_amortisation)
    spd = bench_sub.add_parser(
        "soft-mpcritic-speed",
        help="softMPCritic training steps/s: whole run, steady state, profile and roofline",
    )
    spd.add_argument("--env", default=None, help="gymnasium task (default: the config's)")
    spd.add_argument("--config", default=None, help="training YAML (default: paper settings)")
    spd.add_argument("--steps", type=int, default=15_000, help="environment steps of the run")
    spd.add_argument("--critics", type=int, default=None, help="override the config's critics")
    spd.add_argument("--profile-steps", type=int, default=300, help="steps of the profile")
    spd.add_argument("--out", default=None, help="the run's folder (must be new)")
    spd.add_argument("--json", default=None)
    spd.set_defaults(func=cmd_bench_soft_mpcritic_speed)
