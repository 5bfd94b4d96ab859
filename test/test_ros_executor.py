"""The executor every node spins (``make_executor``) and the helper thread that serves the
controller's blocking services, in a real rclpy context."""

from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rosproc import unique_domain_id
from std_srvs.srv import Trigger

from mppi_ros.ros.common import EXECUTOR_ENV, BlockingServices, make_executor

EventsExecutor = pytest.importorskip("rclpy.experimental").EventsExecutor


@pytest.fixture()
def context():
    ctx = Context()
    rclpy.init(context=ctx, domain_id=unique_domain_id())
    yield ctx
    ctx.try_shutdown()


def test_executor_choice_follows_the_environment(context, monkeypatch):
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert not isinstance(make_executor(context), SingleThreadedExecutor)  # events by default
    monkeypatch.setenv(EXECUTOR_ENV, "single_threaded")
    assert isinstance(make_executor(context), SingleThreadedExecutor)
    monkeypatch.setenv(EXECUTOR_ENV, "multi")
    with pytest.raises(ValueError, match="events, single_threaded"):
        make_executor(context)


def test_blocking_service_keeps_the_owners_subscriptions_flowing(context):
    """A service callback that blocks for 1 s, served by BlockingServices, answers under the
    owner's name while the owner's events executor keeps running its timer."""
    owner = rclpy.create_node("owner", namespace="/ns", context=context)
    ticks: list[float] = []
    owner.create_timer(0.01, lambda: ticks.append(time.monotonic()))

    def slow(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        time.sleep(1.0)
        response.success, response.message = True, "done"
        return response

    services = BlockingServices(owner)
    services.create_service(Trigger, "~/slow", slow)
    executor = make_executor(context)
    executor.add_node(owner)
    client_node = rclpy.create_node("client", context=context)
    client = client_node.create_client(Trigger, "/ns/owner/slow")
    client_executor = SingleThreadedExecutor(context=context)
    client_executor.add_node(client_node)
    stop = threading.Event()
    spinner = threading.Thread(
        target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)]
    )
    spinner.start()
    try:
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(Trigger.Request())
        start = time.monotonic()
        while not future.done() and time.monotonic() - start < 10.0:
            client_executor.spin_once(timeout_sec=0.05)
        assert future.done() and future.result().message == "done"
        during = [t for t in ticks if start + 0.2 < t < start + 0.9]
        assert len(during) >= 40, "the owner's timer stalled while the service blocked"
    finally:
        stop.set()
        spinner.join()
        services.destroy()
        executor.shutdown()
        client_executor.shutdown()
