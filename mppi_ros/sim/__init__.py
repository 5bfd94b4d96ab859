"""Closed-loop simulation of a controller on a track (used by benchmarks, training and the
simulator node)."""

from mppi_ros.sim.closed_loop import (
    Plant,
    PlantState,
    SimConfig,
    SimResult,
    run_closed_loop,
)

__all__ = ["Plant", "PlantState", "SimConfig", "SimResult", "run_closed_loop"]
