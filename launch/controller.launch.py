"""Launches the mppi_controller lifecycle node.

    ros2 launch mppi_ros controller.launch.py controller:=step_mppi \
        model_path:=/path/to/bundle params_file:=/path/to/params.yaml

``params_file`` defaults to the package's ``config/<controller>.yaml``; ``model_path`` (when
given) overrides the file's. Every argument is checked before the node starts
(``mppi_ros.ros.launch_checks``): a bad one ends the launch with its reason.

Lifecycle, two ways:

- ``autostart:=true`` (default): the node configures and activates itself.
- ``use_lifecycle_manager:=true``: a ``nav2_lifecycle_manager`` (``lifecycle_manager_mppi``,
  needs ros-<distro>-nav2-lifecycle-manager) configures and activates it, and brings it down
  on shutdown; the node's own autostart is then off. ``bond_timeout`` is 0: the node keeps no
  bond. With ``autostart:=false`` and no manager, drive it with ``ros2 lifecycle set``.

``allocator:=auto`` (default) preloads jemalloc when libjemalloc2 is installed: glibc keeps
the memory of replaced compiled steps (see mppi_ros/realtime/memory.py); ``glibc`` or
``jemalloc`` choose.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from mppi_ros.realtime.memory import ALLOCATORS, allocator_environment
from mppi_ros.ros.launch_checks import check_launch_arguments

ARGUMENTS = (
    "controller",
    "model_path",
    "params_file",
    "vehicle_params_file",
    "autostart",
    "use_lifecycle_manager",
    "namespace",
    "allocator",
)


def _nodes(context, *args, **kwargs):
    share = get_package_share_directory("mppi_ros")
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    arg["params_file"] = arg["params_file"] or os.path.join(
        share, "config", f"{arg['controller']}.yaml"
    )
    check_launch_arguments(arg)  # before any process starts
    managed = arg["use_lifecycle_manager"].lower() == "true"
    overrides = {
        "controller": arg["controller"],
        "autostart": arg["autostart"].lower() == "true" and not managed,
    }
    if arg["model_path"]:
        overrides["model_path"] = arg["model_path"]
    # The vehicle's file first (e.g. the simulator's actuation delays); the controller's wins.
    vehicle = [f for f in [arg["vehicle_params_file"]] if f]
    nodes = [
        LifecycleNode(
            package="mppi_ros",
            executable="mppi_controller",
            name="mppi_controller",
            namespace=arg["namespace"],
            output="screen",
            parameters=[*vehicle, arg["params_file"], overrides],
            additional_env=allocator_environment(arg["allocator"]),
        )
    ]
    if managed:
        nodes.append(
            Node(
                package="nav2_lifecycle_manager",
                executable="lifecycle_manager",
                name="lifecycle_manager_mppi",
                namespace=arg["namespace"],
                output="screen",
                parameters=[
                    {"autostart": True, "node_names": ["mppi_controller"], "bond_timeout": 0.0}
                ],
            )
        )
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "controller",
                default_value="step_mppi",
                description="step_mppi, dpc, soft_mpcritic, mppi, em_mppi or pure_pursuit",
            ),
            DeclareLaunchArgument(
                "model_path",
                default_value="",
                description="model bundle folder (empty: shipped weights)",
            ),
            DeclareLaunchArgument(
                "vehicle_params_file",
                default_value="",
                description="a vehicle's YAML with an mppi_controller section (actuation_delays)",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value="",
                description="parameters YAML (default config/<controller>.yaml)",
            ),
            DeclareLaunchArgument(
                "autostart", default_value="true", description="configure and activate on start-up"
            ),
            DeclareLaunchArgument(
                "use_lifecycle_manager",
                default_value="false",
                description="a nav2_lifecycle_manager drives the lifecycle (autostart off)",
            ),
            DeclareLaunchArgument("namespace", default_value=""),
            DeclareLaunchArgument(
                "allocator",
                default_value="auto",
                description="heap allocator of the controller: " + ", ".join(ALLOCATORS),
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
