"""``mppi-ros replay BAG --model M``: a recorded run's steps through another model, offline.

A bag written by ``mppi-ros demo`` or ``mppi-ros bench ros --record`` holds, per control
step, the state the controller was given and the action it returned
(``/mppi_controller/step_input``), the reference and border paths it drove on, and the
controller's start-up parameters (an MCAP metadata record). The replay builds the model the
way the node does (same engine spec, tuning, seed and reference resampling), steps it through
the recorded states in order, carrying its own warm start, and compares its actions with the
recorded ones. The model that drove the run gives no difference at all; another model shows
where it would have commanded otherwise before it is swapped onto the car.

What it cannot see: live parameter changes and model swaps during the recording (the run's
start-up parameters apply throughout), and steps whose cycle braked afterwards for an overrun
(they are not published), after which a sampled controller's noise no longer lines up.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from mcap.reader import make_reader
from rclpy.serialization import deserialize_message
from std_msgs.msg import Float64MultiArray

from mppi_ros.core.bundles import read_manifest, resolve_model
from mppi_ros.core.catalog import controller_spec
from mppi_ros.engine import EngineSpec, compile_controller
from mppi_ros.ros import conversions
from mppi_ros.ros.controller.inputs import reference_from_paths
from mppi_ros.ros.controller.parameters import PARAMETERS
from mppi_ros.ros.controller.tuning import TUNING_PARAMETERS, apply_tuning
from mppi_ros.ros.controller.visualisation import split_step_input
from mppi_ros.ros.recording import PARAMETERS_METADATA

PATH_TOPICS = ("reference", "border_left", "border_right")


class ReplayError(ValueError):
    """The bag cannot be replayed (one sentence naming what is missing)."""


@dataclasses.dataclass
class RecordedRun:
    """What a replay needs from a bag."""

    parameters: dict[str, Any]  # the controller's start-up parameters
    paths: list[tuple[int, str, bytes]]  # (log time ns, topic, CDR) of the path topics
    steps: list[tuple[int, float, np.ndarray, np.ndarray]]  # (log ns, tick wall, state, action)


def read_run(bag: str | Path, node: str = "mppi_controller") -> RecordedRun:
    """Reads a recorded run.

    Raises:
        ReplayError: No step records, no reference, or no parameters in the bag.
    """
    step_topic = f"/{node}/step_input"
    parameters: dict[str, Any] | None = None
    paths, steps = [], []
    with open(bag, "rb") as handle:
        reader = make_reader(handle)
        for record in reader.iter_metadata():
            if record.name == PARAMETERS_METADATA:
                parameters = yaml.safe_load(record.metadata["yaml"]) or {}
        for _, channel, message in reader.iter_messages(topics=[*PATH_TOPICS, step_topic]):
            if channel.topic == step_topic:
                wall, state, action = split_step_input(
                    deserialize_message(message.data, Float64MultiArray)
                )
                steps.append((message.log_time, wall, state, action))
            else:
                paths.append((message.log_time, channel.topic, message.data))
    if parameters is None:
        raise ReplayError(f"{bag} holds no {PARAMETERS_METADATA} metadata record")
    if not steps:
        raise ReplayError(f"{bag} holds no {step_topic} messages (recorded before replay existed?)")
    if {topic for _, topic, _ in paths} != set(PATH_TOPICS):
        raise ReplayError(f"{bag} lacks one of the paths {', '.join(PATH_TOPICS)}")
    steps.sort(key=lambda s: s[1])  # tick order (log times follow arrival)
    return RecordedRun(parameters, sorted(paths, key=lambda p: p[0]), steps)


def _value(parameters: dict[str, Any], name: str) -> Any:
    return parameters.get(name, PARAMETERS[name][0] if name in PARAMETERS else None)


def replay_model(
    run: RecordedRun, model_path: str = "", backend: str = "", controller: str = ""
) -> dict[str, Any]:
    """Steps ``model_path`` (empty: the recorded run's own model) through the run.

    Args:
        run: The recorded run.
        model_path: A bundle folder or name; its manifest names the controller.
        backend: ``jax`` or ``onnx`` (empty: the run's).
        controller: For a bundle-less controller (``mppi``, ``pure_pursuit``...), its name.

    Returns:
        The report: per step the absolute difference of each control channel, the largest
        per channel with its step, tick time and position, and the mean.
    """
    params = run.parameters
    if model_path:
        name = read_manifest(resolve_model(model_path))["controller"]
    else:
        name = controller or params.get("controller", "step_mppi")
        model_path = "" if controller else str(params.get("model_path", ""))
    spec_entry = controller_spec(name)
    config = tuple(
        (p.name, params.get(p.name, spec_entry.config_default(p.name)))
        for p in spec_entry.config_parameters
    )
    spec = EngineSpec(
        controller=name,
        model_path=model_path if spec_entry.learned else "",
        num_samples=int(_value(params, "num_samples")),
        horizon=int(_value(params, "horizon")),
        control_period=1.0 / float(_value(params, "control_rate")),
        reference_points=int(_value(params, "reference_points")),
        backend=backend or str(_value(params, "backend")),
        config=config if not spec_entry.learned else (),
    )
    compiled = compile_controller(spec)
    model = compiled.controller.model
    extra = tuple(p.name for p in spec_entry.tuning_parameters)
    given = {n: params[n] for n in (*TUNING_PARAMETERS, *extra) if params.get(n) is not None}
    tuning = apply_tuning(compiled.default_tuning, model, given, extra)
    cstate = compiled.init_state(int(_value(params, "seed")))
    tracks = _tracks(run, spec.reference_points)
    replayed, finite = [], []
    for log_time, _, state, _ in run.steps:
        track = _track_at(tracks, log_time)
        result, stepped = compiled.step(cstate, state, tuning, track)
        if result.finite:  # as the node: a non-finite step keeps the old state (and brakes)
            cstate = stepped
        cstate = compiled.prepare(cstate)
        replayed.append(result.action)
        finite.append(result.finite)
    return _report(run, np.array(replayed), np.array(finite), compiled, model)


def _tracks(run: RecordedRun, points: int) -> list[tuple[int, Any]]:
    """``(log time, track arrays)`` each time all three paths are known (in log order)."""
    latest: dict[str, tuple] = {}
    out = []
    for log_time, topic, data in run.paths:
        latest[topic] = conversions.path_from_cdr(data)
        if len(latest) == len(PATH_TOPICS):
            out.append((log_time, reference_from_paths(latest, points).arrays()))
    return out


def _track_at(tracks: list[tuple[int, Any]], log_time: int) -> Any:
    """The newest track received before ``log_time`` (the first one for earlier steps)."""
    current = tracks[0][1]
    for received, arrays in tracks:
        if received > log_time:
            break
        current = arrays
    return current


def _report(run, replayed, finite, compiled, model) -> dict[str, Any]:
    recorded = np.array([s[3] for s in run.steps])
    states = np.array([s[2] for s in run.steps])
    ticks = np.array([s[1] for s in run.steps])
    if recorded.shape != replayed.shape:
        raise ReplayError(
            f"the recorded actions have {recorded.shape[1]} channels, the model's "
            f"{replayed.shape[1]}: another vehicle"
        )
    diff = np.abs(replayed - recorded)
    i, j = model.position_indices or (0, 1)
    channels = {}
    for c, channel in enumerate(model.control_names):
        worst = int(np.argmax(diff[:, c]))
        channels[channel] = {
            "max_abs_difference": float(diff[worst, c]),
            "mean_abs_difference": float(np.mean(diff[:, c])),
            "at_step": worst,
            "at_time_s": float(ticks[worst] - ticks[0]),
            "at_position": [float(states[worst, i]), float(states[worst, j])],
            "recorded": float(recorded[worst, c]),
            "replayed": float(replayed[worst, c]),
        }
    return {
        "model_id": compiled.model_id,
        "controller": compiled.controller.name,
        "backend": compiled.spec.backend,
        "steps": len(diff),
        "non_finite_steps": int(np.sum(~finite)),
        "identical_steps": int(np.sum(np.all(diff == 0.0, axis=1))),
        "channels": channels,
        "per_step_abs_difference": diff.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"replay of {report['steps']} steps through {report['model_id']} "
        f"({report['controller']}, {report['backend']}): "
        f"{report['identical_steps']} identical",
    ]
    for name, c in report["channels"].items():
        x, y = c["at_position"]
        lines.append(
            f"  {name:<14} max |diff| {c['max_abs_difference']:.4g} at step {c['at_step']} "
            f"(t {c['at_time_s']:.2f} s, x {x:.1f} y {y:.1f}: recorded {c['recorded']:.4g}, "
            f"replayed {c['replayed']:.4g}), mean {c['mean_abs_difference']:.4g}"
        )
    return "\n".join(lines)
