"""The ``mppi_controller`` node plus one test input: ``~/break_step`` (std_msgs/Bool).

``True`` hands the real compiled step a reference of the wrong structure (``None``), so every
step raises inside JAX's tracing; ``False`` gives the step its reference back. No message on
the node's own topics can make a validated step raise, so this is the only way to exercise
the ``step_exception`` watchdog path in a running node. Everything else is the shipped node.
Run as ``python -m step_fault_node --ros-args ...`` with this directory on ``PYTHONPATH``.
"""

from __future__ import annotations

from std_msgs.msg import Bool

from mppi_ros.ros import controller_node


class StepFaultNode(controller_node.ControllerNode):
    """:class:`ControllerNode` whose step can be made to raise over ``~/break_step``."""

    def _create_entities(self) -> None:
        super()._create_entities()
        self._intact_track = None
        self._entities.append(
            self.create_subscription(Bool, "~/break_step", self._on_break_step, 10)
        )

    def _on_break_step(self, msg: Bool) -> None:
        inputs = self.inputs
        if msg.data and inputs.track is not None:
            self._intact_track, inputs.track = inputs.track, None
        elif not msg.data and self._intact_track is not None:
            inputs.track, self._intact_track = self._intact_track, None


if __name__ == "__main__":
    controller_node.main(node_class=StepFaultNode)
