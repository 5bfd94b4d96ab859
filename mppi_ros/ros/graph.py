"""Runs the node graph (track publisher, simulator, controller) as separate processes and
watches it from a monitor node: used by ``mppi-ros demo``, ``mppi-ros bench ros`` and tests.

Every process gets the same ``ROS_DOMAIN_ID`` and localhost-only discovery, so parallel runs
never see each other. Parameters reach the nodes as ``--ros-args --params-file`` YAML files,
exactly as ``ros2 run`` / ``ros2 launch`` would pass them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import TransitionEvent
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from mppi_ros.allocator import allocator_environment
from mppi_ros.ros import conversions
from mppi_ros.ros.common import make_executor
from mppi_ros.share import share_search_paths

NODE_MODULES = {
    "track_publisher": "mppi_ros.ros.track_publisher_node",
    "vehicle_simulator": "mppi_ros.ros.simulator_node",
    "mppi_controller": "mppi_ros.ros.controller_node",
}


# What the controller logs before the one-sentence reason of a failed configure
# (mppi_ros.ros.controller_node.ControllerNode.on_configure).
CONFIGURE_FAILED = "configure failed: "
# How long a configure failure seen as a lifecycle event waits for its reason in the log.
_REASON_GRACE_S = 2.0


class ConfigureFailedError(RuntimeError):
    """A node's configure transition failed; ``str(error)`` is one line naming the cause.

    Attributes:
        node: The node name.
        reason: Why, as the node logged it.
        log_path: The node's output, or ``None``.
    """

    def __init__(self, node: str, reason: str, log_path: Path | None = None) -> None:
        self.node = node
        self.reason = reason
        self.log_path = log_path
        super().__init__(f"{node}: {CONFIGURE_FAILED}{reason}")


def configure_failure(log_text: str, complete: bool = False) -> str | None:
    """The reason of the first failed configure in a node's output, or ``None``.

    Args:
        log_text: The node's output so far.
        complete: The output is final (the process exited): an unterminated last line counts.

    Returns:
        The text after ``configure failed: `` up to the end of its line.
    """
    start = log_text.find(CONFIGURE_FAILED)
    if start < 0:
        return None
    start += len(CONFIGURE_FAILED)
    end = log_text.find("\n", start)
    if end < 0:
        if not complete:
            return None  # still being written
        end = len(log_text)
    return log_text[start:end].strip() or None


# Fast DDS derives its ports from the domain id; 1..101 are safe on Linux (0, the default
# domain developers use interactively, is left alone).
_FIRST_DOMAIN, _LAST_DOMAIN = 1, 101
_domain_counter = itertools.count()


def domain_range() -> tuple[int, int]:
    """The DDS domains :func:`pick_domain_id` draws from: ``$MPPI_ROS_DOMAIN_RANGE``
    (``LO-HI``, inclusive; give concurrent runs disjoint ranges) or 1-101.

    Raises:
        ValueError: For a malformed range or one outside 0-232.
    """
    text = os.environ.get("MPPI_ROS_DOMAIN_RANGE", "")
    if not text:
        return _FIRST_DOMAIN, _LAST_DOMAIN
    try:
        lo, hi = (int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"MPPI_ROS_DOMAIN_RANGE must be LO-HI, got {text!r}") from None
    if not 0 <= lo <= hi <= 232:
        raise ValueError(f"MPPI_ROS_DOMAIN_RANGE must lie within 0-232, got {text!r}")
    return lo, hi


def pick_domain_id() -> int:
    """A DDS domain that differs between calls and between concurrent processes (pid-based),
    from :func:`domain_range`."""
    first, last = domain_range()
    return first + (os.getpid() * 7 + next(_domain_counter)) % (last - first + 1)


def ros_env(domain_id: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) set up for an isolated, localhost-only domain.

    The deprecated ``ROS_LOCALHOST_ONLY`` is removed so Jazzy does not warn about it; output
    is unbuffered so logs are complete when a process is killed.
    """
    env = dict(os.environ if base is None else base)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
    )
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


def write_params_file(path: Path, params: dict[str, dict[str, Any]]) -> Path:
    """Writes ``{node: {"ros__parameters": values}}`` YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump({n: {"ros__parameters": v} for n, v in params.items()}, sort_keys=False)
    )
    return path


class NodeProcess:
    """A node module run as ``python -m MODULE --ros-args --params-file FILE`` (a context manager).

    Output (stdout and stderr) goes to ``log_path`` (a temporary file when not given). Leaving
    the ``with`` block stops the process: SIGINT first, SIGKILL after the timeout.

    Args:
        module: Importable module with a ``main()`` (e.g. ``mppi_ros.ros.simulator_node``).
        params_file: Parameter file, or ``None`` for the node's defaults.
        domain_id: ROS domain of the process.
        extra_args: More ``--ros-args`` arguments, e.g. ``("-r", "__node:=sim2")``.
        env: Extra environment variables (applied last).
        log_path: Where to write the process output.
    """

    def __init__(
        self,
        module: str,
        params_file: str | os.PathLike | None,
        domain_id: int,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike | None = None,
    ) -> None:
        self.module = module
        self.domain_id = domain_id
        self._interrupted = False
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix=f"{module.rsplit('.', 1)[-1]}-", suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)
        self.command = [sys.executable, "-m", module, "--ros-args"]
        if params_file is not None:
            self.command += ["--params-file", str(params_file)]
        self.command += list(extra_args)
        child_env = ros_env(domain_id)
        child_env.update(env or {})
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=child_env
            )

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status, or ``None`` while the process runs."""
        return self._process.poll()

    def alive(self) -> bool:
        return self._process.poll() is None

    def wait(self, timeout: float) -> int:
        """Waits for the process to exit by itself; returns its exit status.

        Raises:
            subprocess.TimeoutExpired: If it is still running after ``timeout`` seconds.
        """
        return self._process.wait(timeout)

    def log(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """Waits until ``text`` appears in the output (False on time-out or process exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if not self.alive():
                return text in self.log()
            time.sleep(0.05)
        return False

    def interrupt(self) -> None:
        """Sends SIGINT (like Ctrl-C) once, without waiting (a second one would cut the
        node's own shutdown short)."""
        if self.alive() and not self._interrupted:
            self._interrupted = True
            self._process.send_signal(signal.SIGINT)

    def stop(self, timeout: float = 10.0) -> int:
        """Sends SIGINT, SIGKILL after ``timeout`` s; returns the exit status."""
        if self.alive():
            self.interrupt()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.returncode}"
        return f"NodeProcess({self.module}, domain {self.domain_id}, {state}, log {self.log_path})"


class NodeProcesses:
    """The graph's node processes (one :class:`NodeProcess` per node, logs in ``log_dir``)."""

    def __init__(
        self,
        params: dict[str, dict[str, Any]],
        domain_id: int,
        log_dir: Path,
        env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """``env``: extra environment variables per node name."""
        self.log_dir = Path(log_dir)
        self.params_file = write_params_file(self.log_dir / "params.yaml", params)
        self.exit_codes: dict[str, int | None] = {}
        self.processes = {
            name: NodeProcess(
                NODE_MODULES[name],
                self.params_file,
                domain_id,
                env=(env or {}).get(name),
                log_path=self.log_dir / f"{name}.log",
            )
            for name in params
        }

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def dead(self) -> list[str]:
        return [n for n, p in self.processes.items() if not p.alive()]

    def log(self, name: str) -> str:
        return self.processes[name].log()

    def stop(self, grace_s: float = 10.0) -> dict[str, int | None]:
        """SIGINT to every node at once, then each gets up to ``grace_s`` before SIGKILL."""
        for proc in self.processes.values():
            proc.interrupt()
        self.exit_codes = {n: p.stop(grace_s) for n, p in self.processes.items()}
        return self.exit_codes


@dataclasses.dataclass
class Recording:
    """What the monitor saw (times are the monitor's ``time.time()``)."""

    odom: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)
    cmd: list[tuple[float, float | None]] = dataclasses.field(default_factory=list)
    timing: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    diagnostics: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    diagnostic_levels: dict[str, int] = dataclasses.field(default_factory=dict)
    diagnostic_messages: dict[str, str] = dataclasses.field(default_factory=dict)
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


class Monitor:
    """A node in its own context and thread recording odom, cmd, loop timing and diagnostics."""

    def __init__(self, domain_id: int, command_type: str, controller: str = "mppi_controller"):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("mppi_monitor", context=self.context)
        self.recording = Recording()
        self._lock = threading.Lock()
        self.controller = controller
        n = self.node
        n.create_subscription(Odometry, "odom", self._on_odom, qos_profile_sensor_data)
        n.create_subscription(
            conversions.command_message_class(command_type), "cmd", self._on_cmd, 100
        )
        n.create_subscription(
            Float64MultiArray, f"/{controller}/loop_timing", self._on_timing, 1000
        )
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        n.create_subscription(
            TransitionEvent, f"/{controller}/transition_event", self._on_transition, 10
        )
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
        with self._lock:
            for status in msg.status:
                name = status.name.split(":")[0]
                self.recording.diagnostics[name] = {kv.key: kv.value for kv in status.values}
                self.recording.diagnostic_levels[name] = (
                    int.from_bytes(status.level, "little")
                    if isinstance(status.level, bytes)
                    else int(status.level)
                )
                self.recording.diagnostic_messages[name] = status.message

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
    command_type: str,
    model_path: str = "",
    controller_params: dict[str, Any] | None = None,
    sim_params: dict[str, Any] | None = None,
    speed: GraphSpeed | None = None,
) -> dict[str, dict[str, Any]]:
    """Parameters of the three nodes: the shipped ``config/sim.yaml`` and
    ``config/<controller>.yaml`` with this run's values on top (the controller autostarts);
    ``controller_params`` win over ``speed``."""
    shipped = shipped_parameters("sim.yaml")
    ctrl = shipped_parameters(f"{controller}.yaml").get("mppi_controller", {})
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
    return {"track_publisher": publisher, "vehicle_simulator": sim, "mppi_controller": ctrl}


@contextlib.contextmanager
def driving_graph(
    params: dict[str, dict[str, Any]],
    command_type: str,
    log_dir: Path,
    startup_timeout: float,
    log: Callable[[str], None] = lambda _: None,
    allocator: str = "auto",
) -> Iterator[tuple[NodeProcesses, Monitor]]:
    """Starts the node processes and a monitor, waits until the controller drives and resets
    the car to the start line; on exit stops everything (``processes.exit_codes``). The
    controller runs with heap ``allocator`` (:func:`mppi_ros.allocator.allocator_environment`).
    """
    env = {"mppi_controller": allocator_environment(allocator)}
    domain = pick_domain_id()
    log(f"starting {', '.join(params)} (ROS_DOMAIN_ID={domain})")
    processes = NodeProcesses(params, domain, log_dir, env)
    monitor = Monitor(domain, command_type)
    try:
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
