"""Validates every parameter change of the ``mppi_controller`` node and routes it: tuning
values to a new tuning pytree (no recompilation), model and shape values to a background
rebuild, loop values to the cache the control thread reads. In the style of nav2's
parameters handler.

The node also writes parameters itself: the loaded model's tuning defaults (so that
``ros2 param get`` shows what drives) and, after a failed rebuild, the values of the model
that still runs. Those are values the node runs with: the handler recognises them
(:meth:`ParametersHandler.write`), so that they are neither checked again nor counted as a
user's choice nor start a rebuild of what already runs. Every user change is checked.

``lock`` keeps the node's own writes apart from users' changes should those ever arrive on
another thread (rclpy serves them on the executor, as it does the writes).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode
from rclpy.parameter import Parameter

from mppi_ros.core.catalog import controller_names, controller_spec
from mppi_ros.engine import CompiledController
from mppi_ros.ros.controller.parameters import (
    LOOP_PARAMETERS,
    PARAMETERS,
    REBUILD_PARAMETERS,
    actuation_delays_problem,
    declare_controller_parameters,
)
from mppi_ros.ros.controller.swap import ModelSwap
from mppi_ros.ros.controller.tuning import TUNING_PARAMETERS, apply_tuning, tuning_values


def reject(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


class ParametersHandler:
    """Declares the node's parameters and owns the decisions about their changes.

    Args:
        node: The node whose parameters these are.
        check_spec: ``(changes) -> reason or None``: whether the model / backend changes can
            run (the node knows the running model).
        rebuild: ``(changes, reason)``: called with accepted changes that need a new
            compiled controller.
        active: The running compiled controller (``None`` before configure).
    """

    def __init__(
        self,
        node: LifecycleNode,
        check_spec: Callable[[dict[str, Any]], str | None],
        rebuild: Callable[[dict[str, Any]], None],
        active: Callable[[], CompiledController | None],
    ) -> None:
        self._node, self._check_spec, self._rebuild, self._active = (
            node,
            check_spec,
            rebuild,
            active,
        )
        for name, (default, descriptor) in PARAMETERS.items():
            node.declare_parameter(name, default, descriptor)
        # The controller's own tuning and config fields (e.g. EM-MPPI's), for it alone.
        controller = self.value("controller")
        self.extra, self.config_names = declare_controller_parameters(node, controller)
        self.tuning_names = (*TUNING_PARAMETERS, *self.extra)
        # Tuning values given at start-up stay; the others follow the loaded model.
        self.user_tuning = {name for name in self.tuning_names if self.value(name) is not None}
        self.tuning = None  # the live tuning pytree, read by the control thread every cycle
        self._tuning_values: dict[str, Any] = {}
        # Values read every cycle, cached (get_parameter takes a lock and builds objects).
        self.live = {name: self.value(name) for name in LOOP_PARAMETERS}
        self._own_writes: dict[str, Any] = {}
        self._tuning_shown_for: weakref.ref[CompiledController] | None = None
        self.lock = threading.RLock()  # held by every set_parameters request and by write
        node.add_on_set_parameters_callback(self._on_set)
        node.add_post_set_parameters_callback(self._on_set_done)

    def value(self, name: str) -> Any:
        """A parameter's value; None while a model-default parameter is still unset."""
        try:
            return self._node.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    # ------------------------------------------------------------------ tuning

    def tuning_for(self, compiled: CompiledController):
        """``compiled``'s default tuning with the user's values (raises ValueError)."""
        values = {n: self.value(n) for n in self.tuning_names if n in self.user_tuning}
        return apply_tuning(compiled.default_tuning, compiled.controller.model, values, self.extra)

    def show_model_tuning(self, compiled: CompiledController, tuning) -> None:
        """Writes the effective values of the tuning parameters the user did not set."""
        # A weak reference: a strong one kept the replaced controller (and its ~20 MB
        # executable) alive until the next call, then freed it there, untimed and untrimmed.
        self._tuning_shown_for = weakref.ref(compiled)
        values = tuning_values(tuning, compiled.controller.model, self.extra)
        self._tuning_values = values
        self.write({n: v for n, v in values.items() if n not in self.user_tuning})

    def follow_swaps(self, swap: ModelSwap) -> None:
        """After a failed build, writes back the values of the model that still drives; after
        a swap, shows the new model's tuning. Skipped while a user's change is being checked
        (the caller, the executor thread, never waits): the next call does it."""
        if not self.lock.acquire(blocking=False):
            return
        try:
            active = swap.active
            if swap.take_failure() and active is not None:
                spec = active.spec
                self.write(
                    {
                        "model_path": spec.model_path,
                        "num_samples": spec.num_samples,
                        "horizon": spec.horizon,
                        "backend": spec.backend,
                    }
                )
            shown = self._tuning_shown_for and self._tuning_shown_for()
            if active is not None and shown is not active:
                self.show_model_tuning(active, self.tuning)
        finally:
            self.lock.release()

    def write(self, values: dict[str, Any]) -> None:
        """Sets parameters on the node's behalf, holding ``lock`` (so no user change can
        arrive while ``_own_writes`` is set). They are values the node runs with, so they are
        not checked again; a refusal (rclpy's own type or range check) is logged."""
        if not values:
            return
        with self.lock:
            self._own_writes = dict(values)
            try:
                params = [Parameter(n, value=v) for n, v in values.items()]
                results = self._node.set_parameters(params)
            finally:
                self._own_writes = {}
        for name, result in zip(values, results, strict=True):
            if not result.successful:
                self._node.get_logger().warning(
                    f"could not show {name} = {values[name]!r}: {result.reason}"
                )

    # ------------------------------------------------------------------ validation

    def _own(self, name: str, value: Any) -> bool:
        return name in self._own_writes and self._own_writes[name] == value

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        if all(self._own(p.name, p.value) for p in params):
            return SetParametersResult(successful=True)  # the node's own (see write)
        tuning_changes: dict[str, Any] = {}
        spec_changes: dict[str, Any] = {}
        name = self._node.get_parameter("controller").value
        if name not in controller_names():  # configure failed on it; nothing else applies
            return reject(f"unknown controller {name!r}: the node is not configured")
        controller = controller_spec(name)
        for p in params:
            name, value = p.name, p.value
            own = self._own(name, value)
            if name in self.tuning_names and value is not None:
                scalar = isinstance(value, float | int)
                tuning_changes[name] = value if scalar else [float(v) for v in value]
            elif name == "horizon" and value and not controller.has_horizon:
                return reject(f"horizon does not apply to {controller.name} (no horizon)")
            elif name == "num_samples" and value and not controller.samples:
                return reject(f"num_samples does not apply to {controller.name} (no sampling)")
            elif name == "actuation_delays" and not own:
                active = self._active()
                dim = active.controller.model.control_dim if active is not None else None
                reason = actuation_delays_problem(list(value), dim)
                if reason is not None:
                    return reject(reason)
            if name in REBUILD_PARAMETERS and not own:
                spec_changes[name] = value
        if spec_changes:
            reason = self._check_spec(spec_changes)
            if reason is not None:
                return reject(reason)
        if tuning_changes:
            reason = self._accept_tuning(tuning_changes)
            if reason is not None:
                return reject(reason)
        if spec_changes and self._active() is not None:
            self._rebuild(spec_changes)
        return SetParametersResult(successful=True)

    def _accept_tuning(self, changes: dict[str, Any]) -> str | None:
        """Checks ``changes`` against the running model and, for a user's, makes them live."""
        active = self._active()
        if active is not None:
            merged = {**self._tuning_values, **changes}
            try:
                user = {k: v for k, v in merged.items() if k in self.tuning_names}
                model = active.controller.model
                tuning = apply_tuning(active.default_tuning, model, user, self.extra)
            except ValueError as err:
                return str(err)
            self._tuning_values = merged
            if any(not self._own(n, v) for n, v in changes.items()):
                self.tuning = tuning  # read by the next control cycle: no recompilation
        self.user_tuning |= {n for n, v in changes.items() if not self._own(n, v)}
        return None

    def _on_set_done(self, params: list[Parameter]) -> None:
        for p in params:
            if p.name in self.live:
                self.live[p.name] = p.value
