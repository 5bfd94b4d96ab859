"""Whether a model, shape or backend change can run, checked before it is accepted (so that a
rejected parameter keeps its old value and the running model keeps driving). No ROS."""

from __future__ import annotations

from typing import Any

from mppi_ros.core.bundles import BundleError, check_listed_files, read_manifest, resolve_model
from mppi_ros.core.catalog import controller_spec, load_matching_bundle
from mppi_ros.engine import BACKENDS, CompiledController, onnx_runs
from mppi_ros.export.onnx_runtime import OnnxBundleError, read_onnx_spec

# Bundles up to this size are hashed and loaded in the parameter check, on the node's executor
# (tens of ms; a refusal is the reply). A larger one would hold odometry while it is hashed
# (a listed 768 MB file: stale_state and executor_blocked within 0.6 s): its manifest and file
# sizes are checked there, its checksums and weights by the build on its worker, whose failure
# reverts the parameter and is published (``last_error``).
INLINE_CHECK_BYTES = 64 * 2**20


def check_model_path(
    controller: str,
    value: str,
    active: CompiledController | None,
    inline_bytes: int = INLINE_CHECK_BYTES,
) -> str | None:
    """Why bundle ``value`` cannot replace ``active`` (running ``controller``), or None. Over
    ``inline_bytes`` only what needs no hashing is checked (see :data:`INLINE_CHECK_BYTES`)."""
    spec = controller_spec(controller)
    if not spec.learned:
        return f"controller {spec.name!r} takes no model_path" if value else None
    try:
        path = resolve_model(value or spec.default_model)
        manifest = read_manifest(path)
        kind_matches = manifest["controller"] == spec.name  # else the load says which kind
        if kind_matches and check_listed_files(path, manifest) > inline_bytes:
            return None
        bundle = load_matching_bundle(spec.name, value)
    except BundleError as err:
        return str(err)
    if active is not None and bundle.vehicle_model != active.controller.model.name:
        return (
            f"model bundle {bundle.path} was trained for dynamics {bundle.vehicle_model!r}, "
            f"the running model uses {active.controller.model.name!r}"
        )
    return None


def check_same_vehicle(compiled: CompiledController, active: CompiledController | None) -> None:
    """The build's half of :func:`check_model_path` for bundles too large to load there.

    Raises:
        ValueError: ``compiled`` drives another dynamics model than ``active``.
    """
    if active is not None and compiled.controller.model.name != active.controller.model.name:
        raise ValueError(
            f"model bundle {compiled.spec.model_path} was trained for dynamics "
            f"{compiled.controller.model.name!r}, the running model uses "
            f"{active.controller.model.name!r}"
        )


def check_backend(controller: str, backend: str, model_path: str) -> str | None:
    """Why ``backend`` cannot run ``controller`` from ``model_path``, or None."""
    if backend not in BACKENDS:
        return f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
    if backend != "onnx":
        return None
    spec = controller_spec(controller)
    if not onnx_runs(spec):
        return f"backend 'onnx' runs exported learned controllers only, not {spec.name!r}"
    try:
        read_onnx_spec(resolve_model(model_path or spec.default_model))
    except (OnnxBundleError, BundleError) as err:
        return str(err)
    return None


def check_spec_changes(
    controller: str,
    changes: dict[str, Any],
    current: dict[str, Any],
    active: CompiledController | None,
) -> str | None:
    """Why the ``model_path`` / ``backend`` changes (over the ``current`` values) cannot run,
    or None when they can."""
    get = lambda name: changes.get(name, current[name])
    if "model_path" in changes:
        reason = check_model_path(controller, changes["model_path"], active)
        if reason is not None:
            return reason
    if {"backend", "model_path"} & set(changes):
        return check_backend(controller, get("backend"), get("model_path"))
    return None
