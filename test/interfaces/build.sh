#!/usr/bin/env bash
# Builds the interface packages under test/interfaces (ackermann_msgs: F1TENTH's command type,
# which has no PyPI wheel) from their message definitions with rosidl, and installs them into
# the virtual environment, where the ROS wheels keep their own libraries and Python modules.
#
#   test/interfaces/build.sh .venv
#
# Needs cmake and a C/C++ compiler; the ament and rosidl generator wheels come from
# requirements-dev.txt. COLCON_IGNORE keeps a user's `colcon build` from building these.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$(cd "$1" && pwd)"
for tool in cmake make cc c++; do
  command -v "$tool" >/dev/null || {
    echo "build.sh: '$tool' is missing; the Ackermann tests need cmake and a C/C++ compiler" >&2
    exit 1
  }
done
export AMENT_PREFIX_PATH="$venv"  # rosidl finds the installed typesupports in its ament index
export PATH="$venv/bin:$PATH"
for package in ackermann_msgs; do
  build="$venv/.interfaces-build/$package"
  rm -rf "$build"
  mkdir -p "$build"
  cmake -S "$here/$package" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$venv/bin/python" >"$build.log" 2>&1 \
    && cmake --build "$build" --parallel 2 >>"$build.log" 2>&1 \
    && cmake --install "$build" >>"$build.log" 2>&1 \
    || { tail -n 40 "$build.log" >&2; echo "build.sh: building $package failed (log: $build.log)" >&2; exit 1; }
done
# Checks the result the way the nodes use it: a message through the C typesupport.
"$venv/bin/python" - <<'PY'
from ackermann_msgs.msg import AckermannDriveStamped
from rclpy.serialization import deserialize_message, serialize_message

message = AckermannDriveStamped()
message.drive.speed = 2.5
assert deserialize_message(serialize_message(message), AckermannDriveStamped).drive.speed == 2.5
PY
