"""Launches the mppi_controller lifecycle node.

    ros2 launch mppi_ros controller.launch.py controller:=step_mppi \
        model_path:=/path/to/bundle params_file:=/path/to/params.yaml

``params_file`` defaults to the package's ``config/<controller>.yaml``; ``model_path`` (when
given) overrides the file's. With ``autostart:=true`` (default) the node configures and
activates itself; set it to false to drive the lifecycle with ``ros2 lifecycle set``.
``allocator:=auto`` (default) preloads jemalloc when libjemalloc2 is installed: glibc keeps
the memory of replaced compiled steps (see mppi_ros/allocator.py); ``glibc`` or ``jemalloc``
choose.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from mppi_ros.realtime.memory import ALLOCATORS, allocator_environment


def _controller_node(context, *args, **kwargs):
    share = get_package_share_directory("mppi_ros")
    controller = LaunchConfiguration("controller").perform(context)
    params_file = LaunchConfiguration("params_file").perform(context) or os.path.join(
        share, "config", f"{controller}.yaml"
    )
    # The vehicle's file first (e.g. the simulator's actuation delays); the controller's wins.
    vehicle = [f for f in [LaunchConfiguration("vehicle_params_file").perform(context)] if f]
    overrides = {
        "controller": controller,
        "autostart": LaunchConfiguration("autostart").perform(context).lower() == "true",
    }
    model_path = LaunchConfiguration("model_path").perform(context)
    if model_path:
        overrides["model_path"] = model_path
    return [
        LifecycleNode(
            package="mppi_ros",
            executable="mppi_controller",
            name="mppi_controller",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[*vehicle, params_file, overrides],
            additional_env=allocator_environment(LaunchConfiguration("allocator").perform(context)),
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "controller",
                default_value="step_mppi",
                description="step_mppi, dpc, soft_mpcritic or mppi",
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
            DeclareLaunchArgument("namespace", default_value=""),
            DeclareLaunchArgument(
                "allocator",
                default_value="auto",
                description="heap allocator of the controller: " + ", ".join(ALLOCATORS),
            ),
            OpaqueFunction(function=_controller_node),
        ]
    )
