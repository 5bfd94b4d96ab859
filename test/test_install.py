"""Installing the package puts every share file where `ros2 run` / `ros2 launch` look."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_share_files():
    """Files that must land under share/mppi_ros, relative to it."""
    expected = {"package.xml"}
    for folder in ("launch", "config", "models"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                expected.add(str(path.relative_to(REPO)))
    expected |= {f"tracks/{p.name}" for p in (REPO / "mppi_ros/data/tracks").glob("*.csv")}
    return expected


def _copy_source(dst: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".venv",
        ".git",
        ".cache",
        "build",
        "install",
        "log",
        "*.egg-info",
        "__pycache__",
        "demo_output",
        "bench_output",
    )
    shutil.copytree(REPO, dst, ignore=ignore)
    return dst


def _check_share(share: Path):
    missing = sorted(f for f in _tracked_share_files() if not (share / f).is_file())
    assert not missing, f"not installed under {share}: {missing}"
    assert len(list((share / "tracks").glob("*_raceline.csv"))) >= 3


@pytest.fixture(scope="module")
def pip_prefix(tmp_path_factory) -> Path:
    """The package pip-installed (no dependencies) from a copy of the checkout into a fresh
    prefix; the prefix's parent is a folder without the sources."""
    root = tmp_path_factory.mktemp("pip_install")
    src = _copy_source(root / "src")
    prefix = root / "prefix"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            # Without this pip "upgrades" the venv's editable install by uninstalling it,
            # which breaks every later test that imports mppi_ros from another directory.
            "--ignore-installed",
            "--prefix",
            str(prefix),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    shutil.rmtree(src)  # nothing of the checkout next to the install
    return prefix


def _site(prefix: Path) -> Path:
    return next(prefix.glob("lib/python*/site-packages"))


def _installed_env(prefix: Path, ament: bool = True) -> dict[str, str]:
    """The environment of a shell that sourced the install's setup.bash: the installed package
    on ``PYTHONPATH``, ``prefix`` (over the venv's ROS packages) in ``AMENT_PREFIX_PATH``, no
    ``MPPI_ROS_MODELS``. ``ament=False``: no ``AMENT_PREFIX_PATH`` (not sourced)."""
    env = dict(os.environ, PYTHONPATH=str(_site(prefix)))
    env.pop("MPPI_ROS_MODELS", None)
    env.pop("AMENT_PREFIX_PATH", None)
    if ament:
        env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), sys.prefix])
    return env


@pytest.mark.slow
def test_pip_install_into_a_prefix(pip_prefix):
    prefix = pip_prefix
    _check_share(prefix / "share" / "mppi_ros")
    assert (prefix / "share/ament_index/resource_index/packages/mppi_ros").is_file()
    assert (prefix / "bin" / "mppi-ros").is_file()
    site = _site(prefix)
    assert (site / "mppi_ros/data/tracks/default_raceline.csv").is_file()
    # The installed package (not the checkout) loads its built-in track.
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mppi_ros.core.tracks as t; print(t.__file__); "
            "print(t.load_track('default').length)",
        ],
        capture_output=True,
        text=True,
        cwd=prefix.parent,
        env=env,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(site) in probe.stdout.splitlines()[0]


_RESOLVE = """
import json
import mppi_ros
from mppi_ros.core.bundles import BundleError, load_bundle
from mppi_ros.core.catalog import shipped_model_path
from mppi_ros.ros.graph import config_search_paths
report = {"package": mppi_ros.__file__, "config": [str(p) for p in config_search_paths()]}
try:
    path = shipped_model_path("step_mppi")
    report.update(model=str(path), model_id=load_bundle(path).model_id)
except BundleError as err:
    report.update(error=str(err))
print(json.dumps(report))
"""


def _resolve_installed(prefix: Path, ament: bool, env: dict[str, str] | None = None) -> dict:
    """Runs :data:`_RESOLVE` on the installed package (``-P``: no script folder on sys.path),
    in ``env`` (default: :func:`_installed_env`)."""
    out = subprocess.run(
        [sys.executable, "-P", "-c", _RESOLVE],
        capture_output=True,
        text=True,
        cwd=prefix.parent,
        env=env or _installed_env(prefix, ament),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.slow
def test_installed_package_finds_its_models_through_the_ament_index(pip_prefix):
    """The default model of an installed package comes from ``<prefix>/share/mppi_ros/models``
    found through ``AMENT_PREFIX_PATH`` (as after sourcing the install's setup.bash)."""
    share = (pip_prefix / "share" / "mppi_ros").resolve()
    report = _resolve_installed(pip_prefix, ament=True)
    assert Path(report["package"]).is_relative_to(_site(pip_prefix)), report
    assert "error" not in report, report["error"]
    assert Path(report["model"]).resolve() == share / "models" / "f1tenth_step_mppi"
    assert report["model_id"].startswith("f1tenth_step_mppi@")
    assert Path(report["config"][0]).resolve() == share / "config"
    # Without the ament index, nothing points at the prefix: the lookup does not find it.
    unsourced = _resolve_installed(pip_prefix, ament=False)
    assert "error" in unsourced or not Path(unsourced["model"]).resolve().is_relative_to(share)


@pytest.mark.slow
def test_installed_controller_node_configures_with_its_default_model(pip_prefix):
    """The installed ``mppi_controller`` entry point configures with no model_path: it loads
    the shipped bundle from the install's share directory."""
    from mppi_ros.ros.processes import pick_domain_id, ros_env

    exe = pip_prefix / "bin" / "mppi_controller"
    assert exe.is_file()
    log_path = pip_prefix.parent / "mppi_controller.log"
    env = ros_env(pick_domain_id(), _installed_env(pip_prefix))
    command = [str(exe), "--ros-args", "-p", "autostart:=true", "-p", "controller:=step_mppi"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=pip_prefix.parent, env=env
        )
    try:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and proc.poll() is None:
            text = log_path.read_text(errors="replace")
            if "configured " in text or "configure failed" in text:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log_path.read_text(errors="replace")
    assert "configured f1tenth_step_mppi@" in text, text[-3000:]


def _drive_installed(env: dict[str, str], folder: Path, monkeypatch) -> str:
    """Track publisher, simulator and controller, run with ``env``'s ``PYTHONPATH`` and
    ``AMENT_PREFIX_PATH`` (an install, as its sourced setup.bash gives them) from ``folder``
    (no checkout there), drive; the controller, with no model_path, loads its shipped bundle
    from the install's share directory."""
    from mppi_ros.ros.graph import driving_graph, graph_parameters

    # The node processes (``python -m``) inherit this: the installed package, found before
    # the checkout (not the working directory, which ``-m`` puts first on sys.path).
    for key in ("PYTHONPATH", "AMENT_PREFIX_PATH", "MPPI_ROS_MODELS"):
        monkeypatch.delenv(key, raising=False)
    for key in ("PYTHONPATH", "AMENT_PREFIX_PATH"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(folder)
    params = graph_parameters("default", "step_mppi", 50.0, "array")
    assert not params["mppi_controller"].get("model_path")
    logs = folder / "logs"
    with driving_graph(params, "array", logs, 120.0) as (processes, monitor):
        model_id = monitor.diagnostic("mppi_controller").get("model_id", "")
        moving = lambda: any(speed > 1.0 for *_, speed in list(monitor.recording.odom))
        monitor.wait_for(moving, 30.0, "the car to move")
        assert not processes.dead()
    assert model_id.startswith("f1tenth_step_mppi@"), model_id
    log = (logs / "mppi_controller.log").read_text()
    assert "configured f1tenth_step_mppi@" in log
    return log


@pytest.mark.slow
def test_installed_nodes_drive_with_the_installed_model(pip_prefix, tmp_path, monkeypatch):
    _drive_installed(_installed_env(pip_prefix), tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("colcon_core") is None,
    reason="colcon is not installed (pip install colcon-common-extensions)",
)
@pytest.mark.parametrize("symlink", [False, True], ids=["copied", "symlink_install"])
def test_colcon_install_space_drives_with_its_share_files(tmp_path, monkeypatch, symlink):
    """``colcon build`` (and ``--symlink-install``) installs every share file and the node
    executables; from the install space, with the environment its sourced setup.bash gives
    (no ``MPPI_ROS_MODELS``, no checkout on the path), the nodes drive with the default model
    found through the ament index."""
    _copy_source(tmp_path / "ws" / "src" / "mppi_ros")
    colcon = Path(sys.executable).with_name("colcon")
    command = [str(colcon), "build", "--base-paths", "src"]
    out = subprocess.run(
        command + (["--symlink-install"] if symlink else []),
        cwd=tmp_path / "ws",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    install = tmp_path / "ws" / "install" / "mppi_ros"
    _check_share(install / "share" / "mppi_ros")
    assert (install / "share/ament_index/resource_index/packages/mppi_ros").is_file()
    # `ros2 run mppi_ros <exe>` looks in lib/<package>.
    assert (install / "lib" / "mppi_ros" / "mppi-ros").is_file()
    assert (install / "lib" / "mppi_ros" / "mppi_controller").is_file()
    env = _sourced(tmp_path / "ws" / "install" / "setup.bash")
    # The default model is the install space's (with --symlink-install the package and its
    # share files both link to the sources: the same files).
    report = _resolve_installed(install, ament=True, env=env)
    assert "error" not in report, report["error"]
    installed = install / "share" / "mppi_ros" / "models" / "f1tenth_step_mppi" / "manifest.json"
    assert (Path(report["model"]) / "manifest.json").resolve() == installed.resolve(), report
    assert Path(report["model"]).is_relative_to(install) != symlink, report
    (tmp_path / "run").mkdir()
    _drive_installed(env, tmp_path / "run", monkeypatch)


def _sourced(setup: Path) -> dict[str, str]:
    """The environment after ``source setup.bash`` over a ROS base (the venv's ROS packages in
    ``AMENT_PREFIX_PATH``, as /opt/ros/<distro>/setup.bash gives), without the checkout on
    ``PYTHONPATH`` or ``MPPI_ROS_MODELS``."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MPPI_ROS_MODELS")}
    base["AMENT_PREFIX_PATH"] = sys.prefix
    out = subprocess.run(
        ["bash", "-c", f"source {setup} && env -0"],
        capture_output=True,
        text=True,
        env=base,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    env = dict(item.split("=", 1) for item in out.stdout.split("\0") if "=" in item)
    assert str(setup.parent) in env["AMENT_PREFIX_PATH"] and env.get("PYTHONPATH"), env
    return env
