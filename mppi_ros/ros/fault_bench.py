"""``mppi-ros bench faults``: the real node graph driven through a scripted campaign of bad
input and process faults, one case after another, each from a car driving at speed.

The controller reads odometry through a relay node (:mod:`mppi_ros.ros.fault_relay_node`,
``odom`` remapped to ``odom_relay``), so a case can drop or edit the simulator's messages on
their way; reference
faults are published on the controller's path topics, parameter faults go through its
``set_parameters`` service, process faults are signals to the node processes. Per case the
report says whether the node stayed alive, the fault it named (against the one expected),
how fast it braked, how far the car got from the raceline and whether it stayed on the road,
the longest silence of its diagnostics, how long it took to drive again and whether a
command after that was saturated. The odometry the offsets come from is the simulator's own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from nav_msgs.msg import Path as PathMsg
from std_msgs.msg import Float64MultiArray, String

from mppi_ros.core.catalog import shipped_model_path
from mppi_ros.core.tracks import load_track
from mppi_ros.ros import conversions
from mppi_ros.ros.common import LATCHED
from mppi_ros.ros.demo import lateral_errors
from mppi_ros.ros.graph import GraphSpeed, Monitor, driving_graph, graph_parameters
from mppi_ros.ros.processes import NodeProcess

CONTROLLER = "mppi_controller"
SATURATION = 0.99  # a control at this fraction of its bound is saturated
RECOVERY_WINDOW_S = 0.3  # commands this long after a recovery are checked for saturation


@dataclasses.dataclass(frozen=True)
class Case:
    """One fault: what it does to the graph and the cause the controller must name
    (``None``: a change the node must refuse while it drives on, without braking)."""

    name: str
    expected: str | None
    kind: str  # "odom", "path", "parameter" or "process"


CASES = (
    Case("stale_odometry", "stale_state", "odom"),
    Case("nan_odometry", "nonfinite_state", "odom"),
    Case("zero_quaternion", "bad_quaternion", "odom"),
    Case("position_1e30", "position_jump", "odom"),
    Case("yaw_rate_1e30", "implausible_yaw_rate", "odom"),
    Case("future_stamp", "future_stamp", "odom"),
    Case("wrong_frame", "frame_mismatch", "odom"),
    Case("reference_shifted_100m", "reference_far", "path"),
    Case("reference_reversed", "reference_reversed", "path"),
    Case("reference_two_points", "bad_reference", "path"),
    Case("borders_inconsistent", "inconsistent_borders", "path"),
    Case("reference_oversized", "path_too_large", "path"),
    Case("corrupt_model_bundle", None, "parameter"),
    Case("simulator_killed", "stale_state", "process"),
    Case("controller_sigstop", None, "process"),
)
CASE_NAMES = tuple(c.name for c in CASES)
ODOM_MODES = {  # case -> fault_relay mode
    "stale_odometry": "drop",
    "nan_odometry": "nan",
    "zero_quaternion": "zero_quaternion",
    "position_1e30": "position_1e30",
    "yaw_rate_1e30": "yaw_rate_1e30",
    "future_stamp": "future_stamp",
    "wrong_frame": "wrong_frame",
}


@dataclasses.dataclass(frozen=True)
class FaultBench:
    """Settings of ``mppi-ros bench faults``."""

    track: str = "default"
    controller: str = "step_mppi"
    speed: float = 10.0  # m/s: the constant reference speed the car drives at
    cases: tuple[str, ...] = CASE_NAMES
    fault_s: float = 4.0  # how long each fault lasts (a bad path is named once it is built)
    recover_timeout_s: float = 60.0  # a restarted simulator compiles before it drives
    settle_timeout_s: float = 20.0  # to get back to 90 % of ``speed`` between cases
    diagnostics_rate: float = 50.0  # Hz: the resolution of the brake latency
    # The vehicle's own brake when commands stop (10 control periods): what stops the car
    # while the controller cannot (a frozen process), as a car's low-level interface does.
    command_timeout_s: float = 0.1
    log_dir: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.cases) - set(CASE_NAMES))
        if unknown:
            raise ValueError(f"unknown fault cases {unknown}; valid: {', '.join(CASE_NAMES)}")


class Injector:
    """This process's side of the campaign: the relay node's mode, the path publishers and a
    record of the controller's commands."""

    def __init__(self, monitor: Monitor) -> None:
        node = monitor.node
        self._mode = node.create_publisher(String, "/fault_relay/mode", LATCHED)
        self.commands: list[tuple[float, np.ndarray]] = []
        node.create_subscription(Float64MultiArray, "cmd", self._on_cmd, 100)
        self.paths = {
            name: node.create_publisher(PathMsg, name, LATCHED)
            for name in ("reference", "border_left", "border_right")
        }
        self.lock = threading.Lock()

    def set_mode(self, mode: str) -> None:
        self._mode.publish(String(data=mode))

    def _on_cmd(self, msg: Float64MultiArray) -> None:
        with self.lock:
            self.commands.append((time.time(), np.array(msg.data)))

    def commands_between(self, start: float, end: float) -> list[tuple[float, np.ndarray]]:
        with self.lock:
            return [(t, c) for t, c in self.commands if start <= t <= end]


def _path_messages(monitor: Monitor, xy, left, right, psi=None) -> list[tuple[str, PathMsg]]:
    stamp = monitor.node.get_clock().now().to_msg()
    return [
        ("reference", conversions.make_path(xy, "map", stamp, yaw=psi)),
        ("border_left", conversions.make_path(left, "map", stamp)),
        ("border_right", conversions.make_path(right, "map", stamp)),
    ]


class Campaign:
    """Runs the cases on a driving graph and measures each."""

    def __init__(
        self, bench: FaultBench, processes, monitor: Monitor, relay: Injector, log
    ) -> None:
        self.bench, self.processes, self.monitor, self.relay, self.log = (
            bench,
            processes,
            monitor,
            relay,
            log,
        )
        self.track = load_track(bench.track)
        self.left, self.right = self.track.border_polylines()
        self._work = Path(tempfile.mkdtemp(prefix="mppi_faults_"))

    # ------------------------------------------------------------------ injection

    def prepare(self, case: Case) -> tuple[Callable[[], None], Callable[[], None]]:
        """What starts ``case`` and what ends it. Messages are built here, before the fault
        is timed: building a path holds this process's GIL, which would starve the relay."""
        track, relay, monitor = self.track, self.relay, self.monitor
        if case.kind == "odom":
            return lambda: relay.set_mode(ODOM_MODES[case.name]), lambda: relay.set_mode("pass")
        if case.kind == "path":
            xy, left, right = track.xy, self.left, self.right
            if case.name == "reference_shifted_100m":
                xy, left, right = xy + 100.0, left + 100.0, right + 100.0
            elif case.name == "reference_reversed":
                xy = xy[::-1]
            elif case.name == "reference_two_points":
                xy = xy[:2]
            elif case.name == "borders_inconsistent":
                left = left + np.array([10.0, 0.0])
            elif case.name == "reference_oversized":
                s = np.linspace(0.0, 1.0, 200_001)[:, None]
                xy = track.xy[0] + s * (track.xy[1] - track.xy[0])
            bad = _path_messages(monitor, xy, left, right)
            good = _path_messages(monitor, track.xy, self.left, self.right, track.psi)
            send = lambda messages: [relay.paths[name].publish(m) for name, m in messages]
            return lambda: send(bad), lambda: send(good)
        if case.name == "corrupt_model_bundle":
            bundle = self._work / "corrupt"
            shutil.rmtree(bundle, ignore_errors=True)
            shutil.copytree(shipped_model_path(self.bench.controller), bundle)
            weights = bundle / "params.msgpack"
            data = bytearray(weights.read_bytes())
            data[100] ^= 0xFF
            weights.write_bytes(bytes(data))

            def offer() -> None:
                self._refused = monitor.set_parameters(CONTROLLER, model_path=str(bundle))[0]

            return offer, lambda: None
        if case.name == "simulator_killed":
            kill = lambda: os.kill(self.processes.pid("vehicle_simulator"), signal.SIGKILL)
            return kill, self._restart_simulator
        if case.name == "controller_sigstop":
            pid = self.processes.pid(CONTROLLER)
            return lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT)
        raise ValueError(case.name)

    def _restart_simulator(self) -> None:
        old = self.processes.processes["vehicle_simulator"]
        old.stop(1.0)
        self.processes.processes["vehicle_simulator"] = NodeProcess(
            old.module,
            self.processes.params_file,
            old.domain_id,
            log_path=old.log_path.with_name("vehicle_simulator_restarted.log"),
        )

    # ------------------------------------------------------------------ measuring

    def settle(self) -> None:
        """Waits until the controller drives at 90 % of the speed with a clear watchdog."""
        monitor, target = self.monitor, 0.9 * self.bench.speed

        def driving() -> bool:
            odom = monitor.recording.odom[-1:] if monitor.recording.odom else []
            ok = monitor.diagnostic(CONTROLLER).get("watchdog") == "ok"
            return ok and bool(odom) and odom[0][3] >= target

        monitor.wait_for(driving, self.bench.settle_timeout_s, f"the car at {target:.1f} m/s")

    def run_case(self, case: Case) -> dict[str, Any]:
        monitor, bench = self.monitor, self.bench
        start, end = self.prepare(case)
        self.settle()
        violations = int(monitor.diagnostic("vehicle_simulator").get("border_violations", 0))
        log_start = len(monitor.recording.diagnostic_log)
        t_inject = time.time()
        start()
        time.sleep(bench.fault_s)
        t_restore = time.time()
        # Excursions while the fault lasted (the stop); driving off again afterwards is the
        # controller's business, not the stop's.
        during = int(monitor.diagnostic("vehicle_simulator").get("border_violations", 0))
        end()
        recovered = None
        deadline = time.monotonic() + bench.recover_timeout_s
        while time.monotonic() < deadline:
            diag = monitor.diagnostic(CONTROLLER).get("watchdog")
            if diag == "ok" and time.time() - t_restore > 0.05:
                recovered = time.time()
                break
            time.sleep(0.02)
        time.sleep(max(RECOVERY_WINDOW_S, 0.5))
        left_road = during != violations
        return self._measure(case, t_inject, t_restore, recovered, log_start, left_road)

    def _measure(self, case, t_inject, t_restore, recovered, log_start, left_road) -> dict:
        monitor = self.monitor
        statuses = [
            (t, message)
            for t, name, _, message in monitor.recording.diagnostic_log[log_start:]
            if name == CONTROLLER
        ]
        faults = [(t, m) for t, m in statuses if t >= t_inject and m not in ("ok",)]
        # The vehicle saying it got no commands: only when the controller cannot brake itself.
        timeouts = [
            t
            for t, name, _, message in monitor.recording.diagnostic_log[log_start:]
            if name == "vehicle_simulator" and t >= t_inject and message.startswith("command_t")
        ]
        reason = faults[0][1] if faults else None
        end = recovered or time.time()
        times = [t_inject, *(t for t, _ in statuses if t_inject <= t <= end), end]
        odom = np.array([r for r in monitor.recording.odom if t_inject <= r[0] <= end])
        offsets = lateral_errors(self.track, odom[:, 1:3]) if len(odom) else np.zeros(0)
        saturated = None
        if recovered is not None:
            window = self.relay.commands_between(recovered, recovered + RECOVERY_WINDOW_S)
            bound = np.array([3.2, 9.51])  # single_track steering rate, acceleration
            saturated = any(np.any(np.abs(c[:2]) >= SATURATION * bound) for _, c in window)
        brake = None
        if case.expected is not None and faults:
            brake = round((faults[0][0] - t_inject) * 1e3, 1)
        alive = self.processes.processes[CONTROLLER].alive()
        return {
            "alive": alive,
            "fault_at_s": round(t_inject, 3),  # wall time, for the node logs and odometry.npy
            "speed_at_fault_mps": round(float(odom[0, 3]), 2) if len(odom) else None,
            "expected": case.expected,
            "reason": reason,
            "named": (reason or "").startswith(case.expected) if case.expected else None,
            "refused": None if case.kind != "parameter" else not self._refused.successful,
            "brake_latency_ms": brake,
            "max_offset_m": round(float(np.max(np.abs(offsets))), 3) if len(offsets) else None,
            # A killed simulator restarts its counter; a frozen controller is stopped by the
            # vehicle's command timeout.
            "stopped_inside_borders": None if case.name == "simulator_killed" else not left_road,
            "diagnostics_max_gap_s": round(float(np.max(np.diff(times))), 3),
            "vehicle_timeout_ms": round((timeouts[0] - t_inject) * 1e3, 1) if timeouts else None,
            "recovery_s": None if recovered is None else round(recovered - t_restore, 3),
            "saturated_after_recovery": saturated,
        }


def run_fault_bench(bench: FaultBench, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the campaign (see the module docstring); returns the report."""
    log_dir = Path(bench.log_dir or tempfile.mkdtemp(prefix="mppi_faults_logs_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    params = graph_parameters(
        bench.track,
        bench.controller,
        100.0,
        "array",
        controller_params={"diagnostics_rate": bench.diagnostics_rate},
        sim_params={"command_timeout": bench.command_timeout_s},
        speed=GraphSpeed(reference_speed=bench.speed),
    )
    params["fault_relay"] = {}
    relay: list[Injector] = []
    cases: dict[str, Any] = {}
    with driving_graph(
        params,
        "array",
        log_dir,
        startup_timeout=300.0,
        log=log,
        args={CONTROLLER: ("-r", "odom:=odom_relay")},
        setup=lambda monitor: relay.append(Injector(monitor)),
    ) as (processes, monitor):
        campaign = Campaign(bench, processes, monitor, relay[0], log)
        for case in (c for c in CASES if c.name in bench.cases):
            log(f"case {case.name}")
            try:
                cases[case.name] = campaign.run_case(case)
            except TimeoutError as err:  # the car never got back to speed: say so, go on
                alive = processes.processes[CONTROLLER].alive()
                cases[case.name] = {"alive": alive, "error": str(err)}
            log(f"  {json.dumps(cases[case.name])}")
        np.save(log_dir / "odometry.npy", np.array(monitor.recording.odom))  # wall s, x, y, v
        commands = [(t, *c) for t, c in relay[0].commands_between(0.0, math.inf)]
        np.save(log_dir / "commands.npy", np.array(commands))  # wall s, controls
    crashes = sum(not c["alive"] for c in cases.values())
    return {
        "track": bench.track,
        "controller": bench.controller,
        "speed_mps": bench.speed,
        "crashes": crashes,
        "cases": cases,
        "log_dir": str(log_dir),
    }


def plot_fault_bench(report: dict[str, Any], path: str | Path) -> None:
    """One page: per case, brake latency, largest offset, diagnostics gap and recovery time
    (red: the named reason differs from the expected one, or the car left the road)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["cases"])
    rows = [report["cases"][n] for n in names]
    panels = [
        ("brake_latency_ms", "brake latency (ms)"),
        ("max_offset_m", "largest offset from the raceline (m)"),
        ("diagnostics_max_gap_s", "longest diagnostics gap (s)"),
        ("recovery_s", "recovery (s)"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 12), sharex=True)
    bad = [r.get("named") is False or r.get("stopped_inside_borders") is False for r in rows]
    colors = ["tab:red" if b else "tab:blue" for b in bad]
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = [r.get(key) if r.get(key) is not None else 0.0 for r in rows]
        ax.bar(range(len(names)), values, color=colors)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(names)), names, rotation=60, ha="right")
    fig.suptitle(
        f"bench faults: {report['controller']} on {report['track']} at "
        f"{report['speed_mps']:g} m/s, {report['crashes']} crash(es)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
