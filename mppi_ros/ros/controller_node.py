"""``mppi_controller``: lifecycle node running a learned or classic controller at a fixed rate.

configure: load the bundle (or classic controller), compile and warm up, create publishers and
subscriptions. activate: start the control timer. deactivate / cleanup / shutdown / error:
publish a brake command and release what the state owns.

Threads: the executor's callbacks only store the latest message; the control loop runs in a
thread of its own at absolute deadlines; ``~/reload_model``, whose reply waits for the swap, is
served on a helper thread; model and shape changes compile in a worker thread and swap in
between two control cycles; the reference paths are turned into track arrays by a second
worker. The math is :mod:`mppi_ros.engine` / :mod:`mppi_ros.core` (no ROS there).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import faulthandler
import math
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import (
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    qos_profile_sensor_data,
)
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from mppi_ros.allocator import heap_allocator, release_free_heap
from mppi_ros.core.bundle import (
    LEARNED_CONTROLLERS,
    MODEL_CONTROLLERS,
    BundleError,
    resolve_model,
)
from mppi_ros.core.controllers import controller_names
from mppi_ros.core.tracks import TrackFormatError, track_from_polylines
from mppi_ros.engine import (
    BACKENDS,
    UNTIMED_SPEED,
    CompiledController,
    EngineSpec,
    compile_controller,
    load_matching_bundle,
    uses_horizon,
)
from mppi_ros.export.onnx_runtime import OnnxBundleError, read_onnx_spec
from mppi_ros.ros import conversions
from mppi_ros.ros.common import (
    LATCHED,
    RELIABLE_LATEST,
    BlockingServices,
    describe,
    init_with_own_signals,
    make_executor,
    spin_until,
)
from mppi_ros.ros.loop import (
    TUNING_PARAMETERS,
    CommandLimits,
    CycleGate,
    LoopStats,
    Watchdog,
    apply_tuning,
    freeze_heap,
    name_os_thread,
    next_deadline,
    pin_process,
    prioritise_threads,
    realtime_priority,
    split_retired,
    tuning_values,
)
from mppi_ros.runtime import (
    enable_compilation_cache,
    persistent_cache_writes,
    release_jax_caches,
    synchronous_cpu_dispatch,
)

NODE_NAME = "mppi_controller"
# Name prefix of XLA's CPU intra-op worker threads (they run part of every compiled step).
XLA_WORKER_THREADS = "tf_XLAEigen"
SWAP_TIMEOUT_S = 300.0
# Room (s) a JAX cache-eviction step needs before the next cycle: light ones (one traced
# function) measured <= 2 ms, heavy ones (a whole LRU cache) <= ~6 ms.
CACHE_EVICTION_ROOM_S = {False: 2.5e-3, True: 7.0e-3}
# How long a build waits for its swap before leaving the replaced controller to the next build.
SWAP_WAIT_S = 1.0


# name -> (default or a Parameter.Type for "taken from the model", descriptor).
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "controller": (
        "step_mppi",
        describe(
            "Controller to run: step_mppi, dpc, soft_mpcritic (learned, from a bundle) or mppi "
            "(classic).",
            read_only=True,
        ),
    ),
    "model_path": (
        "",
        describe(
            "Model bundle folder or name for learned controllers; empty: the shipped "
            "models/f1tenth_<controller>. Setting it swaps the model at runtime (validated, "
            "compiled in the background; the old model drives until the swap)."
        ),
    ),
    "backend": (
        "jax",
        describe(
            "Inference backend: jax (XLA) or onnx (the bundle's controller.onnx on "
            "onnxruntime, CUDA when available; learned controllers). Switching rebuilds in "
            "the background and swaps between two cycles, like a model swap.",
            constraints="one of: jax, onnx",
        ),
    ),
    "control_rate": (
        100.0,
        describe("Control loop rate (Hz).", read_only=True, float_range=(1.0, 1000.0)),
    ),
    "num_samples": (
        0,
        describe(
            "Samples K; 0 keeps the controller's default. Changing it recompiles in the "
            "background, then swaps.",
            int_range=(0, 262144),
        ),
    ),
    "horizon": (
        0,
        describe(
            "Horizon H (mppi and soft_mpcritic); 0 keeps the default. Changing it recompiles "
            "in the background, then swaps.",
            int_range=(0, 1000),
        ),
    ),
    "temperature": (
        Parameter.Type.DOUBLE,
        describe(
            "Softmax temperature lambda (> 0). Default: the model's trained value.",
            float_range=(1e-6, 1e6),
        ),
    ),
    "noise_std": (
        Parameter.Type.DOUBLE_ARRAY,
        describe(
            "Sampling std per control (one value broadcasts); learned controllers scale their "
            "learned spread by it. Default: the model's value."
        ),
    ),
    "q_weights": (
        Parameter.Type.DOUBLE_ARRAY,
        describe("Diagonal state-error weights (one per state entry). Default: the model's value."),
    ),
    "r_weights": (
        Parameter.Type.DOUBLE_ARRAY,
        describe("Diagonal control weights (one per control). Default: the model's value."),
    ),
    "border_weight": (
        Parameter.Type.DOUBLE,
        describe("Weight of squared border violations.", float_range=(0.0, 1e9)),
    ),
    "border_margin": (
        Parameter.Type.DOUBLE,
        describe(
            "Safety margin (m) kept between the car's side and the road edge (the allowed band "
            "is the road minus the car's half-width and this margin).",
            float_range=(-2.0, 2.0),
        ),
    ),
    "reference_speed": (
        Parameter.Type.DOUBLE,
        describe(
            "Speed (m/s) at which the reference advances: the cap of a timed reference "
            "path's speed profile, the speed of an untimed one.",
            float_range=(0.01, 100.0),
        ),
    ),
    "speed_scale": (
        Parameter.Type.DOUBLE,
        describe(
            "Multiplies the speed profile of a timed reference path (1 = as published).",
            float_range=(0.0, 2.0),
        ),
    ),
    "max_speed": (
        Parameter.Type.DOUBLE,
        describe(
            "Speed limit (m/s) of the state box (never above the vehicle's v_max).",
            float_range=(0.01, 100.0),
        ),
    ),
    "state_timeout": (
        0.1,
        describe(
            "Odometry older than this (s) triggers a brake and an ERROR diagnostic.",
            float_range=(0.001, 10.0),
        ),
    ),
    "steering_joint": (
        "steering",
        describe(
            "Joint of sensor_msgs/JointState on joint_states whose position (rad) is the "
            "measured steering angle; used while no older than state_timeout. Without it the "
            "node integrates its own steering commands. Empty: never subscribe.",
            read_only=True,
        ),
    ),
    "brake_decel": (
        5.0,
        describe("Deceleration (m/s^2) of the brake command.", float_range=(0.1, 50.0)),
    ),
    "target_lead_time": (
        0.05,
        describe(
            "ackermann / twist_stamped: targets = estimate + rate * lead time (match the "
            "actuator's servo time constant).",
            float_range=(0.001, 1.0),
        ),
    ),
    "command_type": (
        "array",
        describe(
            "cmd message type: ackermann (ackermann_msgs/AckermannDriveStamped), twist_stamped "
            "(geometry_msgs/TwistStamped: speed, yaw rate) or array (std_msgs/Float64MultiArray: "
            "raw control).",
            read_only=True,
            constraints="one of: ackermann, twist_stamped, array",
        ),
    ),
    "frame_id": (
        "map",
        describe(
            "Frame of odometry poses and reference paths; other frames are rejected.",
            read_only=True,
        ),
    ),
    "seed": (0, describe("Seed of the controller's sampling.", read_only=True)),
    "reference_points": (
        2048,
        describe(
            "Point count the reference is resampled to (fixes compiled shapes).",
            read_only=True,
            int_range=(16, 100000),
        ),
    ),
    "autostart": (
        False,
        describe(
            "Configure and activate on start-up (without a lifecycle manager).", read_only=True
        ),
    ),
    "cpu_affinity": (
        Parameter.Type.INTEGER_ARRAY,
        describe(
            "CPUs the whole node process (control thread, XLA workers, executor) may run on, "
            "applied at configure; unset: inherited. Give the controller a core of its own and "
            "keep other processes off it for the lowest jitter.",
            read_only=True,
        ),
    ),
    "realtime_priority": (
        50,
        describe(
            "SCHED_FIFO priority of the control thread (XLA's worker threads get one less); "
            "0 keeps normal scheduling. Needs root, CAP_SYS_NICE or an rtprio limit; without "
            "them the node logs why and runs with normal scheduling.",
            read_only=True,
            int_range=(0, 98),
        ),
    ),
    "kept_replaced_steps": (
        0,
        describe(
            "Replaced compiled steps of another shape (a previous num_samples, horizon or "
            "architecture) kept while the loop runs, so that changing back is instant (each "
            "holds ~23 MB for Step-MPPI K=1024). 0 frees each right after a cycle ends once "
            "its replacement drives (one GIL-held XLA teardown, ~12 ms). Beyond this many the "
            "oldest is freed; all are freed when the loop stops. A swap to a model of the same "
            "architecture shares the running step and frees no executable.",
            read_only=True,
            int_range=(0, 64),
        ),
    ),
    "diagnostics_rate": (
        2.0,
        describe("Rate (Hz) of /diagnostics messages.", read_only=True, float_range=(0.1, 100.0)),
    ),
}
REBUILD_PARAMETERS = ("model_path", "num_samples", "horizon", "backend")
LOOP_PARAMETERS = (
    "state_timeout",
    "frame_id",
    "command_type",
    "target_lead_time",
    "brake_decel",
)


@dataclasses.dataclass
class _Inputs:
    """Latest messages (written by subscription callbacks, read by the control tick)."""

    odom: Odometry | None = None
    odom_received: float = 0.0  # monotonic seconds
    odom_stamp: float = -math.inf
    out_of_order: bool = False
    reference: Path | None = None
    border_left: Path | None = None
    border_right: Path | None = None
    steering: float | None = None  # measured, from joint_states
    steering_received: float = -math.inf  # monotonic seconds


@dataclasses.dataclass(frozen=True)
class _Build:
    """A background build, ready to swap in: everything the control thread needs, so that
    the swap itself is a few assignments."""

    compiled: CompiledController
    tuning: Any
    cstate: Any
    limits: CommandLimits


class ControllerNode(LifecycleNode):
    """The ``mppi_controller`` lifecycle node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        # Tuning values given at start-up stay; the others follow the loaded model.
        self._user_tuning = {name for name in TUNING_PARAMETERS if self._value(name) is not None}
        self._internal_update = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Values read every cycle, cached (get_parameter takes a lock and builds objects).
        self._live = {name: self._value(name) for name in LOOP_PARAMETERS}
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._lock = threading.Lock()
        self._inputs = _Inputs()
        self._active: CompiledController | None = None
        self._pending: _Build | None = None
        # Replaced controllers, freed late (see the kept_replaced_steps parameter).
        self._retired: list[CompiledController] = []
        self._kept_replaced_steps = int(self.get_parameter("kept_replaced_steps").value)
        # Background threads (compiles, reference resampling, the executor) yield to cycles.
        self.cycle_gate = CycleGate()
        self._build_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._track_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._build_generation = 0
        self._swap_events: dict[int, threading.Event] = {}
        self._last_build_error = ""
        self._revert_requested = False
        self._tuning_shown_for: weakref.ref[CompiledController] | None = None
        self._limits: CommandLimits | None = None
        self._tuning = None
        self._tuning_values: dict[str, Any] = {}
        self._cstate = None
        self._track = None
        self._reference_fault: str | None = "no_reference: no reference path received yet"
        self._steering = 0.0
        self._steering_measured = False
        self._state_steering = 0.0
        self._speed_estimate = 0.0
        self._watchdog = Watchdog()
        self._stats = LoopStats(1.0 / float(self.get_parameter("control_rate").value))
        self._swaps = 0
        self._diagnostics_timer = None
        self._entities: list[Any] = []
        self._cmd_pub = None
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._on_autostart)

    def _value(self, name: str) -> Any:
        """A parameter's value; None while a model-default parameter is still unset."""
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    # ------------------------------------------------------------------ lifecycle

    def _on_autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        command_type = self.get_parameter("command_type").value
        try:
            cpus = self._value("cpu_affinity")
            if cpus is not None:
                pin_process(list(cpus))
            self._cmd_type = conversions.command_message_class(command_type)
            if self.get_parameter("controller").value not in controller_names():
                raise ValueError(
                    f"unknown controller {self.get_parameter('controller').value!r}; valid: "
                    f"{', '.join(controller_names())}"
                )
            compiled = compile_controller(self._spec_from_parameters())
        except (ValueError, BundleError) as err:
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        self._install(compiled)
        release_jax_caches()  # what tracing and lowering left (~95 MB), before the loop runs
        freeze_heap()
        release_free_heap()  # the compile's garbage (~50 MB measured) back to the OS
        priority = int(self.get_parameter("realtime_priority").value)
        if priority > 1:  # the compile has started XLA's intra-op thread pool
            prioritise_threads(XLA_WORKER_THREADS, priority - 1)
        self.get_logger().info(
            f"configured {compiled.model_id} ({compiled.controller.name}) in "
            f"{compiled.compile_seconds:.1f} s"
        )
        self._build_pool, self._track_pool = (
            concurrent.futures.ThreadPoolExecutor(1, name, initializer=self.cycle_gate.install)
            for name in ("mppi_build", "mppi_track")
        )
        self._create_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._steering = 0.0
        self._cstate = self._active.init_state(int(self.get_parameter("seed").value))
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
        """Ticks at absolute deadlines (no drift); an overrun skips to the next deadline and
        is counted as missed cycles by :class:`LoopStats`."""
        period = self._stats.period
        name_os_thread("mppi_control")
        why_not = realtime_priority(int(self.get_parameter("realtime_priority").value))
        if why_not is not None:
            self.get_logger().info(f"control thread keeps normal scheduling ({why_not})")
        deadline = time.monotonic()
        stall_log = _stall_log()
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

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_control()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error("lifecycle error: braking and releasing resources")
        self._stop_control()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def shutdown_cleanly(self) -> None:
        """Process exit: stop the loop and brake (whatever the lifecycle state)."""
        self._stop_control()

    def _stop_control(self) -> None:
        thread = getattr(self, "_loop_thread", None)
        if thread is not None:
            self._loop_stop.set()
            thread.join(timeout=2.0)
            self._loop_thread = None
            self.cycle_gate.stop()
            persistent_cache_writes(True)
            faulthandler.cancel_dump_traceback_later()
        self._retired.clear()
        if self._cmd_pub is not None:
            self._publish_brake()

    def _create_entities(self) -> None:
        self._cmd_pub = self.create_publisher(self._cmd_type, "cmd", RELIABLE_LATEST)
        self._prediction_pub = self.create_publisher(Path, "~/prediction", 1)
        self._timing_pub = self.create_publisher(Float64MultiArray, "~/loop_timing", 100)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        subs = [
            (Odometry, "odom", self._on_odom, qos_profile_sensor_data),
            (Path, "reference", self._on_reference, LATCHED),
            (Path, "border_left", self._on_border_left, LATCHED),
            (Path, "border_right", self._on_border_right, LATCHED),
        ]
        self._steering_joint = self.get_parameter("steering_joint").value  # read-only
        if self._steering_joint:
            subs.append(
                (JointState, "joint_states", self._on_joint_states, qos_profile_sensor_data)
            )
        self._entities = [self.create_subscription(t, topic, cb, qos) for t, topic, cb, qos in subs]
        # The reply waits for the swap: served on a thread of its own, so that odometry keeps
        # flowing through the node's executor meanwhile.
        self._blocking_services = BlockingServices(self, around=self.cycle_gate.cooperate)
        self._blocking_services.create_service(Trigger, "~/reload_model", self._on_reload_model)
        self._diagnostics_timer = self.create_timer(
            1.0 / float(self.get_parameter("diagnostics_rate").value),
            self._on_diagnostics_timer,
        )

    def _release(self) -> None:
        for sub in self._entities:
            self.destroy_subscription(sub)
        self._entities = []
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self._cmd_pub is not None:
            for pub in (self._cmd_pub, self._prediction_pub, self._timing_pub):
                self.destroy_publisher(pub)
            self.destroy_publisher(self._diagnostics_pub)
            self._blocking_services.destroy()
            self._cmd_pub = None
        for pool in (self._build_pool, self._track_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._build_pool = self._track_pool = None
        self._active = self._pending = self._cstate = self._track = None
        self._inputs = _Inputs()
        self._reference_fault = "no_reference: no reference path received yet"

    # ------------------------------------------------------------------ models and tuning

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
        )

    def _tuning_for(self, compiled: CompiledController, overrides: dict[str, Any]):
        """The model's defaults with the user's tuning values (raises ValueError)."""
        user = {k: v for k, v in overrides.items() if k in self._user_tuning}
        return apply_tuning(compiled.default_tuning, compiled.controller.model, user)

    def _install(self, compiled: CompiledController) -> None:
        """Makes ``compiled`` the running controller at configure time."""
        values = {n: self._value(n) for n in TUNING_PARAMETERS}
        tuning = self._tuning_for(compiled, values)
        self._active, self._tuning = compiled, tuning
        self._limits = _command_limits(compiled)
        self._tuning_shown_for = weakref.ref(compiled)
        self._show_model_tuning(compiled, tuning)

    def _show_model_tuning(self, compiled: CompiledController, tuning) -> None:
        """Writes the effective values of tuning parameters the user did not set."""
        values = tuning_values(tuning, compiled.controller.model)
        self._tuning_values = values
        updates = [
            Parameter(name, value=value)
            for name, value in values.items()
            if name not in self._user_tuning
        ]
        self._internal_update = True
        try:
            self.set_parameters(updates)
        finally:
            self._internal_update = False

    def _schedule_build(self, spec: EngineSpec, reason: str) -> threading.Event:
        """Compiles ``spec`` in the background; the next control cycle swaps it in."""
        done = threading.Event()
        with self._lock:
            self._build_generation += 1
            generation = self._build_generation
            self._swap_events[generation] = done
        self._build_pool.submit(self._build, spec, generation, reason).add_done_callback(
            self._on_build_done
        )
        return done

    def _on_build_done(self, future: concurrent.futures.Future) -> None:
        """Logs what a build raised outside its own error handling (a future keeps it quiet)."""
        err = future.exception()
        if err is not None:
            trace = "".join(traceback.format_exception(err))
            self.get_logger().error(f"background build failed unexpectedly:\n{trace}")

    def _build(self, spec: EngineSpec, generation: int, reason: str) -> None:
        with self._lock:
            swapped = self._swap_events[generation]
        try:
            compiled = compile_controller(spec)
            values = {n: self._value(n) for n in TUNING_PARAMETERS}
            build = _Build(
                compiled,
                self._tuning_for(compiled, values),
                compiled.init_state(int(self.get_parameter("seed").value)),
                _command_limits(compiled),
            )
        except (ValueError, BundleError) as err:
            failure = str(err)
        except Exception as err:  # a background thread: report it, never leave the swap hanging
            failure = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"{reason}: unexpected error\n{traceback.format_exc()}")
        else:
            failure = None
        # What this build's tracing and lowering left in JAX's caches (75-95 MB for a new
        # shape): evicted in steps of <= ~5 ms that fit between two control cycles.
        release_jax_caches(self._make_room)
        if failure is not None:
            self._last_build_error = f"{reason} failed: {failure}"
            self.get_logger().error(self._last_build_error)
            self._revert_requested = True  # done by the executor thread (housekeeping)
            self._swap_events.pop(generation).set()
            return
        # The collection holds the GIL: start it as a cycle ends, in the idle rest of a period.
        # A full one: what the evicted caches held in reference cycles would otherwise be
        # frozen for good. It walks only what is not frozen yet (1-2 ms measured).
        self.cycle_gate.wait_cycle_end()
        freeze_heap()
        with self._lock:
            if generation != self._build_generation:
                self._swap_events.pop(generation).set()  # superseded by a newer request
                return
            self._pending = build
        self._free_excess_retired()
        self.cycle_gate.wait_cycle_end()
        release_free_heap()
        self.get_logger().info(
            f"{reason}: {compiled.model_id} compiled in {compiled.compile_seconds:.1f} s; swapping"
        )
        if swapped.wait(SWAP_WAIT_S):
            self._free_excess_retired()  # now including the controller this build replaced

    def _make_room(self, heavy: bool) -> None:
        """Waits until the next cache-eviction step fits before the next control cycle."""
        self.cycle_gate.wait_for_room(CACHE_EVICTION_ROOM_S[heavy])

    def _free_excess_retired(self) -> None:
        """Drops retired controllers whose compiled step a live one shares (that frees only
        their weights), then frees the oldest beyond ``kept_replaced_steps``, each right after
        a control cycle ends (so that it overlaps the idle part of the period); then returns
        the freed memory to the OS."""
        with self._lock:
            live = [c for c in (self._active, self._pending and self._pending.compiled) if c]
            shared, self._retired = split_retired(
                self._retired, lambda old: any(old.shares_step(c) for c in live)
            )
        freed = bool(shared)
        del shared  # outside the lock, which the control thread takes every cycle
        while len(self._retired) > self._kept_replaced_steps:
            self.cycle_gate.wait_cycle_end()
            with self._lock:
                oldest = self._retired.pop(0)
            name, start = oldest.model_id, time.perf_counter()
            del oldest  # XLA tears the executable down here, holding the GIL
            self.get_logger().info(
                f"freed the replaced step of {name} in {1e3 * (time.perf_counter() - start):.1f} ms"
            )
            freed = True
        if freed:
            self.cycle_gate.wait_cycle_end()
            release_free_heap()

    def _revert_spec_parameters(self) -> None:
        active = self._active.spec if self._active else None
        if active is None:
            return
        self._internal_update = True
        try:
            self.set_parameters(
                [
                    Parameter("model_path", value=active.model_path),
                    Parameter("num_samples", value=active.num_samples),
                    Parameter("horizon", value=active.horizon),
                ]
            )
        finally:
            self._internal_update = False

    def _swap_if_ready(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            event = self._swap_events.pop(self._build_generation, None) if pending else None
        if pending is None:
            return
        self._retired.append(self._active)  # freed later, off the control thread
        self._active, self._tuning = pending.compiled, pending.tuning
        self._cstate, self._limits = pending.cstate, pending.limits
        self._swaps += 1
        self._last_build_error = ""
        if event is not None:
            event.set()

    def _validate_model_path(self, value: str) -> str | None:
        """Why ``value`` cannot replace the running model, or None when it can."""
        controller = self.get_parameter("controller").value
        if controller not in MODEL_CONTROLLERS:
            return f"controller {controller!r} takes no model_path" if value else None
        try:
            bundle = load_matching_bundle(controller, value)
        except BundleError as err:
            return str(err)
        running = self._active.controller if self._active is not None else None
        if running is not None and bundle.vehicle_model != running.model.name:
            return (
                f"model bundle {bundle.path} was trained for dynamics "
                f"{bundle.vehicle_model!r}, the running model uses {running.model.name!r}"
            )
        return None

    def _validate_backend(self, backend: str, model_path: str) -> str | None:
        """Why ``backend`` cannot run ``model_path``, or None when it can."""
        if backend not in BACKENDS:
            return f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        if backend != "onnx":
            return None
        controller = self.get_parameter("controller").value
        if controller not in LEARNED_CONTROLLERS:
            return f"backend 'onnx' runs learned controllers only, not {controller!r}"
        try:
            read_onnx_spec(resolve_model(model_path or f"f1tenth_{controller}"))
        except (OnnxBundleError, BundleError) as err:
            return str(err)
        return None

    # ------------------------------------------------------------------ parameters

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        if self._internal_update:
            return SetParametersResult(successful=True)
        tuning_changes: dict[str, Any] = {}
        spec_changes: dict[str, Any] = {}
        controller = self.get_parameter("controller").value
        for p in params:
            name, value = p.name, p.value
            if name in TUNING_PARAMETERS:
                if value is not None:
                    scalar = isinstance(value, float | int)
                    tuning_changes[name] = value if scalar else [float(v) for v in value]
            elif name == "horizon" and value and not uses_horizon(controller):
                return _reject(f"horizon does not apply to {controller} (single-step)")
            elif name == "num_samples" and value and controller == "dpc":
                return _reject("num_samples does not apply to dpc (no sampling)")
            elif name == "model_path":
                reason = self._validate_model_path(value)
                if reason is not None:
                    return _reject(reason)
            if name in REBUILD_PARAMETERS:
                spec_changes[name] = value
        if {"backend", "model_path"} & set(spec_changes):
            get = lambda n: spec_changes.get(n, self.get_parameter(n).value)
            reason = self._validate_backend(get("backend"), get("model_path"))
            if reason is not None:
                return _reject(reason)
        if tuning_changes:
            if self._active is not None:
                merged = {**self._tuning_values, **tuning_changes}
                try:
                    user = {k: v for k, v in merged.items() if k in TUNING_PARAMETERS}
                    tuning = apply_tuning(
                        self._active.default_tuning, self._active.controller.model, user
                    )
                except ValueError as err:
                    return _reject(str(err))
                self._tuning_values = merged
                self._tuning = tuning  # read by the next control cycle: no recompilation
            self._user_tuning |= set(tuning_changes)
        if spec_changes and self._active is not None:
            spec = self._spec_from_parameters(**spec_changes)
            if spec != self._active.spec or "model_path" in spec_changes:
                self._schedule_build(spec, f"change of {', '.join(sorted(spec_changes))}")
        return SetParametersResult(successful=True)

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        for p in params:
            if p.name in self._live:
                self._live[p.name] = p.value

    def _on_reload_model(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        """Re-validates and reloads ``model_path``; replies once the swap happened (or failed).

        Runs on the :class:`BlockingServices` thread, so waiting blocks no subscription.
        """
        if self._active is None:
            response.success, response.message = False, "not configured"
            return response
        reason = self._validate_model_path(self.get_parameter("model_path").value)
        if reason is not None:
            response.success, response.message = False, reason
            return response
        done = self._schedule_build(self._spec_from_parameters(), "reload_model")
        if not done.wait(SWAP_TIMEOUT_S):
            response.success, response.message = False, "timed out waiting for the swap"
        elif self._last_build_error:
            response.success, response.message = False, self._last_build_error
        else:
            response.success = True
            response.message = f"running {self._active.model_id}"
        return response

    # ------------------------------------------------------------------ inputs

    def _on_odom(self, msg: Odometry) -> None:
        stamp = conversions.time_to_seconds(msg.header.stamp)
        inputs = self._inputs
        if stamp < inputs.odom_stamp:
            inputs.out_of_order = True  # keep the newer message; the tick reports the fault
            return
        inputs.odom, inputs.odom_stamp = msg, stamp
        inputs.odom_received = time.monotonic()
        inputs.out_of_order = False

    def _on_joint_states(self, msg: JointState) -> None:
        position = conversions.joint_position(msg, self._steering_joint)
        if position is not None:  # other joints' messages, or a NaN reading: keep the last
            self._inputs.steering = position
            self._inputs.steering_received = time.monotonic()

    def _on_reference(self, msg: Path) -> None:
        self._inputs.reference = msg
        self._rebuild_track()

    def _on_border_left(self, msg: Path) -> None:
        self._inputs.border_left = msg
        self._rebuild_track()

    def _on_border_right(self, msg: Path) -> None:
        self._inputs.border_right = msg
        self._rebuild_track()

    def _rebuild_track(self) -> None:
        inputs = self._inputs
        if None in (inputs.reference, inputs.border_left, inputs.border_right):
            return
        if self._track_pool is not None:
            self._track_pool.submit(
                self._build_track, inputs.reference, inputs.border_left, inputs.border_right
            )

    def _build_track(self, reference: Path, left: Path, right: Path) -> None:
        frame = self.get_parameter("frame_id").value
        for label, msg in (
            ("reference", reference),
            ("border_left", left),
            ("border_right", right),
        ):
            if msg.header.frame_id != frame:
                self._reference_fault = (
                    f"frame_mismatch: {label} is in frame {msg.header.frame_id!r}, "
                    f"expected {frame!r}"
                )
                return
        xy, times = conversions.path_to_arrays(reference)
        speed = conversions.speed_from_times(xy, times) if len(xy) else None
        try:
            track = track_from_polylines(
                "reference",
                xy,
                conversions.path_to_arrays(left)[0],
                conversions.path_to_arrays(right)[0],
                speed=speed,
                points=int(self.get_parameter("reference_points").value),
                max_speed=UNTIMED_SPEED,
            )
        except TrackFormatError as err:
            self._reference_fault = f"bad_reference: {err}"
            return
        self._track = track.arrays()
        self._reference_fault = None
        self.get_logger().info(
            f"reference: {len(xy)} points, {track.length:.1f} m, "
            f"{'timed' if speed is not None else 'untimed'}"
        )
        self.cycle_gate.wait_cycle_end()
        release_free_heap()  # what building the track freed, back to the OS

    # ------------------------------------------------------------------ control loop

    def _check_inputs(self, now: float) -> tuple[str | None, np.ndarray | None]:
        """``(fault, state)``: the cause that holds the car, or the state to control from."""
        inputs = self._inputs
        if self._reference_fault is not None:
            return self._reference_fault, None
        if inputs.odom is None:
            return "no_state: no odometry received yet", None
        if inputs.out_of_order:
            return "out_of_order: odometry stamp went backwards", None
        age = now - inputs.odom_received
        timeout = float(self._live["state_timeout"])
        if age > timeout:
            return f"stale_state: odometry is {age * 1e3:.0f} ms old (timeout {timeout}s)", None
        frame = self._live["frame_id"]
        if inputs.odom.header.frame_id != frame:
            return (
                f"frame_mismatch: odometry in frame {inputs.odom.header.frame_id!r}, "
                f"expected {frame!r}"
            ), None
        model = self._active.controller.model
        self._steering_measured = now - inputs.steering_received <= timeout
        if self._steering_measured:
            # A measurement replaces the integral of the commands, which drifts whenever the
            # actuator drops or repeats a command, or the car is reset.
            self._steering = inputs.steering
        self._state_steering = self._steering
        try:
            state = conversions.odometry_to_state(inputs.odom, model, steering=self._steering)
        except ValueError as err:
            return f"bad_state: {err}", None
        if not np.all(np.isfinite(state)):
            return "nonfinite_state: odometry contains NaN or inf", None
        return None, state

    def _on_control_tick(self) -> None:
        start, wall = time.monotonic(), time.time()
        stamp = self.get_clock().now().to_msg()
        self._stats.tick(start)
        self._swap_if_ready()
        fault, state = self._check_inputs(start)
        result = None
        if fault is None:
            try:
                result, cstate = self._active.step(self._cstate, state, self._tuning, self._track)
            except Exception as err:
                fault = f"step_exception: {type(err).__name__}: {err}"
            else:
                if result.finite:
                    self._cstate = cstate
                else:
                    fault = "nonfinite_output: the controller returned NaN or inf"
        if fault is not None:
            self._publish_brake(stamp)
            if self._watchdog.report(fault):
                self.get_logger().error(f"braking: {fault}")
            self._stats.record(time.monotonic() - start, None)
            return
        self._publish_command(result.action, state, stamp)
        end = time.monotonic()
        latency, data_age = end - start, end - self._inputs.odom_received
        self._stats.record(latency, data_age)
        ended = self._watchdog.clear()
        if ended is not None:
            self.get_logger().info(f"recovered from: {ended}")
        self._publish_extras(result, wall, latency, data_age)
        self._cstate = self._active.prepare(self._cstate)  # next noise, off the measured path

    def _publish_command(self, action: np.ndarray, state: np.ndarray, stamp) -> None:
        limits, period = self._limits, self._stats.period
        lead = float(self._live["target_lead_time"])
        speed = float(state[limits.speed_index]) if limits.speed_index is not None else 0.0
        self._speed_estimate = speed
        if limits.steering_limits is not None:
            lo, hi = limits.steering_limits
            self._steering = min(max(self._steering + float(action[0]) * period, lo), hi)
        targets = (
            min(max(self._steering + float(action[0]) * (lead - period), -math.pi), math.pi),
            speed + float(action[-1]) * lead,
        )
        msg = conversions.encode_command(
            self._live["command_type"],
            action,
            targets,
            stamp,
            self._live["frame_id"],
            limits.wheelbase,
            limits.control_names,
        )
        self._cmd_pub.publish(msg)

    def _publish_brake(self, stamp=None) -> None:
        """Zero steering rate and a deceleration that stops without reversing."""
        stamp = stamp or self.get_clock().now().to_msg()
        period = self._stats.period
        decel = float(self._live["brake_decel"])
        speed = max(self._speed_estimate, 0.0)
        accel = -min(decel, speed / period)
        self._speed_estimate = max(speed - decel * period, 0.0)
        action = np.zeros(len(self._limits.control_names) if self._limits else 2)
        action[-1] = accel
        msg = conversions.encode_command(
            self._live["command_type"],
            action,
            (self._steering, 0.0),
            stamp,
            self._live["frame_id"],
            1.0,
        )
        self._cmd_pub.publish(msg)

    def _publish_extras(self, result, wall: float, latency: float, data_age: float) -> None:
        """Off the measured path: timing record ``(tick wall time, latency, data age)`` and
        prediction (each only with subscribers)."""
        if self._timing_pub.get_subscription_count():
            self._timing_pub.publish(Float64MultiArray(data=[wall, latency, data_age]))
        if result.predicted_states is not None and self._prediction_pub.get_subscription_count():
            model = self._active.controller.model
            i, j = model.position_indices or (0, 1)
            self._prediction_pub.publish(
                conversions.make_path(
                    result.predicted_states[:, [i, j]],
                    self._live["frame_id"],
                    self.get_clock().now().to_msg(),
                )
            )

    # ------------------------------------------------------------------ diagnostics

    def _housekeeping(self) -> None:
        """Parameter updates that follow a swap or a failed build. Runs on the executor
        thread: rclpy's set_parameters must not be called from the control or build threads."""
        if self._revert_requested:
            self._revert_requested = False
            self._revert_spec_parameters()
        active = self._active
        # A weak reference: a strong one kept the replaced controller (and its ~20 MB
        # executable) alive until this ran, then freed it here, untimed and untrimmed.
        shown = self._tuning_shown_for and self._tuning_shown_for()
        if active is not None and shown is not active:
            self._tuning_shown_for = weakref.ref(active)
            self._show_model_tuning(active, self._tuning)

    def _on_diagnostics_timer(self) -> None:
        self._housekeeping()
        summary = self._stats.summary()
        cause = self._watchdog.cause
        status = DiagnosticStatus(name=f"{NODE_NAME}: control loop", hardware_id=NODE_NAME)
        if cause is not None:
            status.level, status.message = DiagnosticStatus.ERROR, cause
        elif self._last_build_error:
            status.level, status.message = DiagnosticStatus.WARN, self._last_build_error
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        active = self._active
        values = {
            "controller": active.controller.name if active else "",
            "model_id": active.model_id if active else "",
            "backend": active.spec.backend if active else "",
            "num_samples": str(getattr(active.controller.config, "num_samples", 0))
            if active
            else "",
            "watchdog": cause or "ok",
            "faults": str(self._watchdog.faults),
            "swaps": str(self._swaps),
            "kept_steps": str(len(self._retired)),
            "allocator": heap_allocator(),
            "compiling": str(self._pending is not None or bool(self._swap_events)).lower(),
            "last_error": self._last_build_error,
            "steering": f"{self._state_steering:.4f}",  # as used in the last state
            "steering_source": "joint_states" if self._steering_measured else "integrated",
        }
        values.update({k: f"{v:.4f}" for k, v in summary.items()})
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(msg)


def _command_limits(compiled: CompiledController) -> CommandLimits:
    model = compiled.controller.model
    return CommandLimits.from_model(
        model, model.physical_params(compiled.default_tuning.model_params)
    )


def _stall_log():
    """With ``MPPI_ROS_STALL_LOG=FILE``, every cycle that has not ended one period after its
    deadline (a late start or a long run) appends all threads' stacks to FILE; a C watchdog
    thread writes them, so it works while another thread holds the GIL."""
    path = os.environ.get("MPPI_ROS_STALL_LOG")
    return open(path, "a") if path else None


def _reject(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def main(args: list[str] | None = None, node_class: type[ControllerNode] = ControllerNode) -> None:
    """Runs the node until SIGINT / SIGTERM (``node_class``: the node to run, for subclasses)."""
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack
    enable_compilation_cache()
    # Each step then runs on the (real-time) control thread, not handed to JAX's
    # normal-priority dispatch threads (measured: lower p99 tick-to-command latency).
    synchronous_cpu_dispatch()
    stop = init_with_own_signals(args)  # the context outlives the brake command on the way out
    # A short GIL switch interval bounds how long the control thread waits for the GIL while
    # the executor thread or a background compile runs Python code.
    sys.setswitchinterval(5e-4)
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


if __name__ == "__main__":
    main()
