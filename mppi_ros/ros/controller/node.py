"""``mppi_controller``: lifecycle node running a learned or classic controller at a fixed rate.

configure: load the bundle (or classic controller), compile and warm up, create publishers and
subscriptions. activate: start the control loop. deactivate / cleanup / shutdown / error:
publish a brake command and release what the state owns. Threads: the executor's callbacks
only store the latest message (:mod:`.inputs`); the control loop runs in a thread of its own
at absolute deadlines; ``~/reload_model``, whose reply waits for the swap, is served on a
helper thread; model and shape changes compile in a worker thread and swap in between two
control cycles (:mod:`.swap`); a worker builds the reference; :mod:`.diagnostics` has a thread.
See :mod:`.parameters_handler`, :mod:`.commands`, :mod:`.safe_stop`, :mod:`mppi_ros.engine`."""

from __future__ import annotations

import concurrent.futures
import faulthandler
import math
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_srvs.srv import Trigger

from mppi_ros.core.bundles import BundleError
from mppi_ros.core.catalog import controller_names
from mppi_ros.engine import CompiledController, EngineSpec, compile_controller
from mppi_ros.realtime import (
    RealtimeSettings,
    configure_process,
    make_control_thread_realtime,
    prepare_process,
    settle_after_compile,
)
from mppi_ros.realtime.jax_runtime import persistent_cache_writes
from mppi_ros.realtime.scheduling import CycleGate, next_deadline, open_stall_log
from mppi_ros.ros import conversions
from mppi_ros.ros.common import (
    RELIABLE_LATEST,
    BlockingServices,
    answer_refused_transitions,
    exit_now,
    init_with_own_signals,
    make_executor,
    spin_until,
)
from mppi_ros.ros.controller.commands import CommandLimits, CommandOutput
from mppi_ros.ros.controller.diagnostics import (
    DiagnosticsThread,
    Stages,
    blocked_stages,
    controller_status,
)
from mppi_ros.ros.controller.health import LoopStats, Watchdog, rate_fault
from mppi_ros.ros.controller.inputs import InputMonitor
from mppi_ros.ros.controller.model_checks import check_model_path, check_spec_changes
from mppi_ros.ros.controller.parameters import actuation_delays_problem
from mppi_ros.ros.controller.parameters_handler import ParametersHandler
from mppi_ros.ros.controller.swap import Build, ModelSwap
from mppi_ros.ros.controller.visualisation import Visualisation

NODE_NAME = "mppi_controller"
SWAP_TIMEOUT_S = 300.0


class ControllerNode(LifecycleNode):
    """The ``mppi_controller`` lifecycle node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        answer_refused_transitions(self)
        self.cycle_gate = CycleGate()  # background threads yield to control cycles through it
        self.params = ParametersHandler(
            self, self._check_spec_changes, self._rebuild, lambda: self._swap.active
        )
        self._swap = ModelSwap(
            self._prepare_build,
            self.cycle_gate,
            self.get_logger(),
            int(self.get_parameter("kept_replaced_steps").value),
        )
        self.stages = Stages()  # heartbeats and long operations, for the diagnostics
        self.inputs = InputMonitor(self, self.params.live, self.cycle_gate, self.stages)
        self._track_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._cstate, self._stop_reference = None, self.inputs.reference.xy
        self._steering_measured, self._state_steering = False, 0.0
        self._watchdog = Watchdog()
        self._stats = LoopStats(1.0 / float(self.get_parameter("control_rate").value))
        self._driving_since = -math.inf  # see _overrun
        self._loop_thread: threading.Thread | None = None
        self._diagnostics_timer, self._entities = None, []
        self._diagnostics_period = 1.0 / float(self.get_parameter("diagnostics_rate").value)
        self._output: CommandOutput | None = None
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._on_autostart)

    @property
    def _controller(self) -> str:
        return self.get_parameter("controller").value  # read-only

    def _realtime(self) -> RealtimeSettings:
        cpus = self.params.value("cpu_affinity")
        return RealtimeSettings(
            cpu_affinity=None if cpus is None else tuple(cpus),
            priority=int(self.get_parameter("realtime_priority").value),
        )

    # ------------------------------------------------------------------ lifecycle

    def _on_autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        command_type = self.get_parameter("command_type").value
        controller = self.get_parameter("controller").value
        try:
            configure_process(self._realtime())
            cmd_type = conversions.command_message_class(command_type)
            if controller not in controller_names():
                raise ValueError(
                    f"unknown controller {controller!r}; valid: {', '.join(controller_names())}"
                )
            compiled = compile_controller(self._spec_from_parameters())
            tuning = self.params.tuning_for(compiled)
            delays = self.params.live["actuation_delays"]
            reason = actuation_delays_problem(delays, compiled.controller.model.control_dim)
            if reason is not None:
                raise ValueError(reason)
        except (ValueError, BundleError) as err:
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        settle_after_compile(self._realtime())
        self.get_logger().info(
            f"configured {compiled.model_id} ({compiled.controller.name}) in "
            f"{compiled.compile_seconds:.1f} s"
        )
        build_pool, self._track_pool = (
            concurrent.futures.ThreadPoolExecutor(1, name, initializer=self.cycle_gate.install)
            for name in ("mppi_build", "mppi_track")
        )
        self._swap.start(compiled, build_pool)
        self._output = CommandOutput(
            self.create_publisher(cmd_type, "cmd", RELIABLE_LATEST),
            self._stats.period,
            self.params.live,
        )
        self._output.limits = CommandLimits.of(compiled)
        self.params.tuning = tuning
        self.params.show_model_tuning(compiled, tuning)
        self._create_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._output.steering = 0.0
        self._output.start()
        self._cstate = self._swap.active.init_state(int(self.get_parameter("seed").value))
        self._stats = LoopStats(self._stats.period)
        self._loop_stop = threading.Event()
        persistent_cache_writes(False)  # a cache write holds the GIL for a whole cycle
        self._loop_thread = threading.Thread(
            target=self._control_loop, name="mppi_control", daemon=True
        )
        self._loop_thread.start()
        self.get_logger().info(f"active at {1.0 / self._stats.period:.0f} Hz")
        return TransitionCallbackReturn.SUCCESS

    def _control_loop(self) -> None:
        """Ticks at absolute deadlines (no drift); an overrun skips to the next (missed)."""
        period = self._stats.period
        why_not = make_control_thread_realtime(self._realtime(), "mppi_control")
        if why_not is not None:
            self.get_logger().info(f"control thread keeps normal scheduling ({why_not})")
        deadline = time.monotonic()
        stall_log = open_stall_log()
        while not self._loop_stop.is_set():
            self._on_control_tick()
            deadline = next_deadline(deadline, period, time.monotonic())
            self.cycle_gate.cycle_ended(deadline)
            if stall_log is not None:  # fires unless the next cycle ends within its period
                faulthandler.dump_traceback_later(
                    deadline + period - time.monotonic(), file=stall_log
                )
            self._loop_stop.wait(max(deadline - time.monotonic(), 0.0))

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_control()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_control()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    on_shutdown = on_cleanup  # the same brake and release

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error("lifecycle error: braking and releasing resources")
        self._stop_control()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def shutdown_cleanly(self) -> None:
        """Process exit: stop the loop, brake (whatever the lifecycle state), await the ack."""
        self._stop_control()
        if self._output is not None and not self._output.flush(1.0):
            self.get_logger().warning("the exit brake was not acknowledged within 1 s")

    def _stop_control(self) -> None:
        if self._loop_thread is not None:
            self._loop_stop.set()
            self._loop_thread.join(timeout=2.0)
            self._loop_thread = None
            self.stages.forget("control")
            self.cycle_gate.stop()
            persistent_cache_writes(True)
            faulthandler.cancel_dump_traceback_later()
        self._swap.retired.clear()
        if self._output is not None:
            self._brake(self.get_clock().now().to_msg(), last=True)

    def _brake(self, stamp, state=None, last: bool = False) -> None:
        """The safe stop along the last reference (:mod:`.safe_stop`); ``last``: until activated."""
        active, tuning = self._swap.active, self.params.tuning
        send = self._output.stop if last else self._output.brake
        send(stamp, state, self._stop_reference, active, tuning)

    def _create_entities(self) -> None:
        self._visualisation = Visualisation(self)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._entities = self.inputs.subscribe(self._track_pool)
        # The reply waits for the swap: served on a thread of its own, so that odometry keeps
        # flowing through the node's executor meanwhile.
        self._blocking_services = BlockingServices(self, around=self.cycle_gate.cooperate)
        self._blocking_services.create_service(Trigger, "~/reload_model", self._on_reload_model)
        # The executor's heartbeat and housekeeping; the diagnostics have their own thread.
        self._diagnostics_timer = self.create_timer(
            self._diagnostics_period, self._on_housekeeping_timer
        )
        self._diagnostics = DiagnosticsThread(
            NODE_NAME,
            self._diagnostics_pub,
            self._diagnostics_period,
            self._status,
            lambda: self.get_clock().now().to_msg(),
            self.cycle_gate.cooperate,
        )

    def _release(self) -> None:
        for sub in self._entities:
            self.destroy_subscription(sub)
        self._entities = []
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics.stop()
            self._diagnostics_timer = None
            self.stages.forget("executor")
        if self._output is not None:
            for pub in (self._output.publisher, *self._visualisation.publishers):
                self.destroy_publisher(pub)
            self.destroy_publisher(self._diagnostics_pub)
            self._blocking_services.destroy()
            self._output = None
        if self._track_pool is not None:
            self._track_pool.shutdown(wait=False, cancel_futures=True)
        self._track_pool = None
        self._swap.release()
        self._cstate = None
        self.inputs.reset()

    # ------------------------------------------------------------------ models

    def _spec_from_parameters(self, **changes: Any) -> EngineSpec:
        get = lambda name: changes.get(name, self.get_parameter(name).value)
        return EngineSpec(
            controller=self.get_parameter("controller").value,
            model_path=get("model_path"),
            num_samples=int(get("num_samples")),
            horizon=int(get("horizon")),
            control_period=1.0 / float(self.get_parameter("control_rate").value),
            reference_points=int(self.get_parameter("reference_points").value),
            backend=get("backend"),
            config=tuple((n, self.get_parameter(n).value) for n in self.params.config_names),
        )

    def _install(self, build: Build) -> None:
        """Control thread, between cycles: what the swap brings, before it drives."""
        self.params.tuning, self._cstate = build.tuning, build.cstate
        self._output.limits = build.limits

    def _prepare_build(self, compiled: CompiledController) -> Build:
        """What the control thread needs to swap ``compiled`` in (on the build thread)."""
        return Build(
            compiled,
            self.params.tuning_for(compiled),
            compiled.init_state(int(self.get_parameter("seed").value)),
            CommandLimits.of(compiled),
        )

    def _rebuild(self, changes: dict[str, Any]) -> None:
        """Accepted model / shape / backend changes: a background build when they change
        what runs (a new ``model_path`` always reloads: the files may have changed)."""
        spec = self._spec_from_parameters(**changes)
        if spec != self._swap.active.spec or "model_path" in changes:
            self._swap.schedule(spec, f"change of {', '.join(sorted(changes))}")

    def _check_spec_changes(self, changes: dict[str, Any]) -> str | None:
        current = {n: self.get_parameter(n).value for n in ("model_path", "backend")}
        with self.stages.busy("model validation"):
            return check_spec_changes(self._controller, changes, current)

    def _on_reload_model(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        """Re-validates and reloads ``model_path``; replies once the swap happened (or failed).

        Runs on the :class:`BlockingServices` thread, so waiting blocks no subscription.
        """
        if self._swap.active is None:
            response.success, response.message = False, "not configured"
            return response
        reason = check_model_path(self._controller, self.get_parameter("model_path").value)
        if reason is not None:
            response.success, response.message = False, reason
            return response
        done = self._swap.schedule(self._spec_from_parameters(), "reload_model")
        if not done.wait(SWAP_TIMEOUT_S):
            response.success, response.message = False, "timed out waiting for the swap"
        elif self._swap.last_error:
            response.success, response.message = False, self._swap.last_error
        else:
            response.success = True
            response.message = f"running {self._swap.active.model_id}"
        return response

    # ------------------------------------------------------------------ control loop

    def _on_control_tick(self) -> None:
        start, wall = time.monotonic(), time.time()
        stamp = self.get_clock().now().to_msg()
        self._stats.tick(start)
        self.stages.beat("control", start)
        self._swap.take_ready(self._install)
        active, output, tuning = self._swap.active, self._output, self.params.tuning
        checked = self.inputs.check(start, active.controller.model, output.steering)
        if checked.steering is not None:
            output.steering = self._state_steering = checked.steering
            self._steering_measured = checked.steering_measured
        fault, result = checked.fault, None
        if fault is None:
            try:
                now = conversions.time_to_seconds(stamp)
                state = output.predict(active, checked.state, checked.measured_at, now, tuning)
                track = checked.reference.arrays
                result, cstate = active.step(self._cstate, state, tuning, track)
            except Exception as err:
                fault = f"step_exception: {type(err).__name__}: {err}"
            else:
                if result.finite:
                    self._cstate = cstate
                else:
                    fault = "nonfinite_output: the controller returned NaN or inf"
                # Judged with the step run, so the rate measured is the driving loop's.
                fault = fault or self._overrun(start)
        if fault is not None and not fault.startswith("control_overrun"):
            self._driving_since = time.monotonic()  # braking cycles do not count (see _overrun)
        if fault is not None:  # a stop along the reference last driven on
            self._brake(stamp, checked.state)
            if self._watchdog.report(fault):
                self.get_logger().error(f"braking: {fault}")
            self._stats.record(time.monotonic() - start, None)
            return
        output.publish(result.action, state, stamp)
        self._stop_reference = checked.reference.xy
        end = time.monotonic()
        latency, data_age = end - start, end - self.inputs.latest.odom_received
        self._stats.record(latency, data_age)
        ended = self._watchdog.clear()
        if ended is not None:
            self.get_logger().info(f"recovered from: {ended}")
        self._publish_extras(result, state, wall, latency, data_age)
        self._cstate = active.prepare(self._cstate)  # next noise, off the measured path

    def _overrun(self, now: float) -> str | None:
        """A loop too starved to drive (see :func:`.health.rate_fault`)."""
        holding = (self._watchdog.cause or "").startswith("control_overrun")
        fraction = float(self.params.live["min_rate_fraction"])
        stats = self._stats
        return rate_fault(
            stats.tick_starts, now, stats.period, fraction, holding, self._driving_since
        )

    def _publish_extras(self, result, state, wall: float, latency: float, data_age: float) -> None:
        """Off the measured path: what has subscribers (see :mod:`.visualisation`)."""
        model = self._swap.active.controller.model
        self._visualisation.publish(
            result,
            state,
            (wall, latency, data_age),
            model.position_indices or (0, 1),
            self.params.live["frame_id"],
            lambda: self.get_clock().now().to_msg(),
        )

    # ------------------------------------------------------------------ diagnostics

    def _on_housekeeping_timer(self) -> None:
        self.stages.beat("executor")
        self.params.follow_swaps(self._swap)  # executor thread: rclpy's set_parameters rule

    def _status(self) -> DiagnosticStatus:
        """The status the diagnostics thread publishes (see :mod:`.diagnostics`)."""
        blocked = blocked_stages(
            self.stages, time.monotonic(), self._diagnostics_period, self._stats.period
        )
        steering = (self._state_steering, self._steering_measured)
        running = self._loop_thread is not None
        return controller_status(
            NODE_NAME,
            self._watchdog,
            self._swap,
            self._stats,
            steering,
            blocked,
            running,
            built=self._visualisation.built,
        )


def main(args: list[str] | None = None, node_class: type[ControllerNode] = ControllerNode) -> None:
    """Runs the node until SIGINT / SIGTERM, brakes and exits at once, whatever the background
    is doing (``node_class``: the node to run, for subclasses)."""
    prepare_process()  # before anything (a parameter check of a bundle) starts JAX
    stop = init_with_own_signals(args)  # the context outlives the brake command on the way out
    node = node_class()
    executor = make_executor()
    executor.add_node(node)
    try:
        # The executor's Python (callbacks) also yields to control cycles.
        spin_until(stop, executor, around=node.cycle_gate.cooperate())
    finally:
        if rclpy.ok():
            node.shutdown_cleanly()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    exit_now(0)
