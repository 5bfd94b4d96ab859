"""MCAP recording of a running graph: the bag format of rosbag2 (``ros2 bag play``, Foxglove).

Messages are recorded as they arrive, serialized (the subscriptions are raw: nothing is
deserialized to be written). Each topic's schema is its full ``ros2msg`` definition, the
``.msg`` text of the type and of every type it uses, read from the interface packages' share
directories (the ament index), in the layout rosbag2 writes.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mcap.writer import CompressionType, Writer
from rclpy.node import Node
from rclpy.qos import QoSProfile

from mppi_ros.share import ament_share_directory

PRIMITIVES = frozenset(
    "bool byte char float32 float64 int8 uint8 int16 uint16 int32 uint32 int64 uint64 "
    "string wstring".split()
)
SEPARATOR = "=" * 80
# The metadata record holding the controller's start-up parameters (key "yaml").
PARAMETERS_METADATA = "mppi_controller_parameters"


def type_name(msg_class: type) -> str:
    """``pkg/msg/Name`` of a generated message class."""
    return f"{msg_class.__module__.split('.')[0]}/msg/{msg_class.__name__}"


def _msg_text(package: str, name: str) -> str:
    """A ``.msg`` file from the package's share directory: the ament index's, else the one
    next to the Python environment (the PyPI wheels install there and register no prefix)."""
    shares = [ament_share_directory(package), Path(sys.prefix) / "share" / package]
    for share in shares:
        if share is not None and (share / "msg" / f"{name}.msg").is_file():
            return (share / "msg" / f"{name}.msg").read_text()
    raise FileNotFoundError(f"no {package}/msg/{name}.msg in {', '.join(map(str, shares))}")


def _field_types(text: str, package: str) -> list[tuple[str, str]]:
    """The ``(package, name)`` of each non-primitive field type in a ``.msg`` text."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        # Arrays (T[], T[N], T[<=N]) and bounded strings (string<=N); constants are primitive.
        field_type = re.sub(r"\[.*\]$|<=\d+", "", line.split()[0])
        if field_type in PRIMITIVES:
            continue
        if "/" in field_type:
            parts = field_type.split("/")
            found.append((parts[0], parts[-1]))
        elif field_type == "Header":  # the one short name from another package
            found.append(("std_msgs", "Header"))
        else:
            found.append((package, field_type))
    return found


def ros2_msgdef(msg_class: type) -> str:
    """The full definition rosbag2 stores for ``msg_class``: its ``.msg`` text, then each
    type it depends on (depth first, once each) after a separator line and ``MSG: pkg/Name``."""
    package, name = msg_class.__module__.split(".")[0], msg_class.__name__
    root = _msg_text(package, name)
    parts, seen, pending = [root], {(package, name)}, _field_types(root, package)
    while pending:
        dep = pending.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        text = _msg_text(*dep)
        parts.append(f"{SEPARATOR}\nMSG: {dep[0]}/{dep[1]}\n{text}")
        pending = _field_types(text, dep[0]) + pending
    return "\n".join(parts)


class BagRecorder:
    """Records ``topics`` seen by ``node`` into an MCAP file at ``path`` until :meth:`close`.

    Args:
        node: The node whose executor delivers the messages (any thread).
        path: The ``.mcap`` file to write.
        topics: ``{topic: (message class, QoS profile or depth)}``.
        metadata: MCAP metadata records ``{name: {key: value}}`` (``mppi-ros replay`` reads
            the controller's parameters from :data:`PARAMETERS_METADATA`).
    """

    def __init__(
        self,
        node: Node,
        path: Path,
        topics: dict[str, tuple[type, Any]],
        metadata: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="mppi_ros")
        for name, data in (metadata or {}).items():
            self._writer.add_metadata(name, data)
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self._subscriptions = []
        for topic, (msg_class, qos) in topics.items():
            schema = self._writer.register_schema(
                type_name(msg_class), "ros2msg", ros2_msgdef(msg_class).encode()
            )
            channel = self._writer.register_channel(topic, "cdr", schema)
            self.counts[topic] = 0
            self._subscriptions.append(
                node.create_subscription(
                    msg_class,
                    topic,
                    lambda raw, topic=topic, channel=channel: self._write(topic, channel, raw),
                    qos if isinstance(qos, QoSProfile) else int(qos),
                    raw=True,
                )
            )
        self._node = node

    def _write(self, topic: str, channel: int, raw: bytes) -> None:
        now = time.time_ns()
        with self._lock:
            if self._writer is None:
                return
            self._writer.add_message(channel, log_time=now, data=raw, publish_time=now)
            self.counts[topic] += 1

    def close(self) -> None:
        """Stops recording and finishes the file (its summary and index)."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        with self._lock:
            if self._writer is None:
                return
            self._writer.finish()
            self._writer = None
            self._file.close()
