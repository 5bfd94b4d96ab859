"""Where the package's share files are (``models/``, ``config/``, ``launch/``).

``setup.py`` installs them under ``<prefix>/share/mppi_ros``; ``colcon build`` puts that
prefix in the ament index, which a sourced ``setup.bash`` names in ``AMENT_PREFIX_PATH``. A
source checkout has them at its root. :func:`share_search_paths` lists, in order:

1. the source checkout the package is imported from (``make install``'s editable install,
   ``colcon build --symlink-install``), so that edited files are the ones used;
2. the ament share directory, ``get_package_share_directory("mppi_ros")``;
3. ``<sys.prefix>/share/mppi_ros`` (``pip install`` into a virtual environment).

ROS-free at import time: ``ament_index_python`` is imported when a lookup runs, and its
absence (or an unset ``AMENT_PREFIX_PATH``) only drops that entry, so that
:mod:`mppi_ros.core` may call this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "mppi_ros"


def checkout_root() -> Path:
    """The folder above the ``mppi_ros`` package: a source checkout's root when run from one."""
    return Path(__file__).resolve().parents[1]


def ament_share_directory(package: str = PACKAGE) -> Path | None:
    """``share/<package>`` of the prefix that registers ``package`` in the ament index.

    Args:
        package: ROS package name.

    Returns:
        The directory, or ``None`` when ``ament_index_python`` is not installed,
        ``AMENT_PREFIX_PATH`` is unset, or no prefix in it registers ``package``.
    """
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        path = Path(get_package_share_directory(package, print_warning=False))
    except (LookupError, OSError, ValueError):  # not registered / AMENT_PREFIX_PATH unset
        return None
    return path if path.is_dir() else None


def share_search_paths(subdir: str = "") -> list[Path]:
    """Candidate folders for ``share/mppi_ros/<subdir>``, best first (see the module doc).

    The checkout's folder is listed only when it exists (an installed package has none);
    the others are listed whether or not they exist, so that an error can name them.

    Args:
        subdir: A folder inside the share directory, e.g. ``"models"`` or ``"config"``.

    Returns:
        Distinct paths, in lookup order.
    """
    paths: list[Path] = []
    checkout = checkout_root() / subdir
    if (checkout_root() / "package.xml").is_file() and checkout.is_dir():
        paths.append(checkout)
    ament = ament_share_directory()
    if ament is not None:
        paths.append(ament / subdir)
    paths.append(Path(sys.prefix) / "share" / PACKAGE / subdir)
    unique: list[Path] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique
