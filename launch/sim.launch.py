"""Simulator + track publisher + controller: the node graph of ``make demo``.

    ros2 launch mppi_ros sim.launch.py track:=default controller:=step_mppi

Every argument (the controller's too) is checked before the first node starts
(``mppi_ros.ros.launch_checks``): a bad one ends the launch with its reason, no node left.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mppi_ros.ros.launch_checks import check_launch_arguments

ARGUMENTS = (
    "track",
    "controller",
    "model_path",
    "params_file",
    "sim_params_file",
    "allocator",
    "use_lifecycle_manager",
)


def _graph(context, *args, **kwargs):
    share = get_package_share_directory("mppi_ros")
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    check_launch_arguments(
        {
            **arg,
            "params_file": arg["params_file"]
            or os.path.join(share, "config", f"{arg['controller']}.yaml"),
        }
    )
    sim_params = arg["sim_params_file"]
    nodes = [
        Node(
            package="mppi_ros",
            executable=name,
            name=name,
            output="screen",
            parameters=[sim_params, {"track": arg["track"]}],
        )
        for name in ("track_publisher", "vehicle_simulator")
    ]
    controller = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "controller.launch.py")),
        launch_arguments={
            "controller": arg["controller"],
            "model_path": arg["model_path"],
            "params_file": arg["params_file"],
            "vehicle_params_file": sim_params,  # its mppi_controller section
            "allocator": arg["allocator"],
            "use_lifecycle_manager": arg["use_lifecycle_manager"],
        }.items(),
    )
    return [*nodes, controller]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("mppi_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "track", default_value="default", description="built-in track name or raceline CSV"
            ),
            DeclareLaunchArgument("controller", default_value="step_mppi"),
            DeclareLaunchArgument("model_path", default_value=""),
            DeclareLaunchArgument(
                "params_file", default_value="", description="controller parameters YAML"
            ),
            DeclareLaunchArgument(
                "sim_params_file", default_value=os.path.join(share, "config", "sim.yaml")
            ),
            DeclareLaunchArgument(
                "allocator", default_value="auto", description="the controller's heap allocator"
            ),
            DeclareLaunchArgument(
                "use_lifecycle_manager",
                default_value="false",
                description="a nav2_lifecycle_manager drives the controller's lifecycle",
            ),
            OpaqueFunction(function=_graph),
        ]
    )
