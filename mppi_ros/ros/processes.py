"""The node graph's processes: each node a ``python -m`` subprocess on an isolated DDS domain.

Every process gets the same ``ROS_DOMAIN_ID`` and localhost-only discovery, so parallel runs
never see each other. Parameters reach the nodes as ``--ros-args --params-file`` YAML files,
exactly as ``ros2 run`` / ``ros2 launch`` would pass them. Nothing here imports ROS: the
nodes run in the child processes, this side only starts, watches and stops them.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

# The module each node of the graph runs as ``python -m MODULE``.
NODE_MODULES = {
    "track_publisher": "mppi_ros.ros.track_publisher_node",
    "vehicle_simulator": "mppi_ros.ros.simulator_node",
    "mppi_controller": "mppi_ros.ros.controller_node",
    "fault_relay": "mppi_ros.ros.fault_relay_node",  # mppi-ros bench faults
}


# What the controller logs before the one-sentence reason of a failed configure
# (mppi_ros.ros.controller_node.ControllerNode.on_configure).
CONFIGURE_FAILED = "configure failed: "


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
    the ``with`` block stops the process: SIGTERM first, SIGKILL after the timeout.

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
        """Sends SIGTERM once, without waiting (a second one would cut the node's own shutdown
        short). The nodes treat it as SIGINT (brake, shut down, exit); unlike SIGINT, it also
        ends a process still importing its modules: Python's own SIGINT handler raises
        KeyboardInterrupt there, and in two nodes of a loaded run it was lost (they started,
        spun, and were killed 10 s later)."""
        if self.alive() and not self._interrupted:
            self._interrupted = True
            self._process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> int:
        """Sends SIGTERM, SIGKILL after ``timeout`` s; returns the exit status. A process that
        outlives ``timeout`` first gets SIGUSR1: the nodes answer it by writing every thread's
        stack to their log (``faulthandler``), which shows where the shutdown hung."""
        if self.alive():
            self.interrupt()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.send_signal(signal.SIGUSR1)
                time.sleep(0.5)
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
        args: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``env``: extra environment variables per node name; ``args``: extra ``--ros-args``
        per node name (remappings)."""
        self.log_dir = Path(log_dir)
        self.params_file = write_params_file(self.log_dir / "params.yaml", params)
        self.exit_codes: dict[str, int | None] = {}
        self.processes = {
            name: NodeProcess(
                NODE_MODULES[name],
                self.params_file,
                domain_id,
                extra_args=(args or {}).get(name, ()),
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
        """SIGTERM to every node at once, then each gets up to ``grace_s`` before SIGKILL."""
        for proc in self.processes.values():
            proc.interrupt()
        self.exit_codes = {n: p.stop(grace_s) for n, p in self.processes.items()}
        return self.exit_codes
