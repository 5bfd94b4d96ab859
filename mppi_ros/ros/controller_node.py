"""``mppi_controller``: the controller node's entry point (``python -m
mppi_ros.ros.controller_node``); the node lives in :mod:`mppi_ros.ros.controller`."""

from __future__ import annotations

from mppi_ros.ros.controller.node import NODE_NAME, ControllerNode, main
from mppi_ros.ros.controller.parameters import PARAMETERS

__all__ = ["NODE_NAME", "PARAMETERS", "ControllerNode", "main"]

if __name__ == "__main__":
    main()
