"""``python -m mppi_ros.ros.cpu_probe PERIOD_S RECORD_S [CPU,...]``: when the CPU it runs on
was unavailable.

``mppi-ros bench ros`` runs it on the controller's CPU. It sleeps to absolute deadlines
``PERIOD_S`` apart at SCHED_FIFO :data:`PRIORITY` where permitted (above every normal thread,
below the node's control loop), prints ``ready`` once it runs, and when stdin closes prints
JSON: ``wakeups`` and ``stalls``, ``[[wall s of the deadline, wall s it woke], ...]`` for
every wake-up later than ``RECORD_S``. Only the hypervisor, interrupts or a real-time
thread keep it from running; a lock or the GIL inside the node does not. Standard library
only, so that it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time

PRIORITY = 1


def _set_policy(policy: int, priority: int) -> None:
    with contextlib.suppress(AttributeError, PermissionError, OSError):
        os.sched_setscheduler(0, policy, os.sched_param(priority))


def main() -> None:
    period, record = float(sys.argv[1]), float(sys.argv[2])
    if len(sys.argv) > 3:  # before any thread starts, so that all inherit it
        os.sched_setaffinity(0, [int(cpu) for cpu in sys.argv[3].split(",")])
    _set_policy(os.SCHED_FIFO, PRIORITY)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    wall_offset = time.time() - time.monotonic()
    deadline, wakeups, stalls = time.monotonic(), 0, []
    while not stop.is_set():
        now = time.monotonic()
        deadline += period
        if now > deadline:  # after a stall: the next deadline still ahead, same phase
            deadline += math.ceil((now - deadline) / period) * period
        stop.wait(max(deadline - now, 0.0))
        woke = time.monotonic()
        wakeups += 1
        if woke - deadline > record:
            stalls.append([deadline + wall_offset, woke + wall_offset])
    # Normal scheduling for the interpreter's teardown: at SCHED_FIFO its ~0.1 s of CPU
    # starved the simulator on the same CPU (a stale-odometry fault after every run).
    _set_policy(os.SCHED_OTHER, 0)
    print(json.dumps({"wakeups": wakeups, "stalls": stalls}), flush=True)


if __name__ == "__main__":
    main()
