"""ONNX export of a bundle's complete deployed controller step (jax2onnx).

The exported graph is :func:`mppi_ros.engine.policy_step` with the noise as an input: track
projection and reference window, feature normalisation, network, reparameterised samples,
one model step, stage cost with border and box penalties, softmax weights and the weighted
mean, then the clip to the control limits. Network weights are baked in as initialisers;
every live-tunable value (temperature, weights, model parameters, ...) and the raceline are
inputs, so tuning and new reference paths never need a new export.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.core.bundle import (
    MANIFEST,
    PARAMS,
    BundleError,
    load_bundle,
    resolve_model,
    sha256_file,
)
from mppi_ros.engine import (
    EngineSpec,
    build_controller,
    placeholder_track,
    policy_step,
    tuning_input_names,
)
from mppi_ros.export.onnx_runtime import ONNX_FILE, TRACK_FIELDS, TRACK_PREFIX, TUNING_PREFIX

OPSET = 23
EXPORTABLE = ("step_mppi", "dpc")


def export_onnx(
    model: str | Path,
    out: str | Path | None = None,
    reference_points: int = 2048,
) -> Path:
    """Exports ``model``'s controller step; returns the written file.

    Without ``out`` the graph goes into the bundle as ``controller.onnx`` and the manifest
    gains its SHA-256 and an ``onnx`` section (input / output names and shapes, noise shape,
    the reference point count, default tuning values). With ``out`` only that file is written.

    Raises:
        BundleError: The bundle is invalid or its controller kind cannot be exported.
    """
    from jax2onnx import to_onnx

    # jax2onnx's IR serialiser warns about untyped scalar constants it then drops.
    logging.getLogger("onnx_ir.serde").setLevel(logging.ERROR)

    path = resolve_model(model)
    bundle = load_bundle(path)
    if bundle.controller not in EXPORTABLE:
        raise BundleError(f"cannot export a {bundle.controller!r} bundle; valid: {EXPORTABLE}")
    ctrl, model_id = build_controller(
        EngineSpec(controller=bundle.controller, model_path=str(path))
    )
    tuning = ctrl.default_tuning()
    tuning_leaves = jax.tree.leaves(tuning)
    tuning_names = tuning_input_names(tuning)
    track = placeholder_track(reference_points).arrays()
    track_values = [getattr(track, f) for f in TRACK_FIELDS]
    cstate = ctrl.init(jax.random.PRNGKey(0))  # holds the weights: baked into the graph
    noise_shape = tuple(ctrl.noise_shape)
    step = policy_step(ctrl, given_noise=True)
    n_tuning = len(tuning_leaves)
    tuning_def = jax.tree.structure(tuning)
    has_prediction = bundle.controller == "step_mppi"

    def exported(state, *inputs):
        if noise_shape:
            noise, inputs = inputs[0], inputs[1:]
        else:
            noise = None
        tun = jax.tree.unflatten(tuning_def, inputs[:n_tuning])
        trk = type(track)(**dict(zip(TRACK_FIELDS, inputs[n_tuning:], strict=True)))
        packed, _, predicted = step(cstate, state, tun, trk, noise)
        return (packed, predicted) if has_prediction else packed

    nx = ctrl.model.state_dim
    specs = [jax.ShapeDtypeStruct((nx,), jnp.float32)]
    names = ["state"]
    if noise_shape:
        # K stays symbolic: num_samples is chosen at run time, no re-export.
        specs.append(("K", *noise_shape[1:]))
        names.append("noise")
    for name, leaf in zip(tuning_names, tuning_leaves, strict=True):
        specs.append(jax.ShapeDtypeStruct(np.shape(leaf), jnp.float32))
        names.append(name)
    for field, value in zip(TRACK_FIELDS, track_values, strict=True):
        specs.append(jax.ShapeDtypeStruct(np.shape(value), jnp.float32))
        names.append(TRACK_PREFIX + field)
    outputs = ["packed", "predicted_states"] if has_prediction else ["packed"]
    proto = to_onnx(
        exported,
        specs,
        model_name=f"mppi_ros_{bundle.controller}",
        opset=OPSET,
        input_names=names,
        output_names=outputs,
    )
    from importlib.metadata import version

    spec = {
        "exporter": f"jax2onnx {version('jax2onnx')}",
        "opset": OPSET,
        "model_id": model_id,
        "params_sha256": bundle.manifest["files"][PARAMS]["sha256"],
        "noise_shape": ["K", *noise_shape[1:]] if noise_shape else [],
        "num_samples": noise_shape[0] if noise_shape else 0,
        "reference_points": reference_points,
        "inputs": {n: list(getattr(s, "shape", s)) for n, s in zip(names, specs, strict=True)},
        "outputs": outputs,
        "packed": [*ctrl.model.control_names, "lateral_error", "finite"],
        "tuning": {
            n[len(TUNING_PREFIX) :]: np.asarray(v).tolist()
            for n, v in zip(tuning_names, tuning_leaves, strict=True)
        },
    }
    entry = proto.metadata_props.add()  # the spec travels with the file too
    entry.key, entry.value = "mppi_ros", json.dumps(spec)
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
