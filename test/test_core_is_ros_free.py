"""mppi_ros/core must never import ROS (rclpy or any *_msgs package)."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "mppi_ros" / "core"


def _is_ros(module: str) -> bool:
    root = module.split(".")[0]
    return root in {"rclpy", "rosidl_runtime_py", "launch", "launch_ros"} or root.endswith("_msgs")


def test_core_sources_import_no_ros_module():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if _is_ros(n)]
    assert not offenders, offenders


def test_importing_core_loads_no_ros_module():
    code = (
        "import sys, pkgutil, importlib, mppi_ros.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'mppi_ros.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "import mppi_ros.sim, mppi_ros.bench.closed_loop, mppi_ros.bench.latency\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'rclpy' or "
        "m.split('.')[0].endswith('_msgs')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
