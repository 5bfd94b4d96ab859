"""Matplotlib figures for benchmarks: closed-loop runs and learning curves (Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mppi_ros.core.tracks import Track
from mppi_ros.sim import SimResult


def plot_closed_loop(track: Track, results: dict[str, SimResult], path: str | Path) -> Path:
    """Paths on the track (coloured by speed when one controller) and lateral error vs time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_map, ax_err) = plt.subplots(
        1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1.2, 1.0]}
    )
    left, right = track.border_polylines()
    for edge in (left, right):
        loop = np.vstack([edge, edge[:1]])
        ax_map.plot(loop[:, 0], loop[:, 1], color="0.3", lw=1.0)
    race = np.vstack([track.xy, track.xy[:1]])
    ax_map.plot(race[:, 0], race[:, 1], "--", color="0.6", lw=0.8, label="raceline")
    single = len(results) == 1
    for name, res in results.items():
        if len(res.states) == 0:
            continue
        xy = res.states[:, :2]
        if single and res.states.shape[1] > 3:
            sc = ax_map.scatter(xy[:, 0], xy[:, 1], c=res.states[:, 3], s=2, cmap="viridis")
            fig.colorbar(sc, ax=ax_map, label="speed (m/s)")
        else:
            ax_map.plot(xy[:, 0], xy[:, 1], lw=1.2, label=name)
        ax_err.plot(res.time, res.lateral_error, lw=1.0, label=name)
    ax_map.set_aspect("equal")
    ax_map.set_title(f"track {track.name}")
    ax_map.set_xlabel("x (m)")
    ax_map.set_ylabel("y (m)")
    ax_map.legend(loc="best", fontsize=8)
    ax_err.axhline(0.0, color="0.5", lw=0.5)
    ax_err.set_xlabel("time (s)")
    ax_err.set_ylabel("lateral error to raceline (m)")
    ax_err.set_title("tracking error")
    ax_err.legend(loc="best", fontsize=8)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Writes ``fig`` as a PNG (creating the folder) and closes it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_curve(ax, curve: dict[str, Any], label: str, color: str | None = None) -> None:
    """A summarised learning curve: median line and 20-80 % band (``None``: no data yet)."""
    steps = np.asarray(curve["steps"])
    median, p20, p80 = (
        np.array([np.nan if v is None else v for v in curve[k]], float)
        for k in ("median", "p20", "p80")
    )
    (line,) = ax.plot(steps, median, lw=1.5, color=color, label=label)
    ax.fill_between(steps, p20, p80, alpha=0.2, color=line.get_color())


def plot_amortisation(table: dict[str, dict[str, Any]], title: str, path: str | Path) -> Path:
    """The amortisation table's learning curves: one panel per target sample count N, one
    line (same colour in every panel) per target mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(5 * len(table), 4.5), sharey=True)
    for ax, (n, row) in zip(np.atleast_1d(axes), table.items(), strict=True):
        for i, (mode, cell) in enumerate(row.items()):
            label = f"{mode} ({cell['steps_per_s']:.0f} steps/s)"
            _plot_curve(ax, cell["curve"], label, color=f"C{i}")
        ax.set_title(n)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("return (mean of last 10 episodes)")
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_learning_curves(curves: dict[str, dict[str, Any]], title: str, path: str | Path) -> Path:
    """Median learning curves with their 20-80 % bands, one line per entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, curve in curves.items():
        _plot_curve(ax, curve, label)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return (mean of last 10 episodes)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
