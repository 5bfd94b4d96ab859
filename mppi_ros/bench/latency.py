"""`mppi-ros bench latency`: per controller, step time p50 / p99 on this machine, with the
ratio to classic MPPI (K = 16384, H = 40 unless changed) measured in the same run.

Each timed call is the fused observation + controller step, jit-compiled, after
``block_until_ready``; compilation and warm-up calls are excluded.

JSON: ``{"device": str, "results": {name: {"controller", "num_samples", "horizon", "p50_ms",
"p99_ms", "ratio_to_mppi"}}}``

With ``backend="onnx"`` the learned controllers are also timed through the deployment engine
on both backends (host state in, host action out: what the ROS node's cycle calls): entries
``<name>_k<K>_engine_jax`` and ``<name>_k<K>_engine_onnx`` with ``ratio_to_jax`` (ONNX p50 /
JAX p50, same run) and the onnxruntime execution provider.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from mppi_ros.core.bundles import BundleError
from mppi_ros.core.catalog import (
    controller_from_bundle,
    controller_spec,
    make_controller,
    shipped_model_path,
)
from mppi_ros.core.controllers import update_tuning
from mppi_ros.core.policy import make_policy_step
from mppi_ros.core.tracks import Track, load_track
from mppi_ros.engine import (
    CompiledController,
    EngineSpec,
    compile_controller,
    onnx_runs,
    reference_track,
)
from mppi_ros.sim.closed_loop import start_state

BASELINE = ("mppi", 16384, 40)


@dataclasses.dataclass(frozen=True)
class LatencyBench:
    controllers: tuple[str, ...] = ("mppi",)
    num_samples: tuple[int, ...] = (1024, 16384)
    horizon: int = 40
    baseline_samples: int = BASELINE[1]
    baseline_horizon: int = BASELINE[2]
    iterations: int = 100
    max_seconds_per_entry: float = 20.0
    track: str = "default"
    reference_speed: float = 10.0
    backend: str = "jax"


def entry_name(controller: str, num_samples: int, horizon: int | None) -> str:
    return f"{controller}_k{num_samples}" + (f"_h{horizon}" if horizon else "")


def time_controller(
    ctrl, track, iterations: int, max_seconds: float, reference_speed: float
) -> np.ndarray:
    """Step times (ms) of the jitted fused policy step on a fixed realistic state."""
    arrays = track.arrays()
    step = jax.jit(make_policy_step(ctrl, arrays))
    tuning = update_tuning(ctrl.default_tuning(), reference_speed=reference_speed)
    x = jax.numpy.asarray(start_state(ctrl.model, track, reference_speed))
    key = jax.random.PRNGKey(0)
    cstate = ctrl.init(key)
    for _ in range(3):  # compile + warm caches
        key, sub = jax.random.split(key)
        _, cstate, _, _ = jax.block_until_ready(step(cstate, x, tuning, sub))
    times = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(iterations):
        key, sub = jax.random.split(key)
        tic = time.perf_counter()
        action, cstate, _, _ = step(cstate, x, tuning, sub)
        jax.block_until_ready(action)
        times.append((time.perf_counter() - tic) * 1e3)
        if time.perf_counter() > deadline and len(times) >= 10:
            break
    return np.asarray(times)


def time_engine(
    spec: EngineSpec, track: Track, iterations: int, max_seconds: float, reference_speed: float
) -> tuple[np.ndarray, CompiledController]:
    """Step times (ms) of :meth:`CompiledController.step` (either backend) on a fixed state."""
    compiled = compile_controller(spec)
    ref = reference_track(track, spec.reference_points, timed=False)
    arrays = ref.arrays()
    tuning = update_tuning(compiled.default_tuning, reference_speed=reference_speed)
    x = np.asarray(start_state(compiled.controller.model, ref, reference_speed), np.float32)
    cstate = compiled.init_state(0)
    times = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(iterations):
        tic = time.perf_counter()
        _, cstate = compiled.step(cstate, x, tuning, arrays)  # returns host values
        times.append((time.perf_counter() - tic) * 1e3)
        if time.perf_counter() > deadline and len(times) >= 10:
            break
    return np.asarray(times), compiled


def _stats(times: np.ndarray) -> dict[str, Any]:
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "iterations": len(times),
    }


def _backend_entries(bench: LatencyBench, track: Track) -> dict[str, Any]:
    """JAX vs ONNX through the deployment engine, for every learned controller asked for."""
    out: dict[str, Any] = {}
    for name in bench.controllers:
        spec = controller_spec(name)
        if not onnx_runs(spec):
            continue
        for k in bench.num_samples if spec.samples else (0,):
            pair = {}
            for backend in ("jax", "onnx"):
                spec = EngineSpec(controller=name, num_samples=k, backend=backend)
                times, compiled = time_engine(
                    spec,
                    track,
                    bench.iterations,
                    bench.max_seconds_per_entry,
                    bench.reference_speed,
                )
                entry = {"controller": name, "num_samples": k, "backend": backend}
                entry.update(_stats(times))
                if backend == "onnx":
                    entry["provider"] = compiled.provider
                pair[backend] = entry
            pair["onnx"]["ratio_to_jax"] = pair["onnx"]["p50_ms"] / pair["jax"]["p50_ms"]
            for backend, entry in pair.items():
                out[f"{name}_k{k}_engine_{backend}"] = entry
    return out


def _latency_controller(name: str, overrides: dict[str, Any]) -> tuple[Any, str]:
    """The shipped bundle for learned names when present (else random weights of the default
    architecture: same cost per step, recorded in the JSON as ``"weights": "random"``)."""
    if controller_spec(name).learned:
        try:
            path = shipped_model_path(name)
        except BundleError:
            return make_controller(name, **overrides), "random"
        return controller_from_bundle(path, **overrides), str(path.name)
    return make_controller(name, **overrides), "n/a"


def run(bench: LatencyBench) -> dict[str, Any]:
    track = load_track(bench.track)
    entries: list[tuple[str, int, int | None]] = [
        ("mppi", bench.baseline_samples, bench.baseline_horizon)
    ]
    for name in bench.controllers:
        for k in bench.num_samples if controller_spec(name).samples else (0,):
            horizon = bench.horizon if name == BASELINE[0] else None  # the baseline's horizon
            if (name, k, horizon) not in entries:
                entries.append((name, k, horizon))
    results: dict[str, Any] = {}
    for name, k, horizon in entries:
        overrides = controller_spec(name).overrides(k, horizon)
        ctrl, weights = _latency_controller(name, overrides)
        times = time_controller(
            ctrl, track, bench.iterations, bench.max_seconds_per_entry, bench.reference_speed
        )
        results[entry_name(name, k, horizon)] = {
            "controller": name,
            "num_samples": k,
            "horizon": horizon if horizon is not None else getattr(ctrl, "reference_horizon", 1),
            **_stats(times),
            "weights": weights,
        }
    base = results[entry_name("mppi", bench.baseline_samples, bench.baseline_horizon)]["p50_ms"]
    for entry in results.values():
        entry["ratio_to_mppi"] = entry["p50_ms"] / base
    if bench.backend == "onnx":
        results.update(_backend_entries(bench, track))
    return {
        "device": f"{jax.default_backend()}: {jax.devices()[0].device_kind}",
        "baseline": entry_name("mppi", bench.baseline_samples, bench.baseline_horizon),
        "results": results,
    }
