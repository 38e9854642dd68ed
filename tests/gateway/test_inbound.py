"""Frames still queued for sockets count as lag while a backlog builds (gateway.inbound), ranked
across sockets like the waits of handled frames (gateway.telemetry)."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from gateway import inbound
from gateway.telemetry import ProcessCounts


@pytest.fixture
def queues():
    """Socket queues as parley-gateway's protocol fills them; every one forgotten afterwards."""
    made: list[asyncio.Queue] = []

    def make(*ages: float, watch: bool = True) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        for age in ages:
            queue.put_nowait({"type": "websocket.receive", "text": "{}", "received_at": time.monotonic() - age})
        if watch:
            inbound.watch(queue)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        inbound.forget(queue)


def test_each_open_socket_with_a_frame_waiting_reports_its_oldest_frames_age(queues):
    queues(0.8, 0.1)
    queues(0.3)
    queues()  # nothing waiting
    ages = sorted(inbound.queued_ages(time.monotonic()))
    assert ages == [pytest.approx(0.3, abs=0.05), pytest.approx(0.8, abs=0.05)]


def test_a_closed_sockets_unread_frames_and_a_disconnect_never_count(queues):
    closed = queues(5.0)
    inbound.forget(closed)
    ending = queues()
    ending.put_nowait({"type": "websocket.disconnect", "code": 1000})
    queues(5.0, watch=False)  # never opened
    assert inbound.queued_ages(time.monotonic()) == []


def test_a_backlog_on_many_sockets_is_lag_before_any_of_its_frames_is_handled(queues, settings):
    settings.PARLEY_DEGRADED_INBOUND_MIN_SOCKETS = 3
    settings.PARLEY_DEGRADED_INBOUND_SOCKET_SHARE = 0.1
    process = ProcessCounts()
    queues(9.0)  # one client's own burst waits on itself
    assert process.take_inbound_wait() == 0.0
    queues(0.7)
    queues(0.6)
    assert process.take_inbound_wait() == pytest.approx(0.6, abs=0.05)  # the third longest


def test_the_longer_of_handled_waits_and_queued_ages_is_the_lag(queues, settings):
    settings.PARLEY_DEGRADED_INBOUND_MIN_SOCKETS = 3
    settings.PARLEY_DEGRADED_INBOUND_SOCKET_SHARE = 0.1
    process = ProcessCounts()
    for socket in range(3):
        process.inbound_wait(socket, 1.5)
        queues(0.2)
    assert process.take_inbound_wait() == 1.5
    assert process.take_inbound_wait() == pytest.approx(0.2, abs=0.05)  # the handled waits were taken


class _Server:
    def log_action(self, *args: object) -> None:
        pass

    def protocol_disconnected(self, protocol: object) -> None:
        pass


def test_parley_gateways_protocol_watches_a_sockets_queue_from_open_to_close():
    # Imported here: daphne makes its event loop and installs Twisted's reactor on import.
    from gateway.server import GatewayWebSocketProtocol

    protocol = GatewayWebSocketProtocol.__new__(GatewayWebSocketProtocol)  # daphne's wiring, minus the network
    protocol.server, protocol.muted, protocol.client_addr = _Server(), False, ("127.0.0.1", 50000)
    protocol.request = SimpleNamespace(path="/ws/v1/")
    protocol.application_queue = asyncio.Queue()
    protocol.onOpen()
    protocol.onMessage(b'{"type": "ping"}', False)
    assert len(inbound.queued_ages(time.monotonic())) == 1
    protocol.onClose(True, 1000, None)
    assert inbound.queued_ages(time.monotonic()) == []
    assert protocol.application_queue.qsize() == 2  # the frame never read, then daphne's disconnect
