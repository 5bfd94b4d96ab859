"""Whether a model, shape or backend change can run, checked before it is accepted (so that a
rejected parameter keeps its old value and the running model keeps driving). No ROS."""

from __future__ import annotations

from typing import Any

from mppi_ros.core.bundles import (
    BundleError,
    check_listed_files,
    read_manifest,
    resolve_model,
    verify_checksums,
)
from mppi_ros.core.catalog import controller_spec, require_kind
from mppi_ros.engine import BACKENDS, CompiledController, onnx_runs
from mppi_ros.export.onnx_runtime import OnnxBundleError, read_onnx_spec

# What the parameter check reads of a bundle, on the node's executor (rclpy serves
# set_parameters there, so odometry waits meanwhile): the manifest, the controller kind, the
# listed files and their sizes, and their SHA-256 when they total at most this (~10-20 ms;
# the shipped bundles are 0.4-2.7 MB), so a corrupt or tampered bundle is refused in the
# reply. Loading the weights (~70 ms even warm: templates are traced), larger bundles'
# checksums and the dynamics model are the build's, on its worker; a failure there reverts
# the parameter and is published (``last_error``). A listed 768 MB file hashed in the check
# gave stale_state and executor_blocked within 0.6 s.
INLINE_CHECK_BYTES = 8 * 2**20


def check_model_path(
    controller: str, value: str, inline_bytes: int = INLINE_CHECK_BYTES
) -> str | None:
    """Why bundle ``value`` cannot run ``controller``, as far as the parameter check reads it
    (see :data:`INLINE_CHECK_BYTES`), or None."""
    spec = controller_spec(controller)
    if not spec.learned:
        return f"controller {spec.name!r} takes no model_path" if value else None
    try:
        path = resolve_model(value or spec.default_model)
        manifest = read_manifest(path)
        require_kind(path, manifest, spec.name)
        if check_listed_files(path, manifest) <= inline_bytes:
            verify_checksums(path, manifest)
    except BundleError as err:
        return str(err)
    return None


def check_same_vehicle(compiled: CompiledController, active: CompiledController | None) -> None:
    """The build's half of :func:`check_model_path`, which loads no weights (so it does not
    know a bundle's dynamics model).

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
) -> str | None:
    """Why the ``model_path`` / ``backend`` changes (over the ``current`` values) cannot run,
    or None when they can."""
    get = lambda name: changes.get(name, current[name])
    if "model_path" in changes:
        reason = check_model_path(controller, changes["model_path"])
        if reason is not None:
            return reason
    if {"backend", "model_path"} & set(changes):
        return check_backend(controller, get("backend"), get("model_path"))
    return None
