"""Whether a model, shape or backend change can run, checked before it is accepted (so that a
rejected parameter keeps its old value and the running model keeps driving). No ROS."""

from __future__ import annotations

from typing import Any

from mppi_ros.core.bundles import BundleError, resolve_model
from mppi_ros.core.catalog import controller_spec, load_matching_bundle
from mppi_ros.engine import BACKENDS, CompiledController, onnx_runs
from mppi_ros.export.onnx_runtime import OnnxBundleError, read_onnx_spec


def check_model_path(controller: str, value: str, active: CompiledController | None) -> str | None:
    """Why bundle ``value`` cannot replace ``active`` (running ``controller``), or None."""
    spec = controller_spec(controller)
    if not spec.learned:
        return f"controller {spec.name!r} takes no model_path" if value else None
    try:
        bundle = load_matching_bundle(spec.name, value)
    except BundleError as err:
        return str(err)
    if active is not None and bundle.vehicle_model != active.controller.model.name:
        return (
            f"model bundle {bundle.path} was trained for dynamics {bundle.vehicle_model!r}, "
            f"the running model uses {active.controller.model.name!r}"
        )
    return None


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
