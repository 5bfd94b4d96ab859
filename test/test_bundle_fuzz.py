"""Property-based: a model bundle whose manifest holds any JSON value in any field, or lacks
it, is either loaded or rejected with a :class:`BundleError`; no other exception comes out of
loading it or building its controller (a node that validates a swap must never crash)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mppi_ros.core.bundles import BundleError
from mppi_ros.core.catalog import controller_from_bundle, load_vehicle_bundle, shipped_model_path

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def _paths(value, prefix=()):
    """Every key path of a nested manifest (lists count as leaves)."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))


@pytest.fixture(scope="module", params=["step_mppi", "dpc", "soft_mpcritic"])
def bundles(request, tmp_path_factory):
    source = shipped_model_path(request.param)
    manifest = json.loads((source / "manifest.json").read_text())
    paths = [p for p in _paths(manifest) if p]
    return source, manifest, paths, tmp_path_factory.mktemp("fuzz")


def _mutated(manifest: dict, path: tuple, value, delete: bool) -> dict:
    out = json.loads(json.dumps(manifest))
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


@settings(
    max_examples=40,  # softMPCritic examples take ~2 s each (its ensemble is rebuilt)
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_manifest_field_of_any_json_type_loads_or_is_rejected_clearly(bundles, data):
    source, manifest, paths, root = bundles
    path = data.draw(st.sampled_from(paths), label="field")
    delete = data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(JSON, label="value")
    bundle = Path(root) / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    shutil.copytree(source, bundle)
    text = json.dumps(_mutated(manifest, path, value, delete))
    (bundle / "manifest.json").write_text(text)
    try:
        load_vehicle_bundle(bundle)
        controller_from_bundle(bundle)
    except BundleError as err:
        assert str(err), "a rejection names its reason"
