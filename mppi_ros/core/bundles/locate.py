"""Where bundles are found: a path, or a model name searched in the model folders."""

from __future__ import annotations

import os
from pathlib import Path

from mppi_ros.core.bundles.format import MANIFEST, BundleError
from mppi_ros.share import share_search_paths

SHIPPED_PREFIX = "f1tenth_"


def shipped_model_name(controller: str) -> str:
    """The name of a controller's shipped vehicle bundle (``f1tenth_<controller>``)."""
    return SHIPPED_PREFIX + controller


def model_search_paths() -> list[Path]:
    """Where named models are looked up: ``$MPPI_ROS_MODELS`` (``:``-separated), the source
    checkout's ``models/``, the ament share directory's ``models/`` (``colcon build``), then
    ``<sys.prefix>/share/mppi_ros/models`` (see :func:`mppi_ros.share.share_search_paths`)."""
    paths = [Path(p) for p in os.environ.get("MPPI_ROS_MODELS", "").split(os.pathsep) if p]
    return paths + share_search_paths("models")


def resolve_model(name_or_path: str | Path) -> Path:
    """A bundle folder from a path or a model name (``f1tenth_step_mppi``, or ``step_mppi`` /
    ``dpc`` for the shipped weights).

    Anything that looks like a path (absolute, ``./``-relative or with a separator) is only
    looked up there; a bare name is searched in the model folders.

    Raises:
        BundleError: Saying what the path is (missing, a file, a folder without a manifest)
            or naming every place a name was searched.
    """
    path = Path(name_or_path)
    if (path / MANIFEST).is_file():
        return path
    if path.name == MANIFEST and path.is_file():
        return path.parent
    name = str(name_or_path)
    if path.is_file():
        raise BundleError(f"model bundle {name!r} is a file; give its folder (with {MANIFEST})")
    if path.is_absolute() or name.startswith(".") or len(path.parts) > 1:
        what = "a folder without" if path.is_dir() else "no such folder, so no"
        raise BundleError(f"no model bundle {name!r}: {what} {MANIFEST}")
    shipped = name.startswith(SHIPPED_PREFIX)
    candidates = [name] if shipped else [name, shipped_model_name(name)]
    searched: list[str] = []
    for root in model_search_paths():
        for candidate in candidates:
            if (root / candidate / MANIFEST).is_file():
                return root / candidate
            if str(root / candidate) not in searched:
                searched.append(str(root / candidate))
    raise BundleError(
        f"no model bundle {name!r}: no {MANIFEST} in ./{name} or in {', '.join(searched)}"
    )
