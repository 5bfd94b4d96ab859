"""Model bundles: round trip, and one clear sentence for each kind of bad bundle."""

import json
import shutil

import jax
import numpy as np
import pytest

from mppi_ros.checksums import sha256_file
from mppi_ros.core.bundles import BundleError, load_bundle, resolve_model, save_bundle
from mppi_ros.core.catalog import controller_from_bundle, make_controller
from mppi_ros.core.controllers.step_mppi import StepMPPIConfig

CONFIG = StepMPPIConfig(num_samples=16, hidden=(8, 8))


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory):
    ctrl = make_controller("step_mppi", num_samples=16, hidden=(8, 8))
    weights = ctrl.init_weights(jax.random.PRNGKey(3))
    path = tmp_path_factory.mktemp("bundles") / "tiny"
    save_bundle(path, "step_mppi", CONFIG, weights, training={"command": "test", "steps": 0})
    return path, weights


def _copy(good, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(good, dst)
    return dst


def _rehash(path):
    """Simulates a consistently tampered bundle: checksums updated after the edit."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name]["sha256"] = sha256_file(path / name)
        manifest["files"][name]["bytes"] = (path / name).stat().st_size
    (path / "manifest.json").write_text(json.dumps(manifest))


def _edit_manifest(path, fn):
    manifest = json.loads((path / "manifest.json").read_text())
    fn(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_round_trip_restores_weights_and_builds_a_controller(good_bundle):
    path, weights = good_bundle
    bundle = load_bundle(path)
    assert bundle.controller == "step_mppi" and bundle.config == CONFIG
    for a, b in zip(jax.tree.leaves(bundle.weights), jax.tree.leaves(weights), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    manifest = bundle.manifest
    assert manifest["dynamics"]["name"] == "single_track" and manifest["dt"] == 0.05
    assert manifest["outputs"]["names"] == ["steering_rate", "accel"]
    assert manifest["files"]["params.msgpack"]["sha256"] == sha256_file(path / "params.msgpack")
    ctrl = controller_from_bundle(path, num_samples=32)
    assert ctrl.config.num_samples == 32
    state = ctrl.init(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(
        np.asarray(jax.tree.leaves(state.weights)[0]), np.asarray(jax.tree.leaves(weights)[0])
    )
    with pytest.raises(BundleError, match="fixed by the trained network"):
        controller_from_bundle(path, hidden=(4,))


def _corrupt_params(p):
    data = bytearray((p / "params.msgpack").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (p / "params.msgpack").write_bytes(bytes(data))


def _truncate_params(p):
    data = (p / "params.msgpack").read_bytes()
    (p / "params.msgpack").write_bytes(data[: len(data) // 3])
    _rehash(p)


def _wrong_architecture(p):
    _edit_manifest(p, lambda m: m["config"].update(hidden=[16, 8]))


def _wrong_dynamics(p):
    def edit(m):
        m["dynamics"]["name"] = "double_integrator"
        m["config"]["dynamics"] = "double_integrator"

    _edit_manifest(p, edit)


def _unknown_dynamics(p):
    _edit_manifest(p, lambda m: m["dynamics"].update(name="hovercraft"))


def _wrong_inputs(p):
    _edit_manifest(p, lambda m: m["inputs"].update(features=14))


def _nan_weights(p):
    from flax import serialization

    state = serialization.msgpack_restore((p / "params.msgpack").read_bytes())
    state["input_mean"] = np.array(state["input_mean"])
    state["input_mean"][0] = np.nan
    (p / "params.msgpack").write_bytes(serialization.msgpack_serialize(state))
    _rehash(p)


def _pickle_instead(p):
    (p / "params.msgpack").write_bytes(b"\x80\x04\x95\x00\x00cos\nsystem\n.")
    _rehash(p)


@pytest.mark.parametrize(
    "damage,message",
    [
        (_corrupt_params, r"params\.msgpack does not match its SHA-256"),
        (
            lambda p: (p / "params.msgpack").write_bytes(b"x" * 10),
            r"params\.msgpack has 10 bytes, the manifest lists \d+ \(truncated or modified",
        ),
        (_truncate_params, r"params\.msgpack is not readable msgpack|weights do not match"),
        (
            _wrong_architecture,
            r"weight params/MLP_0/Dense_0/bias has shape \(8,\), the architecture needs \(16,\)",
        ),
        (
            _wrong_dynamics,
            r"expects 11 input features, but dynamics 'double_integrator' "
            r"provides 6|weights do not match|has shape",
        ),
        (_unknown_dynamics, r"unknown dynamics 'hovercraft'; valid names"),
        (_wrong_inputs, r"expects 14 input features, but dynamics 'single_track' provides 11"),
        (_nan_weights, r"weight input_mean contains NaN"),
        (_pickle_instead, r"not readable msgpack|weights do not match"),
        (lambda p: (p / "manifest.json").unlink(), r"has no manifest\.json"),
        (lambda p: (p / "manifest.json").write_text("{nope"), r"manifest\.json is not valid JSON"),
        (lambda p: _edit_manifest(p, lambda m: m.pop("dt")), r"lacks the field 'dt'"),
        (
            lambda p: _edit_manifest(p, lambda m: m.update(format_version=9)),
            r"format version 9, this mppi_ros reads version 1",
        ),
        (
            lambda p: _edit_manifest(p, lambda m: m.update(controller="mppi")),
            r"is for controller 'mppi'",
        ),
        (lambda p: (p / "params.msgpack").unlink(), r"is missing params\.msgpack"),
        (
            lambda p: _edit_manifest(p, lambda m: m["files"].update({"params.msgpack": "abc"})),
            r"entry for 'params\.msgpack' must be an object",
        ),
        (
            lambda p: _edit_manifest(p, lambda m: m["dynamics"].update(name=["single_track"])),
            r"dynamics name must be a string",
        ),
        (
            lambda p: _edit_manifest(p, lambda m: m["config"].update(preview=["soon"])),
            r"config field 'preview' must be tuple\[int, \.\.\.\]",
        ),
    ],
)
def test_bad_bundles_fail_with_one_clear_sentence(good_bundle, tmp_path, damage, message):
    path = _copy(good_bundle[0], tmp_path)
    damage(path)
    with pytest.raises(BundleError, match=message) as info:
        load_bundle(path)
    text = str(info.value)
    assert str(path) in text and "\n" not in text


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_inspect_command_verifies_and_prints(good_bundle, tmp_path):
    import subprocess
    import sys

    cli = [sys.executable, "-m", "mppi_ros.cli", "inspect"]
    out = subprocess.run([*cli, str(good_bundle[0])], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["controller"] == "step_mppi"
    assert "checksums of 1 file(s) verified" in out.stderr
    bad = _copy(good_bundle[0], tmp_path)
    _corrupt_params(bad)
    out = subprocess.run([*cli, str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "does not match its SHA-256" in out.stderr and "Traceback" not in out.stderr


def test_resolve_model_says_what_a_bad_path_is(tmp_path):
    """A path is looked up only where it points, and the error says what is there; a bare
    name is searched in the model folders, each place named once."""
    file = tmp_path / "weights.msgpack"
    file.write_bytes(b"x")
    with pytest.raises(BundleError, match=r"is a file; give its folder"):
        resolve_model(file)
    with pytest.raises(BundleError, match=r"a folder without manifest\.json$"):
        resolve_model(tmp_path)
    with pytest.raises(BundleError, match=r"no such folder, so no manifest\.json$"):
        resolve_model(tmp_path / "missing")
    with pytest.raises(BundleError) as info:
        resolve_model("f1tenth_nothing")
    searched = str(info.value).split(" or in ")[1].split(", ")
    assert len(searched) == len(set(searched)) >= 1
    assert all(place.endswith("f1tenth_nothing") for place in searched)
    shipped = resolve_model("dpc")
    assert resolve_model(shipped / "manifest.json") == shipped  # the manifest names its folder
