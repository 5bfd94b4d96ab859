"""Model bundles: one folder format (:mod:`.format`: manifest, checksums, weights), model
lookup by name or path (:mod:`.locate`) and one codec per bundle kind (:mod:`.policy` for
Step-MPPI / DPC, :mod:`.critic` for softMPCritic). Controllers are built from a loaded bundle
by the controller catalog (:mod:`mppi_ros.core.catalog`), which knows each controller's codec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mppi_ros.core.bundles.critic import (
    SOFT_MPCRITIC,
    CriticBundle,
    load_soft_mpcritic_bundle,
    require_vehicle_bundle,
    save_soft_mpcritic_bundle,
    soft_mpcritic_controller,
)
from mppi_ros.core.bundles.format import (
    MANIFEST,
    PARAMS,
    BundleError,
    check_listed_files,
    read_manifest,
    verify_checksums,
)
from mppi_ros.core.bundles.locate import (
    SHIPPED_PREFIX,
    model_search_paths,
    resolve_model,
    shipped_model_name,
)
from mppi_ros.core.bundles.policy import Bundle, load_bundle, policy_controller, save_bundle

VehicleBundle = Bundle | CriticBundle


@dataclasses.dataclass(frozen=True)
class BundleCodec:
    """How one kind of bundle is read and turned into a controller.

    Attributes:
        kind: The format's name (``policy``, ``critic``).
        load: ``path -> bundle``, fully validated, fit to drive a vehicle.
        controller: ``(bundle, **overrides) -> controller`` carrying the bundle's weights.
    """

    kind: str
    load: Callable[[Path], VehicleBundle]
    controller: Callable[..., Any]


def _load_vehicle_critic(path: Path) -> CriticBundle:
    require_vehicle_bundle(path)
    return load_soft_mpcritic_bundle(path)[0]


POLICY_CODEC = BundleCodec("policy", load_bundle, policy_controller)
CRITIC_CODEC = BundleCodec(
    "critic",
    _load_vehicle_critic,
    lambda bundle, **overrides: soft_mpcritic_controller(bundle.path, **overrides),
)

__all__ = [
    "CRITIC_CODEC",
    "MANIFEST",
    "PARAMS",
    "POLICY_CODEC",
    "SHIPPED_PREFIX",
    "SOFT_MPCRITIC",
    "Bundle",
    "BundleCodec",
    "BundleError",
    "CriticBundle",
    "VehicleBundle",
    "check_listed_files",
    "load_bundle",
    "load_soft_mpcritic_bundle",
    "model_search_paths",
    "read_manifest",
    "resolve_model",
    "save_bundle",
    "save_soft_mpcritic_bundle",
    "shipped_model_name",
    "soft_mpcritic_controller",
    "verify_checksums",
]
