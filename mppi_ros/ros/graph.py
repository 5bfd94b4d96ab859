"""Runs the node graph (track publisher, simulator, controller) and watches it from a monitor
node: used by ``mppi-ros demo``, ``mppi-ros bench ros`` and tests.

The node processes themselves (isolated DDS domains, parameter files, start and stop) are
:mod:`mppi_ros.ros.processes`; this module sets the graph's parameters, starts it, waits until
the controller drives and records what it publishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import TransitionEvent
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from mppi_ros.realtime.memory import allocator_environment
from mppi_ros.ros import conversions
from mppi_ros.ros.common import LATCHED, make_executor
from mppi_ros.ros.f1tenth import controller_remappings, f1tenth_topics, ros_args
from mppi_ros.ros.processes import (
    ConfigureFailedError,  # also imported from here by mppi_ros.cli
    NodeProcesses,
    configure_failure,
    pick_domain_id,
)
from mppi_ros.ros.recording import PARAMETERS_METADATA, BagRecorder
from mppi_ros.share import share_search_paths

# How long a configure failure seen as a lifecycle event waits for its reason in the log.
_REASON_GRACE_S = 2.0


@dataclasses.dataclass
class Recording:
    """What the monitor saw (times are the monitor's ``time.time()``)."""

    odom: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)
    cmd: list[tuple[float, float | None]] = dataclasses.field(default_factory=list)
    timing: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    diagnostics: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    diagnostic_levels: dict[str, int] = dataclasses.field(default_factory=dict)
    diagnostic_messages: dict[str, str] = dataclasses.field(default_factory=dict)
    # Every status received: (time, node, level, message).
    diagnostic_log: list[tuple[float, str, int, str]] = dataclasses.field(default_factory=list)
    # The controller's lifecycle transitions: (start state, goal state) labels.
    transitions: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def window(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(odom (N, 4), cmd (M, 2) [receipt, stamp or nan], timing (K, 3))`` seen in
        ``[start, end]`` (timing rows by their tick time)."""

        def rows(values: list, width: int) -> np.ndarray:
            arr = np.array([[np.nan if v is None else v for v in r] for r in values])
            arr = arr.reshape(-1, width)
            return arr[(arr[:, 0] >= start) & (arr[:, 0] <= end)]

        return rows(self.odom, 4), rows(self.cmd, 2), rows(self.timing, 3)


@dataclasses.dataclass(frozen=True)
class VehicleTopics:
    """The vehicle's odometry and command topics, onto which the controller's (and the
    simulator's) ``odom`` and ``cmd`` are remapped."""

    odom: str = "odom"
    cmd: str = "cmd"

    def ros_args(self) -> tuple[str, ...]:
        """``-r odom:=... -r cmd:=...`` (empty for the default names)."""
        pairs = [(a, b) for a, b in (("odom", self.odom), ("cmd", self.cmd)) if a != b]
        return ros_args(pairs)


# The vehicles a graph can stand for: the plain simulator (config/<controller>.yaml and
# config/sim.yaml) or the F1TENTH gym ROS bridge, which the simulator plays with the
# F1TENTH topics, Ackermann commands and config/f1tenth.yaml (launch/f1tenth.launch.py).
VEHICLES = ("sim", "f1tenth")
F1TENTH_TOPICS = VehicleTopics(**dict(controller_remappings(f1tenth_topics("sim"))))


class Monitor:
    """A node in its own context and thread recording odom, cmd, loop timing and diagnostics."""

    def __init__(
        self,
        domain_id: int,
        command_type: str,
        controller: str = "mppi_controller",
        record: Path | None = None,
        topics: VehicleTopics = VehicleTopics(),
        parameters: dict[str, Any] | None = None,
    ):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("mppi_monitor", context=self.context)
        self.recording = Recording()
        self._lock = threading.Lock()
        self.controller = controller
        n = self.node
        n.create_subscription(Odometry, topics.odom, self._on_odom, qos_profile_sensor_data)
        n.create_subscription(
            conversions.command_message_class(command_type), topics.cmd, self._on_cmd, 100
        )
        n.create_subscription(
            Float64MultiArray, f"/{controller}/loop_timing", self._on_timing, 1000
        )
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        n.create_subscription(
            TransitionEvent, f"/{controller}/transition_event", self._on_transition, 10
        )
        self.recorder = None
        if record is not None:  # an MCAP bag of what a user looks at (see mppi_ros.ros.recording)
            recorded = {
                topics.odom: (Odometry, qos_profile_sensor_data),
                topics.cmd: (conversions.command_message_class(command_type), 100),
                "reference": (PathMsg, LATCHED),
                "border_left": (PathMsg, LATCHED),
                "border_right": (PathMsg, LATCHED),
                "/diagnostics": (DiagnosticArray, 50),
                f"/{controller}/prediction": (PathMsg, 10),
                f"/{controller}/step_input": (Float64MultiArray, 1000),  # mppi-ros replay
            }
            metadata = {PARAMETERS_METADATA: {"yaml": yaml.safe_dump(parameters or {})}}
            self.recorder = BagRecorder(n, record, recorded, metadata)
        self.executor = make_executor(self.context)
        self.executor.add_node(n)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def _on_odom(self, msg: Odometry) -> None:
        p = msg.pose.pose.position
        v = float(np.hypot(msg.twist.twist.linear.x, msg.twist.twist.linear.y))
        with self._lock:
            self.recording.odom.append((time.time(), p.x, p.y, v))

    def _on_cmd(self, msg: Any) -> None:
        with self._lock:
            self.recording.cmd.append((time.time(), conversions.command_stamp(msg)))

    def _on_timing(self, msg: Float64MultiArray) -> None:
        with self._lock:
            self.recording.timing.append(tuple(msg.data))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.time()
        with self._lock:
            for status in msg.status:
                name = status.name.split(":")[0]
                level = (
                    int.from_bytes(status.level, "little")
                    if isinstance(status.level, bytes)
                    else int(status.level)
                )
                self.recording.diagnostics[name] = {kv.key: kv.value for kv in status.values}
                self.recording.diagnostic_levels[name] = level
                self.recording.diagnostic_messages[name] = status.message
                self.recording.diagnostic_log.append((now, name, level, status.message))

    def _on_transition(self, msg: TransitionEvent) -> None:
        with self._lock:
            self.recording.transitions.append((msg.start_state.label, msg.goal_state.label))

    def configure_failed(self) -> bool:
        """Whether the controller left ``configuring`` for any state but ``inactive``."""
        with self._lock:
            return any(
                start == "configuring" and goal != "inactive"
                for start, goal in self.recording.transitions
            )

    def diagnostic(self, node: str) -> dict[str, str]:
        with self._lock:
            return dict(self.recording.diagnostics.get(node, {}))

    def message_counts(self) -> str:
        """How many odom, cmd and loop-timing messages arrived so far (for error messages)."""
        with self._lock:
            rec = self.recording
            return f"odom {len(rec.odom)}, cmd {len(rec.cmd)}, loop_timing {len(rec.timing)}"

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def call(self, service_type: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        client = self.node.create_client(service_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available")
            future = client.call_async(request)
            self.wait_for(future.done, timeout, f"the reply of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node: str, **values: Any) -> list[Any]:
        """Sets parameters through the node's set_parameters service; returns the results."""
        request = SetParameters.Request(
            parameters=[
                ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value())
                for k, v in values.items()
            ]
        )
        return self.call(SetParameters, f"/{node}/set_parameters", request).results

    def trigger(self, name: str, timeout: float = 300.0) -> Trigger.Response:
        return self.call(Trigger, name, Trigger.Request(), timeout)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


def config_search_paths() -> list[Path]:
    """Where the shipped parameter files live: the checkout, the ament share directory, then
    ``<sys.prefix>/share/mppi_ros`` (:func:`mppi_ros.share.share_search_paths`)."""
    return share_search_paths("config")


def shipped_parameters(filename: str) -> dict[str, dict[str, Any]]:
    """``{node: parameters}`` of a shipped ``config/<filename>`` (empty when not found)."""
    for folder in config_search_paths():
        path = folder / filename
        if path.exists():
            data = yaml.safe_load(path.read_text()) or {}
            return {node: dict(body.get("ros__parameters", {})) for node, body in data.items()}
    return {}


@dataclasses.dataclass(frozen=True)
class GraphSpeed:
    """How the graph's reference advances (``--speed-profile``, ``--speed-scale``,
    ``--reference-speed`` of ``mppi-ros demo`` and ``mppi-ros bench ros``).

    Attributes:
        profile: ``constant`` (the shipped untimed path: the controller's ``reference_speed``
            throughout), ``track`` or ``friction`` (a timed path along that profile, see the
            track publisher's ``speed_profile``).
        scale: The controller's ``speed_scale``.
        reference_speed: The constant speed, or the cap of a profile (m/s); None keeps the
            controller's configured value (the model's trained one by default).
    """

    profile: str = "constant"
    scale: float = 1.0
    reference_speed: float | None = None

    def apply(self, publisher: dict[str, Any], controller: dict[str, Any]) -> None:
        """Sets the track publisher's and the controller's parameters for this speed law."""
        if self.reference_speed is not None:
            controller["reference_speed"] = float(self.reference_speed)
        controller["speed_scale"] = float(self.scale)
        if self.profile != "constant":
            # The controller caps the profile at its own reference_speed; the path carries it
            # uncapped unless a cap was asked for.
            publisher.update(
                timed=True,
                speed_profile=self.profile,
                reference_speed=float(self.reference_speed or _UNCAPPED_SPEED),
            )


_UNCAPPED_SPEED = 100.0  # m/s: the controller's reference_speed range ends here


def graph_parameters(
    track: str,
    controller: str,
    control_rate: float,
    command_type: str | None,
    model_path: str = "",
    controller_params: dict[str, Any] | None = None,
    sim_params: dict[str, Any] | None = None,
    speed: GraphSpeed | None = None,
    vehicle: str = "sim",
) -> dict[str, dict[str, Any]]:
    """Parameters of the three nodes: the shipped ``config/sim.yaml`` and
    ``config/<controller>.yaml`` with this run's values on top (the controller autostarts);
    ``controller_params`` win over ``speed``. ``vehicle`` ``f1tenth`` takes the controller's
    and the track publisher's from ``config/f1tenth.yaml`` and runs the simulator as the
    F1TENTH gym bridge (no actuation delay). ``command_type`` None: the file's (``array``
    when it names none)."""
    if vehicle not in VEHICLES:
        raise ValueError(f"unknown vehicle {vehicle!r}; valid: {', '.join(VEHICLES)}")
    shipped = shipped_parameters("sim.yaml")
    ctrl = shipped_parameters(f"{controller}.yaml").get("mppi_controller", {})
    if vehicle == "f1tenth":
        f1tenth = shipped_parameters("f1tenth.yaml")
        ctrl = f1tenth["mppi_controller"]
        shipped["track_publisher"] = f1tenth["track_publisher"]
        shipped["vehicle_simulator"].update(command_delay_steps=[0, 0])
    command_type = command_type or ctrl.get("command_type", "array")
    ctrl.update(
        controller=controller,
        control_rate=float(control_rate),
        command_type=command_type,
        autostart=True,
    )
    if model_path:
        ctrl["model_path"] = model_path
    publisher = shipped.get("track_publisher", {})
    publisher.update(track=track)
    (speed or GraphSpeed()).apply(publisher, ctrl)
    ctrl.update(controller_params or {})
    sim = shipped.get("vehicle_simulator", {})
    sim.update(track=track, command_type=command_type, **(sim_params or {}))
    # The controller knows its vehicle's actuation delays: here, the simulator's.
    steps, dt = sim.get("command_delay_steps", [0]), float(sim.get("dt", 0.01))
    ctrl.setdefault("actuation_delays", [float(n) * dt for n in steps])
    return {"track_publisher": publisher, "vehicle_simulator": sim, "mppi_controller": ctrl}


@contextlib.contextmanager
def driving_graph(
    params: dict[str, dict[str, Any]],
    command_type: str,
    log_dir: Path,
    startup_timeout: float,
    log: Callable[[str], None] = lambda _: None,
    allocator: str = "auto",
    args: dict[str, tuple[str, ...]] | None = None,
    setup: Callable[[Monitor], None] = lambda _: None,
    record: Path | None = None,
    topics: VehicleTopics = VehicleTopics(),
) -> Iterator[tuple[NodeProcesses, Monitor]]:
    """Starts the node processes and a monitor, waits until the controller drives and resets
    the car to the start line; on exit stops everything (``processes.exit_codes``). The
    controller runs with heap ``allocator``
    (:func:`mppi_ros.realtime.memory.allocator_environment`); ``args``: extra ``--ros-args``
    per node (remappings); ``setup`` runs on the monitor before the graph must drive;
    ``record``: an MCAP file of the run (odom, cmd, the paths, diagnostics, prediction, each
    step's input, the controller's parameters: what ``mppi-ros replay`` reads);
    ``topics``: the vehicle's odometry and command topics (the controller and the simulator
    are remapped onto them).
    """
    env = {"mppi_controller": allocator_environment(allocator)}
    domain = pick_domain_id()
    log(f"starting {', '.join(params)} (ROS_DOMAIN_ID={domain})")
    args = dict(args or {})
    for node in ("mppi_controller", "vehicle_simulator"):
        args[node] = (*args.get(node, ()), *topics.ros_args())
    processes = NodeProcesses(params, domain, log_dir, env, args)
    ctrl_params = params.get("mppi_controller")
    monitor = Monitor(domain, command_type, record=record, topics=topics, parameters=ctrl_params)
    try:
        setup(monitor)
        wait_until_driving(monitor, processes, startup_timeout)
        reply = monitor.trigger("/vehicle_simulator/reset")
        if not reply.success:
            raise RuntimeError(f"simulator reset failed: {reply.message}")
        yield processes, monitor
    finally:
        monitor.close()
        processes.stop()


def wait_until_driving(monitor: Monitor, processes: NodeProcesses, timeout: float) -> None:
    """Waits for the controller's loop to run with a clear watchdog.

    Fails fast: on a failed configure (its log line, or a lifecycle event leaving
    ``configuring`` for any state but ``inactive``) and on a node process that exits.

    Raises:
        ConfigureFailedError: The controller's configure failed (one line: the reason).
        RuntimeError: A node process exited (with the end of its output).
        TimeoutError: The controller did not drive within ``timeout`` seconds.
    """
    name = monitor.controller
    controller = processes.processes.get(name)
    failed_at: float | None = None  # when a lifecycle event said configure failed

    def check_configure() -> None:
        nonlocal failed_at
        if controller is None:
            return
        exited = not controller.alive()
        reason = configure_failure(controller.log(), complete=exited)
        if reason is None and monitor.configure_failed():
            failed_at = time.monotonic() if failed_at is None else failed_at
            if exited or time.monotonic() - failed_at > _REASON_GRACE_S:
                reason = "the configure transition failed without a logged reason"
        if reason is not None:
            raise ConfigureFailedError(name, reason, controller.log_path)

    def ready() -> bool:
        check_configure()
        dead = processes.dead()
        if dead:
            logs = "\n".join(f"--- {n}\n{processes.log(n)[-2000:]}" for n in dead)
            raise RuntimeError(f"node process(es) {dead} exited:\n{logs}")
        diag = monitor.diagnostic(name)
        return diag.get("watchdog") == "ok" and float(diag.get("cycles", 0)) > 0

    try:
        monitor.wait_for(ready, timeout, "the controller to drive (watchdog ok)")
    except TimeoutError as err:  # say what was seen, so that a failed start can be told apart
        last = monitor.diagnostic(name) or "none"
        raise TimeoutError(
            f"{err}; messages seen: {monitor.message_counts()}; controller diagnostic: {last}"
        ) from None
