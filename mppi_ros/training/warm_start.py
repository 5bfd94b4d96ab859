"""``init_from``: starting a run from another bundle's weights (every parameter that matches
in path and shape is copied; the rest keep their fresh initialisation)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mppi_ros.core.bundles import BundleError, load_bundle, resolve_model
from mppi_ros.core.networks import refold_input_normalisation
from mppi_ros.training.common import TrainingError

Array = jax.Array


def copy_matching_params(params: Any, source: str, stats: tuple[Any, ...]) -> Any:
    """``params`` with every parameter of the bundle ``source`` of the same path and shape
    copied in.

    Args:
        params: The fresh parameter tree of this run's network.
        source: A model name or bundle folder (``init_from``).
        stats: This run's input statistics ``(mean, std)`` the network normalises with.

    Raises:
        TrainingError: ``source`` does not load, or shares no parameter with ``params``.
    """
    try:
        bundle = load_bundle(resolve_model(source))
    except (BundleError, FileNotFoundError) as err:
        raise TrainingError(f"init_from: {err}") from err
    # The donor was trained on its own input statistics; re-expressing its first layer
    # for this run's statistics keeps its function exactly (another data config, e.g.
    # a range of reference speeds, changes the statistics).
    donor_params = bundle.weights.params
    if "MLP_0" in donor_params:
        donor_params = refold_input_normalisation(
            donor_params,
            (np.asarray(bundle.weights.input_mean), np.asarray(bundle.weights.input_std)),
            tuple(np.asarray(s) for s in stats),
        )
    donor = dict(jax.tree_util.tree_flatten_with_path(donor_params)[0])
    copied = 0

    def take(path: Any, leaf: Array) -> Array:
        nonlocal copied
        other = donor.get(path)
        if other is None or np.shape(other) != np.shape(leaf):
            return leaf
        copied += 1
        return jnp.asarray(other, dtype=leaf.dtype)

    params = jax.tree_util.tree_map_with_path(take, params)
    if copied == 0:
        raise TrainingError(f"init_from: {source} shares no parameter with this network")
    return params
