"""Simulator + track publisher + controller: the node graph of ``make demo``.

ros2 launch mppi_ros sim.launch.py track:=default controller:=step_mppi
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("mppi_ros")
    sim_params = LaunchConfiguration("sim_params_file")
    track = LaunchConfiguration("track")
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
            *(
                Node(
                    package="mppi_ros",
                    executable=name,
                    name=name,
                    output="screen",
                    parameters=[sim_params, {"track": track}],
                )
                for name in ("track_publisher", "vehicle_simulator")
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    os.path.join(share, "launch", "controller.launch.py")
                ),
                launch_arguments={
                    "controller": LaunchConfiguration("controller"),
                    "model_path": LaunchConfiguration("model_path"),
                    "params_file": LaunchConfiguration("params_file"),
                    "vehicle_params_file": sim_params,  # its mppi_controller section
                    "allocator": LaunchConfiguration("allocator"),
                }.items(),
            ),
        ]
    )
