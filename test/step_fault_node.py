"""The ``mppi_controller`` node plus three test inputs: ``~/break_step`` (std_msgs/Bool),
``~/block_executor`` (std_msgs/Float64: seconds the callback sleeps on the node's executor,
standing in for any callback that takes that long) and ``~/slow_tick`` (std_msgs/Float64:
seconds each control cycle sleeps after its work, standing in for a starved CPU).

``True`` hands the real compiled step a reference of the wrong structure (``None``), so every
step raises inside JAX's tracing; ``False`` gives the step its reference back. No message on
the node's own topics can make a validated step raise, so this is the only way to exercise
the ``step_exception`` watchdog path in a running node. Everything else is the shipped node.
Run as ``python -m step_fault_node --ros-args ...`` with this directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import time

from std_msgs.msg import Bool, Float64

from mppi_ros.ros import controller_node
from mppi_ros.ros.controller.inputs import NO_TRACK


class StepFaultNode(controller_node.ControllerNode):
    """:class:`ControllerNode` whose step can be made to raise over ``~/break_step`` and whose
    executor can be blocked over ``~/block_executor`` and whose cycles slowed over
    ``~/slow_tick``."""

    _slow_s = 0.0

    def _create_entities(self) -> None:
        super()._create_entities()
        self._intact = None
        self._entities += [
            self.create_subscription(Bool, "~/break_step", self._on_break_step, 10),
            self.create_subscription(Float64, "~/block_executor", self._on_block, 10),
            self.create_subscription(Float64, "~/slow_tick", self._on_slow, 10),
        ]

    def _on_slow(self, msg: Float64) -> None:
        self._slow_s = msg.data

    def _on_control_tick(self) -> None:
        super()._on_control_tick()
        time.sleep(self._slow_s)

    def _on_block(self, msg: Float64) -> None:
        time.sleep(msg.data)

    def _on_break_step(self, msg: Bool) -> None:
        inputs = self.inputs
        if msg.data and inputs.reference.arrays is not None:
            self._intact, inputs.reference = inputs.reference, NO_TRACK
        elif not msg.data and self._intact is not None:
            inputs.reference, self._intact = self._intact, None


if __name__ == "__main__":
    controller_node.main(node_class=StepFaultNode)
