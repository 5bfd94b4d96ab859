"""ament_python setup for mppi_ros.

Installs the Python package, the `mppi-ros` command, and (under share/mppi_ros) package.xml,
launch/, config/, models/ and the built-in track files, plus the ament index marker, so that
`ros2 run` / `ros2 launch` find everything after `colcon build`.
"""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mppi_ros"


def share_tree(directory: str) -> list[tuple[str, list[str]]]:
    """data_files entries that mirror ``directory`` under share/mppi_ros."""
    entries: dict[str, list[str]] = {}
    for path in sorted(glob(os.path.join(directory, "**", "*"), recursive=True)):
        if os.path.isfile(path) and "__pycache__" not in path:
            target = os.path.join("share", PACKAGE, os.path.dirname(path))
            entries.setdefault(target, []).append(path)
    return sorted(entries.items())


data_files = [
    ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
    (f"share/{PACKAGE}", ["package.xml"]),
    (f"share/{PACKAGE}/tracks", sorted(glob("mppi_ros/data/tracks/*.csv"))),
]
for folder in ("launch", "config", "models"):
    data_files += share_tree(folder)

# Node entry points are registered only when their modules exist.
NODES = {
    "mppi_controller": "mppi_ros.ros.controller_node:main",
    "vehicle_simulator": "mppi_ros.ros.simulator_node:main",
    "track_publisher": "mppi_ros.ros.track_publisher_node:main",
}
console_scripts = ["mppi-ros = mppi_ros.cli:main"]
for name, target in NODES.items():
    module = target.split(":")[0].replace(".", os.sep) + ".py"
    if os.path.exists(module):
        console_scripts.append(f"{name} = {target}")

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["data/tracks/*.csv"]},
    data_files=data_files,
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy",
        "scipy",
        "jax",
        "flax",
        "optax",
        "msgpack",
        "PyYAML",
        "tqdm",
        "matplotlib",
        "mcap",
    ],
    extras_require={
        "gpu": ["jax[cuda12]", "onnxruntime-gpu"],
        "onnx": ["onnxruntime", "jax2onnx"],
        "rl": ["gymnasium[mujoco]"],  # softMPCritic training on gymnasium MuJoCo tasks
        "test": ["pytest", "pytest-timeout"],
    },
    zip_safe=True,
    maintainer="mppi_ros developers",
    maintainer_email="dev@mppi-ros.invalid",
    description="Learned MPPI controllers for ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={"console_scripts": console_scripts},
)
