"""Helpers for tests that run real ROS 2 nodes as separate processes over real DDS.

Each test module takes its own DDS domain (:func:`unique_domain_id`) with discovery limited to
this machine, starts nodes with :class:`NodeProcess` from a parameter file
(:func:`write_params`), and talks to them from an in-process node made by
:func:`ros_context`, which uses its own rclpy context so it never touches the global one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import yaml

# Fast DDS derives its ports from the domain id; 0..101 are safe on Linux. 0 is the default
# domain that developers use interactively, so tests stay off it.
_FIRST_DOMAIN, _LAST_DOMAIN = 1, 101
_domain_counter = itertools.count()


def unique_domain_id() -> int:
    """A domain id in 1..101 that differs between calls and between concurrent processes.

    Derived from the process id and a per-process counter, so parallel test runs (and several
    modules of one run) land on different domains.
    """
    span = _LAST_DOMAIN - _FIRST_DOMAIN + 1
    return _FIRST_DOMAIN + (os.getpid() * 7 + next(_domain_counter)) % span


def ros_environment(domain_id: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) set up for an isolated ROS 2 domain.

    Sets ``ROS_DOMAIN_ID`` and localhost-only discovery (``ROS_AUTOMATIC_DISCOVERY_RANGE``;
    the deprecated ``ROS_LOCALHOST_ONLY`` is removed so Jazzy does not warn about it), and
    unbuffered Python output so logs are complete when a process is killed.
    """
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


def write_params(path: str | os.PathLike, node_name: str, params: dict) -> Path:
    """Writes ``{node_name: {"ros__parameters": params}}`` as a ROS 2 parameter file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({node_name: {"ros__parameters": params}}, sort_keys=False))
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
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix=f"{module.rsplit('.', 1)[-1]}-", suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)
        self.command = [sys.executable, "-m", module, "--ros-args"]
        if params_file is not None:
            self.command += ["--params-file", str(params_file)]
        self.command += list(extra_args)
        child_env = ros_environment(domain_id)
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

    def stop(self, timeout: float = 10.0) -> int:
        """Sends SIGINT (like Ctrl-C), SIGKILL after ``timeout`` s; returns the exit status."""
        if self.alive():
            self._process.send_signal(signal.SIGINT)
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


class RosTestContext:
    """An rclpy context of its own with one node and an executor to spin it.

    Attributes:
        context: The rclpy context.
        node: A node created in that context.
        executor: A single-threaded executor of that context, with ``node`` added.
    """

    def __init__(self, context, node, executor) -> None:
        self.context = context
        self.node = node
        self.executor = executor

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spins until ``predicate()`` is true; returns False if ``timeout`` s pass first."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0.0:
                return False
            self.executor.spin_once(timeout_sec=min(remaining, 0.05))

    def spin_for(self, duration: float) -> None:
        """Spins for ``duration`` seconds."""
        self.spin_until(lambda: False, duration)

    def wait_for_future(self, future, timeout: float):
        """Spins until ``future`` (a service or parameter call) is done; returns its result.

        Raises:
            TimeoutError: If it is not done within ``timeout`` seconds.
        """
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f"no reply within {timeout} s")
        return future.result()


@contextlib.contextmanager
def ros_context(domain_id: int, node_name: str = "test_probe") -> Iterator[RosTestContext]:
    """Initialises rclpy in a fresh context on ``domain_id`` and yields a :class:`RosTestContext`.

    Discovery of this process is limited to localhost like that of :class:`NodeProcess`
    children (``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set in this process's environment if unset;
    rmw reads it when the context starts). Everything is shut down at exit.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = None
    executor = None
    try:
        node = rclpy.create_node(node_name, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        yield RosTestContext(context, node, executor)
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
