"""Runs the node graph (track publisher, simulator, controller) as separate processes and
watches it from a monitor node: used by ``mppi-ros demo``, ``mppi-ros bench ros`` and tests.

Every process gets the same ``ROS_DOMAIN_ID`` and localhost-only discovery, so parallel runs
never see each other. Parameters reach the nodes as ``--ros-args --params-file`` YAML files,
exactly as ``ros2 run`` / ``ros2 launch`` would pass them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from mppi_ros.ros import conversions

NODE_MODULES = {
    "track_publisher": "mppi_ros.ros.track_publisher_node",
    "vehicle_simulator": "mppi_ros.ros.simulator_node",
    "mppi_controller": "mppi_ros.ros.controller_node",
}


def pick_domain_id() -> int:
    """A DDS domain for this run (0..101 are valid with the default port mapping)."""
    return 1 + (os.getpid() * 7 + int(time.monotonic() * 1000)) % 100


def ros_env(domain_id: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
    )
    return env


def write_params_file(path: Path, params: dict[str, dict[str, Any]]) -> Path:
    """Writes ``{node: {"ros__parameters": values}}`` YAML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({n: {"ros__parameters": v} for n, v in params.items()}))
    return path


class NodeProcesses:
    """The graph's node processes; ``stop()`` sends SIGINT, then SIGKILL after a grace time."""

    def __init__(self, params: dict[str, dict[str, Any]], domain_id: int, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.params_file = write_params_file(self.log_dir / "params.yaml", params)
        self.processes: dict[str, subprocess.Popen] = {}
        env = ros_env(domain_id)
        for name in params:
            log = open(self.log_dir / f"{name}.log", "w")
            self.processes[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    NODE_MODULES[name],
                    "--ros-args",
                    "--params-file",
                    str(self.params_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            self.processes[name].log_file = log

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def dead(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.poll() is not None]

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self, grace_s: float = 10.0) -> dict[str, int | None]:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace_s
        for proc in self.processes.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.log_file.close()
        return {n: p.returncode for n, p in self.processes.items()}


@dataclasses.dataclass
class Recording:
    """What the monitor saw (times are the monitor's ``time.time()``)."""

    odom: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)
    cmd: list[tuple[float, float | None]] = dataclasses.field(default_factory=list)
    timing: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    diagnostics: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    diagnostic_levels: dict[str, int] = dataclasses.field(default_factory=dict)
    diagnostic_messages: dict[str, str] = dataclasses.field(default_factory=dict)


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
        self.executor = SingleThreadedExecutor(context=self.context)
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

    def diagnostic(self, node: str) -> dict[str, str]:
        with self._lock:
            return dict(self.recording.diagnostics.get(node, {}))

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
    """Where the shipped parameter files live: the checkout, then the installed share."""
    return [
        Path(__file__).resolve().parents[2] / "config",
        Path(sys.prefix) / "share" / "mppi_ros" / "config",
    ]


def shipped_parameters(filename: str) -> dict[str, dict[str, Any]]:
    """``{node: parameters}`` of a shipped ``config/<filename>`` (empty when not found)."""
    for folder in config_search_paths():
        path = folder / filename
        if path.exists():
            data = yaml.safe_load(path.read_text()) or {}
            return {node: dict(body.get("ros__parameters", {})) for node, body in data.items()}
    return {}


def graph_parameters(
    track: str,
    controller: str,
    control_rate: float,
    command_type: str,
    model_path: str = "",
    controller_params: dict[str, Any] | None = None,
    sim_params: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Parameters of the three nodes: the shipped ``config/sim.yaml`` and
    ``config/<controller>.yaml`` with this run's values on top (the controller autostarts)."""
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
    ctrl.update(controller_params or {})
    sim = shipped.get("vehicle_simulator", {})
    sim.update(track=track, command_type=command_type, **(sim_params or {}))
    publisher = shipped.get("track_publisher", {})
    publisher.update(track=track)
    return {"track_publisher": publisher, "vehicle_simulator": sim, "mppi_controller": ctrl}


def wait_until_driving(monitor: Monitor, processes: NodeProcesses, timeout: float) -> None:
    """Waits for the controller's loop to run with a clear watchdog (fails fast on a crash)."""

    def ready() -> bool:
        dead = processes.dead()
        if dead:
            logs = "\n".join(f"--- {n}\n{processes.log(n)[-2000:]}" for n in dead)
            raise RuntimeError(f"node process(es) {dead} exited:\n{logs}")
        diag = monitor.diagnostic("mppi_controller")
        return diag.get("watchdog") == "ok" and float(diag.get("cycles", 0)) > 0

    monitor.wait_for(ready, timeout, "the controller to drive (watchdog ok)")
