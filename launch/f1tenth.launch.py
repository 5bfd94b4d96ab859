"""MPPI control of an F1TENTH car, or of the F1TENTH gym ROS bridge (f1tenth_gym_ros).

    ros2 launch mppi_ros f1tenth.launch.py target:=sim track:=/path/to/raceline.csv
    ros2 launch mppi_ros f1tenth.launch.py target:=car track:=/path/to/raceline.csv

Starts ``track_publisher`` (the raceline and its borders, frame ``map``) and the
``mppi_controller`` with ``config/f1tenth.yaml``: ``command_type: ackermann``
(ackermann_msgs/AckermannDriveStamped), its ``odom`` and ``cmd`` remapped onto the target's
topics (``mppi_ros.ros.f1tenth``):

- ``sim``: odometry ``/ego_racecar/odom``, commands ``/drive`` (the gym bridge);
- ``car``: odometry ``/pf/pose/odom`` (the particle filter: map frame), commands ``/drive``
  (``ackermann_mux``'s navigation input).

``odom_topic`` / ``drive_topic`` override either. Every argument is checked before any node
starts. Needs ackermann_msgs (``apt install ros-<distro>-ackermann-msgs``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    GroupAction,
    IncludeLaunchDescription,
    OpaqueFunction,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, SetRemap

from mppi_ros.ros.f1tenth import controller_remappings, f1tenth_topics
from mppi_ros.ros.launch_checks import check_launch_arguments

ARGUMENTS = (
    "target",
    "odom_topic",
    "drive_topic",
    "track",
    "controller",
    "model_path",
    "params_file",
    "allocator",
    "use_lifecycle_manager",
)


def _graph(context, *args, **kwargs):
    share = get_package_share_directory("mppi_ros")
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    arg["params_file"] = arg["params_file"] or os.path.join(share, "config", "f1tenth.yaml")
    check_launch_arguments(arg)  # before any process starts
    topics = f1tenth_topics(arg["target"], arg["odom_topic"], arg["drive_topic"])
    publisher = Node(
        package="mppi_ros",
        executable="track_publisher",
        name="track_publisher",
        output="screen",
        parameters=[arg["params_file"], {"track": arg["track"]}],
    )
    controller = GroupAction(
        [
            *(SetRemap(src=a, dst=b) for a, b in controller_remappings(topics)),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    os.path.join(share, "launch", "controller.launch.py")
                ),
                launch_arguments={
                    "controller": arg["controller"],
                    "model_path": arg["model_path"],
                    "params_file": arg["params_file"],
                    "allocator": arg["allocator"],
                    "use_lifecycle_manager": arg["use_lifecycle_manager"],
                }.items(),
            ),
        ],
        scoped=True,
    )
    return [publisher, controller]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("target", default_value="sim", description="sim or car"),
            DeclareLaunchArgument(
                "odom_topic", default_value="", description="odometry topic (empty: target's)"
            ),
            DeclareLaunchArgument(
                "drive_topic", default_value="", description="command topic (empty: target's)"
            ),
            DeclareLaunchArgument(
                "track",
                default_value="default",
                description="raceline or centerline CSV of the map, or a built-in track name",
            ),
            DeclareLaunchArgument("controller", default_value="step_mppi"),
            DeclareLaunchArgument("model_path", default_value=""),
            DeclareLaunchArgument(
                "params_file", default_value="", description="default: config/f1tenth.yaml"
            ),
            DeclareLaunchArgument("allocator", default_value="auto"),
            DeclareLaunchArgument("use_lifecycle_manager", default_value="false"),
            OpaqueFunction(function=_graph),
        ]
    )
