"""ONNX export and the onnxruntime backend: parity with the JAX step for the same noise, a
closed lap on either backend, a JAX-free runtime, and clear rejections of bad exports."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mppi_ros.checksums import sha256_file
from mppi_ros.core.bundles import BundleError, load_bundle
from mppi_ros.core.catalog import shipped_model_path
from mppi_ros.core.tracks import generate_track, load_track
from mppi_ros.engine import (
    EngineSpec,
    build_controller,
    compile_controller,
    engine_policy_step,
    policy_step,
    reference_track,
)
from mppi_ros.export.onnx_export import export_onnx
from mppi_ros.export.onnx_runtime import (
    TRACK_FIELDS,
    OnnxBundleError,
    OnnxPolicy,
    track_inputs,
)
from mppi_ros.sim.closed_loop import SimConfig, run_closed_loop

POINTS = 2048
STATES = 1000


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Fresh exports of copies of the shipped bundles (the test exercises the exporter)."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name in ("step_mppi", "dpc"):
        path = root / name
        shutil.copytree(shipped_model_path(name), path, ignore=shutil.ignore_patterns("training"))
        export_onnx(path, reference_points=POINTS)
        out[name] = path
    return out


def random_states(model, track, count: int, rng: np.random.Generator) -> np.ndarray:
    """States around the raceline: lateral offsets, heading errors, speeds, slip.

    Positions are drawn between raceline points (not on a point's normal, which is the
    bisector where the two nearest segments tie exactly and rounding alone picks one).
    """
    idx = rng.integers(0, len(track.xy), count)
    frac = rng.uniform(0.05, 0.95, count)[:, None]
    nxt = (idx + 1) % len(track.xy)
    base = track.xy[idx] + frac * (track.xy[nxt] - track.xy[idx])
    seg = track.xy[nxt] - track.xy[idx]
    psi = np.arctan2(seg[:, 1], seg[:, 0])
    offset = rng.uniform(-0.8, 0.8, count)
    x = np.zeros((count, model.state_dim), np.float32)
    x[:, 0] = base[:, 0] - np.sin(psi) * offset
    x[:, 1] = base[:, 1] + np.cos(psi) * offset
    x[:, 2] = rng.uniform(-0.3, 0.3, count)
    x[:, 3] = rng.uniform(1.0, 12.0, count)
    x[:, 4] = psi + rng.uniform(-0.4, 0.4, count)
    x[:, 5] = rng.uniform(-1.0, 1.0, count)
    x[:, 6] = rng.uniform(-0.1, 0.1, count)
    return x


@pytest.mark.parametrize("name", ["step_mppi", "dpc"])
def test_onnx_step_equals_jax_step_for_the_same_noise(exported, name):
    """1,000 random states over three tracks: every control within 1e-4 (absolute)."""
    path = exported[name]
    policy = OnnxPolicy(path, providers=["CPUExecutionProvider"])
    ctrl, _ = build_controller(EngineSpec(controller=name, model_path=str(path)))
    tuning = ctrl.default_tuning()
    cstate = ctrl.init(jax.random.PRNGKey(0))
    step = policy_step(ctrl, given_noise=True)
    batched = jax.jit(
        jax.vmap(lambda x, noise, trk: step(cstate, x, tuning, trk, noise)[0], (0, 0, None))
    )
    rng = np.random.default_rng(7)
    tracks = [load_track("default"), load_track("sprint"), generate_track(seed=321)]
    worst = 0.0
    for i, track in enumerate(tracks):
        ref = reference_track(track, POINTS, timed=False)
        arrays = ref.arrays()
        feeds = track_inputs(*(np.asarray(getattr(arrays, f)) for f in TRACK_FIELDS))
        count = STATES // len(tracks) + (1 if i == 0 else 0)
        states = random_states(ctrl.model, ref, count, rng)
        shape = (count, *policy.noise_shape) if policy.noise_shape else (count, 0)
        noise = rng.standard_normal(shape, dtype=np.float32)
        want = np.asarray(batched(jnp.asarray(states), jnp.asarray(noise), arrays))
        for k in range(count):
            action, info = policy.step(
                states[k], feeds, noise=noise[k] if policy.noise_shape else None
            )
            assert info.finite
            worst = max(worst, float(np.max(np.abs(action - want[k, :-2]))))
            assert info.lateral_error == pytest.approx(want[k, -2], abs=1e-4)
    assert worst <= 1e-4, f"largest |onnx - jax| = {worst}"


@pytest.mark.slow
def test_exported_model_drives_a_lap_like_jax(exported):
    """Same closed lap (sprint, 20 Hz control) on both backends: both finish it without
    border violations and their tracking errors agree within sampling noise."""
    track = load_track("sprint")
    config = SimConfig(laps=1, seed=3)
    results = {}
    for backend in ("jax", "onnx"):
        spec = EngineSpec(
            controller="step_mppi", model_path=str(exported["step_mppi"]), backend=backend
        )
        compiled = compile_controller(spec)
        results[backend] = run_closed_loop(
            compiled.controller,
            track,
            tuning=compiled.default_tuning,
            config=config,
            policy_step=engine_policy_step(compiled, track),
            cstate=compiled.init_state(3),
        )
    for backend, res in results.items():
        assert res.stop_reason == "laps_completed", backend
        assert float(np.max(res.violation)) == 0.0, backend
    jax_err = float(np.mean(np.abs(results["jax"].lateral_error)))
    onnx_err = float(np.mean(np.abs(results["onnx"].lateral_error)))
    assert onnx_err == pytest.approx(jax_err, rel=0.25, abs=0.01), (jax_err, onnx_err)
    assert results["onnx"].lap_times[0] == pytest.approx(results["jax"].lap_times[0], rel=0.02)


def test_runtime_runs_without_jax(exported, tmp_path):
    """The onnxruntime backend imports no JAX: a process where ``import jax`` fails runs a
    step and gets the JAX engine's action for the same noise."""
    path = exported["step_mppi"]
    ref = reference_track(load_track("default"), POINTS, timed=False)
    arrays = ref.arrays()
    np.savez(tmp_path / "track.npz", **{f: np.asarray(getattr(arrays, f)) for f in TRACK_FIELDS})
    ctrl, _ = build_controller(EngineSpec(controller="step_mppi", model_path=str(path)))
    state = random_states(ctrl.model, ref, 1, np.random.default_rng(1))[0]
    noise = np.random.default_rng(2).standard_normal((1024, 2), dtype=np.float32)
    np.save(tmp_path / "state.npy", state)
    np.save(tmp_path / "noise.npy", noise)
    script = f"""
import sys
sys.modules["jax"] = None  # any import of JAX now raises ImportError
import numpy as np
from mppi_ros.export.onnx_runtime import OnnxPolicy, track_inputs
track = np.load({str(tmp_path / "track.npz")!r})
policy = OnnxPolicy({str(path)!r})
action, info = policy.step(
    np.load({str(tmp_path / "state.npy")!r}),
    track_inputs(*(track[f] for f in {TRACK_FIELDS!r})),
    noise=np.load({str(tmp_path / "noise.npy")!r}),
)
assert not any(m == "jax" or m.startswith("jax.") for m in sys.modules if sys.modules[m])
print(" ".join(repr(float(a)) for a in action), policy.provider)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    *values, provider = out.stdout.split()
    assert provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    step = jax.jit(policy_step(ctrl, given_noise=True))
    cstate = ctrl.init(jax.random.PRNGKey(0))
    want = np.asarray(step(cstate, state, ctrl.default_tuning(), arrays, noise)[0])[:2]
    np.testing.assert_allclose([float(v) for v in values], want, atol=1e-4)


def test_export_is_recorded_in_the_manifest_and_verified(exported, tmp_path):
    path = exported["dpc"]
    manifest = json.loads((path / "manifest.json").read_text())
    entry = manifest["files"]["controller.onnx"]
    assert entry["sha256"] == sha256_file(path / "controller.onnx")
    assert manifest["onnx"]["noise_shape"] == [] and manifest["onnx"]["reference_points"] == POINTS
    assert load_bundle(path).manifest["onnx"]["model_id"].startswith("dpc@")
    tampered = tmp_path / "tampered"
    shutil.copytree(path, tampered)
    data = bytearray((tampered / "controller.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / "controller.onnx").write_bytes(bytes(data))
    with pytest.raises(OnnxBundleError, match="does not match its SHA-256"):
        OnnxPolicy(tampered)
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        compile_controller(EngineSpec(controller="dpc", model_path=str(tampered), backend="onnx"))


def test_onnx_backend_rejects_what_it_cannot_run(exported, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(exported["dpc"], bare)
    (bare / "controller.onnx").unlink()
    manifest = json.loads((bare / "manifest.json").read_text())
    del manifest["files"]["controller.onnx"], manifest["onnx"]
    (bare / "manifest.json").write_text(json.dumps(manifest))
    onnx = lambda **kw: EngineSpec(backend="onnx", **kw)
    with pytest.raises(BundleError, match="mppi-ros export onnx"):
        compile_controller(onnx(controller="dpc", model_path=str(bare)))
    with pytest.raises(BundleError, match="learned controllers"):
        compile_controller(onnx(controller="mppi"))
    with pytest.raises(BundleError, match="reference_points 2048, not 1024"):
        compile_controller(
            onnx(controller="dpc", model_path=str(exported["dpc"]), reference_points=1024)
        )
    with pytest.raises(ValueError, match="valid: jax, onnx"):
        compile_controller(EngineSpec(controller="dpc", backend="tensorrt"))
    # A copied (renamed) bundle keeps a valid export: it is bound to the weights, not the name.
    renamed = tmp_path / "renamed"
    shutil.copytree(exported["dpc"], renamed)
    assert compile_controller(onnx(controller="dpc", model_path=str(renamed))).model_id.startswith(
        "renamed@"
    )
    # New weights under an old export: the export no longer matches the bundle.
    stale = tmp_path / "stale"
    shutil.copytree(exported["dpc"], stale)
    from flax import serialization

    state = serialization.msgpack_restore((stale / "params.msgpack").read_bytes())
    state["input_mean"] = state["input_mean"] + 1.0
    (stale / "params.msgpack").write_bytes(serialization.msgpack_serialize(state))
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["files"]["params.msgpack"]["sha256"] = sha256_file(stale / "params.msgpack")
    (stale / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="exported from other weights"):
        compile_controller(onnx(controller="dpc", model_path=str(stale)))


def test_onnx_num_samples_is_a_run_time_choice(exported):
    """K is symbolic in the graph: a K = 256 engine runs the same file with 256 samples."""
    spec = EngineSpec(controller="step_mppi", model_path=str(exported["step_mppi"]))
    small = compile_controller(dataclasses.replace(spec, num_samples=256, backend="onnx"))
    assert small._step[0].noise_shape == (256, 2)
    track = reference_track(load_track("default"), POINTS, timed=False)
    state = random_states(small.controller.model, track, 1, np.random.default_rng(0))[0]
    result, _ = small.step(small.init_state(0), state, small.default_tuning, track.arrays())
    assert result.finite and result.action.shape == (2,)


def test_the_engine_runs_onnx_on_the_calling_thread(exported):
    """The engine's session starts no intra-op pool: pool threads would not share a real-time
    control thread's priority, and on a pinned core the waiting caller starves them. The
    default session (one thread per core) does start a pool, so the count can tell."""

    def threads_started_by(make) -> int:
        before = len(os.listdir("/proc/self/task"))
        held = make()  # keep the session (and any pool) alive while counting
        started = len(os.listdir("/proc/self/task")) - before
        del held
        return started

    path = exported["dpc"]
    spec = EngineSpec(controller="dpc", model_path=str(path), backend="onnx")
    engine = compile_controller(spec)
    assert engine._step[0].session.get_session_options().intra_op_num_threads == 1
    assert threads_started_by(lambda: OnnxPolicy(path, threads=1)) == 0
    if len(os.sched_getaffinity(0)) > 1:
        assert threads_started_by(lambda: OnnxPolicy(path, threads=0)) > 0


def classic_export_pair(path, spec: EngineSpec, seed: int):
    """The exported graph at ``path`` and the same controller's jitted JAX step, with the
    `sprint` reference as both take it and a random state on it."""
    policy = OnnxPolicy(path, providers=["CPUExecutionProvider"])
    ctrl, _ = build_controller(spec)
    step = jax.jit(policy_step(ctrl, given_noise=True))
    ref = reference_track(load_track("sprint"), POINTS, timed=False)
    arrays = ref.arrays()
    feeds = track_inputs(*(np.asarray(getattr(arrays, f)) for f in TRACK_FIELDS))
    rng = np.random.default_rng(seed)
    return policy, ctrl, step, arrays, feeds, random_states(ctrl.model, ref, 1, rng)[0], rng


def test_classic_mppi_exports_with_its_warm_start_as_graph_state(tmp_path):
    """Classic MPPI (no bundle): 25 consecutive steps along a drifting state with the warm
    start carried explicitly through the graph equal the JAX steps for the same noise."""
    with pytest.raises(ValueError, match="pass out=FILE"):
        export_onnx("mppi")
    path = export_onnx("mppi", out=tmp_path / "mppi.onnx", num_samples=64, horizon=10)
    spec = EngineSpec(controller="mppi", num_samples=64, horizon=10)
    policy, ctrl, step, arrays, feeds, state, rng = classic_export_pair(path, spec, seed=5)
    assert policy.noise_shape == (64, 10, 2)
    tuning = ctrl.default_tuning()
    cstate, carry = ctrl.init(jax.random.PRNGKey(0)), policy.init_carry()
    for _ in range(25):
        noise = rng.standard_normal(policy.noise_shape, dtype=np.float32)
        packed, cstate, (predicted, _) = step(cstate, state, tuning, arrays, noise)
        action, info = policy.step(state, feeds, noise=noise, carry=carry)
        np.testing.assert_allclose(action, np.asarray(packed)[:2], atol=1e-4)
        np.testing.assert_allclose(info.carry["plan"], np.asarray(cstate.plan), atol=1e-4)
        np.testing.assert_allclose(info.predicted_states, np.asarray(predicted), atol=1e-3)
        carry = info.carry
        state = state + np.float32(0.01) * rng.standard_normal(state.shape, dtype=np.float32)
    # The warm start did move: a plan that stayed at zero would make the carry check empty.
    assert np.abs(carry["plan"]).max() > 0.05
    with pytest.raises(OnnxBundleError, match="exported for num_samples 64, not 128"):
        OnnxPolicy(path, num_samples=128)
