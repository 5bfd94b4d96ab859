"""The bundle format shared by every codec: a folder with ``manifest.json`` and
``params.msgpack`` (and optionally ``controller.onnx``). Saving records the SHA-256 of every
file; loading validates the schema and the checksums and restores the weights against the
architecture's template, failing with one sentence that names the problem.

Weights are Flax msgpack (``flax.serialization``): plain arrays and dicts, never pickle, never
code.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from mppi_ros.checksums import sha256_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "params.msgpack"
_REQUIRED = {
    "format_version": int,
    "controller": str,
    "dynamics": dict,
    "dt": (int, float),
    "config": dict,
    "inputs": dict,
    "outputs": dict,
    "architecture": dict,
    "training": dict,
    "created": str,
    "files": dict,
}


class BundleError(ValueError):
    """A model bundle that must not be loaded; the message names the bundle and the problem."""


def jsonable(value: Any) -> Any:
    """``value`` with arrays and NumPy scalars turned into JSON types."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def freeze(value: Any) -> Any:
    """A JSON list as a tuple (hashable static config)."""
    return tuple(value) if isinstance(value, list) else value


def config_from_manifest(config_cls: type, values: Any, path: Path) -> Any:
    """``config_cls`` from a manifest's ``config`` object, each field it gives checked against
    the field's annotation (int, float, str, bool, ``tuple[X, ...]`` from a list, ``X | None``);
    fields the class lacks are ignored.

    Raises:
        BundleError: A field of the wrong JSON type, or a value the config refuses.
    """
    if not isinstance(values, dict):
        raise BundleError(f"model bundle {path}: config must be a JSON object")
    hints = typing.get_type_hints(config_cls)
    given = {}
    for f in dataclasses.fields(config_cls):
        if f.name in values:
            value = _typed(values[f.name], hints[f.name])
            if value is _WRONG:
                raise BundleError(
                    f"model bundle {path}: config field {f.name!r} must be {hints[f.name]}, "
                    f"got {values[f.name]!r}"
                )
            given[f.name] = value
    try:
        return config_cls(**given)
    except (TypeError, ValueError) as err:
        raise BundleError(f"model bundle {path}: invalid controller config ({err})") from None


_WRONG = object()


def _typed(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` describes it, or :data:`_WRONG`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            if (typed := _typed(value, arg)) is not _WRONG:
                return typed
        return _WRONG
    if origin is tuple:
        if not isinstance(value, list):
            return _WRONG
        items = [_typed(v, args[0]) for v in value]
        return _WRONG if any(i is _WRONG for i in items) else tuple(items)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if hint is bool:
        return value if isinstance(value, bool) else _WRONG
    if hint is int:
        return int(value) if number and math.isfinite(value) and value == int(value) else _WRONG
    if hint is float:
        return float(value) if number else _WRONG
    if hint is str:
        return value if isinstance(value, str) else _WRONG
    return _WRONG


def write_bundle(
    directory: Path, manifest: dict[str, Any], state: Any, extra_files: dict[str, bytes]
) -> Path:
    """Writes the weights ``state`` (host arrays) and ``extra_files``, then the manifest with
    the format version, creation time and every file's SHA-256."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PARAMS).write_bytes(serialization.to_bytes(state))
    for name, data in extra_files.items():
        (directory / name).write_bytes(data)
    files = {
        name: {"sha256": sha256_file(directory / name), "bytes": (directory / name).stat().st_size}
        for name in [PARAMS, *sorted(extra_files)]
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        **manifest,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Reads and schema-checks ``manifest.json`` (no weights loaded)."""
    path = Path(path)
    where = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist or is not a folder")
    try:
        manifest = json.loads(where.read_text())
    except FileNotFoundError:
        raise BundleError(f"model bundle {path} has no {MANIFEST}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"model bundle {path}: {MANIFEST} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"model bundle {path}: {MANIFEST} must hold a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in manifest:
            raise BundleError(f"model bundle {path}: {MANIFEST} lacks the field {key!r}")
        if not isinstance(manifest[key], kind):
            raise BundleError(f"model bundle {path}: {MANIFEST} field {key!r} has the wrong type")
    if manifest["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {path} has format version {manifest['format_version']}, this "
            f"mppi_ros reads version {FORMAT_VERSION}"
        )
    return manifest


def check_listed_files(path: Path, manifest: dict[str, Any]) -> int:
    """Every file listed in the manifest exists with its listed size (no hashing: cheap for
    any size); returns their total bytes.

    Raises:
        BundleError: A missing, misnamed or resized file (one sentence).
    """
    if PARAMS not in manifest["files"]:
        raise BundleError(f"model bundle {path}: the manifest does not list {PARAMS}")
    total = 0
    for name, entry in manifest["files"].items():
        file = path / name
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(
                f"model bundle {path}: the manifest's entry for {name!r} must be an object "
                'with a "sha256" string'
            )
        if Path(name).name != name:
            raise BundleError(f"model bundle {path}: file name {name!r} must not contain a path")
        if not file.is_file():
            raise BundleError(f"model bundle {path} is missing {name}")
        size, listed = file.stat().st_size, entry.get("bytes")
        if isinstance(listed, int) and size != listed:  # before hashing what may be gigabytes
            raise BundleError(
                f"model bundle {path}: {name} has {size} bytes, the manifest lists {listed} "
                "(truncated or modified file)"
            )
        total += size
    return total


def verify_checksums(path: Path, manifest: dict[str, Any]) -> None:
    """Every file listed in the manifest exists with its size and matches its SHA-256."""
    check_listed_files(path, manifest)
    for name, entry in manifest["files"].items():
        file = path / name
        if sha256_file(file) != entry["sha256"]:
            raise BundleError(
                f"model bundle {path}: {name} does not match its SHA-256 in the manifest "
                f"(corrupt or modified file)"
            )


def read_verified_manifest(path: Path, controller: str) -> dict[str, Any]:
    """The schema-checked manifest of a bundle whose files match their checksums and which
    holds ``controller``."""
    manifest = read_manifest(path)
    verify_checksums(path, manifest)
    if manifest["controller"] != controller:
        raise BundleError(
            f"model bundle {path} is for controller {manifest['controller']!r}, not {controller!r}"
        )
    return manifest


def read_weights(path: Path, template: dict[str, Any]) -> Any:
    """``path``'s weights file, restored and checked against ``template`` (shapes, dtypes,
    finite values, positive standard deviations)."""
    try:
        state = serialization.msgpack_restore((path / PARAMS).read_bytes())
    except (ValueError, TypeError) as err:  # msgpack's errors derive from ValueError
        raise BundleError(
            f"model bundle {path}: {PARAMS} is not readable msgpack ({err})"
        ) from None
    return _check_against_template(path, state, template)


def _check_against_template(path: Path, state: Any, template: dict[str, Any]) -> dict[str, Any]:
    """Same tree, shapes and float32 dtype as the architecture; returns jnp arrays."""
    flat_t = dict(_flatten(template))
    flat_s = dict(_flatten(state)) if isinstance(state, dict) else {}
    missing = sorted(set(flat_t) - set(flat_s))
    extra = sorted(set(flat_s) - set(flat_t))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise BundleError(f"model bundle {path}: weights do not match the architecture ({what})")
    for key, ref in flat_t.items():
        got = flat_s[key]
        if not isinstance(got, np.ndarray) or got.shape != ref.shape:
            shape = getattr(got, "shape", type(got).__name__)
            raise BundleError(
                f"model bundle {path}: weight {key} has shape {shape}, the architecture "
                f"needs {ref.shape}"
            )
        if got.dtype != np.float32:
            raise BundleError(f"model bundle {path}: weight {key} is {got.dtype}, not float32")
        if not np.all(np.isfinite(got)):
            raise BundleError(f"model bundle {path}: weight {key} contains NaN or infinity")
    for key in flat_s:
        if key.endswith("std") and np.any(np.asarray(flat_s[key]) <= 0):
            raise BundleError(f"model bundle {path}: {key} must be positive")
    return jax.tree.map(lambda a: jax.numpy.asarray(a), state)


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        out: list[tuple[str, Any]] = []
        for key, value in tree.items():
            out += _flatten(value, f"{prefix}/{key}" if prefix else str(key))
        return out
    return [(prefix, tree)]
