"""The ``mppi_controller`` node as a small package: the node (lifecycle and the control tick),
its parameters and their handler, model swaps, inputs, and commands."""
