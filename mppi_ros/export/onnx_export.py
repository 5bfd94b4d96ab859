"""ONNX export of a bundle's complete deployed controller step (jax2onnx).

The exported graph is :func:`mppi_ros.engine.policy_step` with the noise as an input: track
projection and reference window, feature normalisation, network, reparameterised samples,
one model step, stage cost with border and box penalties, softmax weights and the weighted
mean, then the clip to the control limits. Network weights are baked in as initialisers;
every live-tunable value (temperature, weights, model parameters, ...) and the raceline are
inputs, so tuning and new reference paths never need a new export.

Classic MPPI has no bundle: ``export_onnx("mppi", out=FILE, num_samples=K, horizon=H)``
writes its step with the warm start as explicit graph state (inputs ``carry.plan`` and
``carry.scale``, outputs ``next.plan`` and ``next.scale``) and the noise ``(K, H, nu)`` as an
input; the spec travels in the file's metadata.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.checksums import sha256_file
from mppi_ros.core.bundles import MANIFEST, PARAMS, BundleError, load_bundle, resolve_model
from mppi_ros.core.catalog import controller_names, controller_spec
from mppi_ros.engine import (
    EngineSpec,
    build_controller,
    placeholder_track,
    policy_step,
    tuning_input_names,
)
from mppi_ros.export.onnx_runtime import (
    CARRY_PREFIX,
    NEXT_PREFIX,
    ONNX_FILE,
    SPEC_KEY,
    TRACK_FIELDS,
    TRACK_PREFIX,
    TUNING_PREFIX,
)

OPSET = 23


def _exportable() -> str:
    return ", ".join(controller_names(lambda spec: spec.exportable))


def export_onnx(
    model: str | Path,
    out: str | Path | None = None,
    reference_points: int = 2048,
    num_samples: int = 0,
    horizon: int = 0,
    control_period: float = 0.01,
    config: dict[str, Any] | None = None,
) -> Path:
    """Exports ``model``'s controller step; returns the written file.

    Without ``out`` the graph goes into the bundle as ``controller.onnx`` and the manifest
    gains its SHA-256 and an ``onnx`` section (input / output names and shapes, noise shape,
    the reference point count, default tuning values). With ``out`` only that file is written.
    ``model`` may also name a classic controller (``mppi``); then ``out`` is required and
    ``num_samples`` / ``horizon`` / ``control_period`` fix its static settings (0: defaults),
    and ``config`` its chosen config fields (e.g. EM-MPPI's ``family``).

    Raises:
        BundleError: The bundle is invalid or its controller kind cannot be exported.
        ValueError: A classic controller without ``out``.
    """
    from jax2onnx import to_onnx

    # jax2onnx's IR serialiser warns about untyped scalar constants it then drops.
    logging.getLogger("onnx_ir.serde").setLevel(logging.ERROR)

    classic = controller_spec(str(model)) if str(model) in controller_names() else None
    if classic is not None and not classic.learned:
        if not classic.exportable:
            raise BundleError(f"cannot export {str(model)!r}; valid: {_exportable()}")
        if out is None:
            raise ValueError(f"classic {model!r} has no bundle to export into; pass out=FILE")
        kind, path, params_sha = str(model), None, None
        spec_in = EngineSpec(
            controller=kind,
            num_samples=num_samples,
            horizon=horizon,
            control_period=control_period,
            config=tuple((config or {}).items()),
        )
    else:
        path = resolve_model(model)
        bundle = load_bundle(path)
        if not controller_spec(bundle.controller).exportable:
            raise BundleError(
                f"cannot export a {bundle.controller!r} bundle; valid: {_exportable()}"
            )
        kind, params_sha = bundle.controller, bundle.manifest["files"][PARAMS]["sha256"]
        spec_in = EngineSpec(controller=kind, model_path=str(path))
    ctrl, model_id = build_controller(spec_in)
    carry = controller_spec(kind).onnx_carry
    tuning = ctrl.default_tuning()
    tuning_leaves = jax.tree.leaves(tuning)
    tuning_names = tuning_input_names(tuning)
    track = placeholder_track(reference_points).arrays()
    track_values = [getattr(track, f) for f in TRACK_FIELDS]
    # The initial state holds the weights (baked into the graph) and the carry's start values.
    cstate = ctrl.init(jax.random.PRNGKey(0))
    noise_shape = tuple(ctrl.noise_shape)
    step = policy_step(ctrl, given_noise=True)
    n_tuning = len(tuning_leaves)
    tuning_def = jax.tree.structure(tuning)
    nx = ctrl.model.state_dim
    noise = jnp.zeros(noise_shape) if noise_shape else None
    probe = jax.eval_shape(step, cstate, jnp.zeros(nx), tuning, track, noise)
    has_prediction = probe[2][0] is not None  # single-step DPC predicts nothing

    def exported(state, *inputs):
        if noise_shape:
            noise, inputs = inputs[0], inputs[1:]
        else:
            noise = None
        carried = dict(zip(carry, inputs[: len(carry)], strict=True))
        inputs = inputs[len(carry) :]
        # Inputs are float32; integer fields (EM's iteration count) get their own type back.
        cast = [
            v.astype(ref.dtype) for v, ref in zip(inputs[:n_tuning], tuning_leaves, strict=True)
        ]
        tun = jax.tree.unflatten(tuning_def, cast)
        trk = type(track)(**dict(zip(TRACK_FIELDS, inputs[n_tuning:], strict=True)))
        packed, new_cstate, (predicted, _) = step(cstate.replace(**carried), state, tun, trk, noise)
        outs = (packed, predicted) if has_prediction else (packed,)
        return (*outs, *(getattr(new_cstate, f) for f in carry))

    specs = [jax.ShapeDtypeStruct((nx,), jnp.float32)]
    names = ["state"]
    # K stays symbolic for single-step controllers: num_samples is chosen at run time, no
    # re-export. A horizon scan with a symbolic batch is mis-converted by jax2onnx 0.17 (its
    # scan inputs get shape (H, 1, nu)), so classic MPPI fixes K at export.
    symbolic_k = not carry
    if noise_shape:
        specs.append(
            ("K", *noise_shape[1:])
            if symbolic_k
            else jax.ShapeDtypeStruct(noise_shape, jnp.float32)
        )
        names.append("noise")
    for field in carry:
        specs.append(jax.ShapeDtypeStruct(getattr(cstate, field).shape, jnp.float32))
        names.append(CARRY_PREFIX + field)
    for name, leaf in zip(tuning_names, tuning_leaves, strict=True):
        specs.append(jax.ShapeDtypeStruct(np.shape(leaf), jnp.float32))
        names.append(name)
    for field, value in zip(TRACK_FIELDS, track_values, strict=True):
        specs.append(jax.ShapeDtypeStruct(np.shape(value), jnp.float32))
        names.append(TRACK_PREFIX + field)
    outputs = ["packed", "predicted_states"] if has_prediction else ["packed"]
    outputs += [NEXT_PREFIX + field for field in carry]
    proto = to_onnx(
        exported,
        specs,
        model_name=f"mppi_ros_{kind}",
        opset=OPSET,
        input_names=names,
        output_names=outputs,
    )
    from importlib.metadata import version

    spec = {
        "exporter": f"jax2onnx {version('jax2onnx')}",
        "opset": OPSET,
        "controller": kind,
        "model_id": model_id,
        "params_sha256": params_sha,
        "noise_shape": (["K", *noise_shape[1:]] if symbolic_k else list(noise_shape))
        if noise_shape
        else [],
        "num_samples": noise_shape[0] if noise_shape else 0,
        "reference_points": reference_points,
        "inputs": {n: list(getattr(s, "shape", s)) for n, s in zip(names, specs, strict=True)},
        "outputs": outputs,
        "packed": [*ctrl.model.control_names, "lateral_error", "finite"],
        "tuning": {
            n[len(TUNING_PREFIX) :]: np.asarray(v).tolist()
            for n, v in zip(tuning_names, tuning_leaves, strict=True)
        },
        "carry": {f: np.asarray(getattr(cstate, f)).tolist() for f in carry},
    }
    entry = proto.metadata_props.add()  # the spec travels with the file too
    entry.key, entry.value = SPEC_KEY, json.dumps(spec)
    data = proto.SerializeToString()
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target
    target = path / ONNX_FILE
    target.write_bytes(data)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"][ONNX_FILE] = {"sha256": sha256_file(target), "bytes": len(data)}
    manifest["onnx"] = spec
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path / MANIFEST)
    return target
