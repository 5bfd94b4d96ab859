"""Installing the package puts every share file where `ros2 run` / `ros2 launch` look."""

import importlib.util
import os
import shutil
import subprocess
import sys
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


@pytest.mark.slow
def test_pip_install_into_a_prefix(tmp_path):
    src = _copy_source(tmp_path / "src")
    prefix = tmp_path / "prefix"
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
    _check_share(prefix / "share" / "mppi_ros")
    assert (prefix / "share/ament_index/resource_index/packages/mppi_ros").is_file()
    assert (prefix / "bin" / "mppi-ros").is_file()
    site = next(prefix.glob("lib/python*/site-packages"))
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
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(site) in probe.stdout.splitlines()[0]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("colcon_core") is None,
    reason="colcon is not installed (pip install colcon-common-extensions)",
)
def test_colcon_build_installs_share_files_and_executables(tmp_path):
    _copy_source(tmp_path / "ws" / "src" / "mppi_ros")
    colcon = Path(sys.executable).with_name("colcon")
    out = subprocess.run(
        [str(colcon), "build", "--base-paths", "src"],
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
