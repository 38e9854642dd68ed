"""Fixtures for operations: a scraper for /metrics, a clock the tests move, a clean degraded state.

The gateway's once-a-second tick is off in tests (tests/conftest.py): these run
:func:`tick` themselves, so time moves only when a test says so.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from gateway import runtime
from ops import degraded


class Clock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Metrics:
    """Samples of GET /metrics, by name and labels; ``delta`` compares with the last ``take``."""

    def __init__(self) -> None:
        self.client = Client()
        self.before: dict = {}

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        response = self.client.get("/metrics")
        assert response.status_code == 200
        samples: dict[tuple[str, frozenset], float] = defaultdict(float)
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def take(self) -> None:
        self.before = self.scrape()

    def delta(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return self.scrape().get(key, 0.0) - self.before.get(key, 0.0)

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, frozenset(labels.items())), 0.0)

    # From async tests: the scrape runs in a thread, as a real one would.
    async def atake(self) -> None:
        await sync_to_async(self.take, thread_sensitive=False)()

    async def adelta(self, name: str, **labels: str) -> float:
        return await sync_to_async(self.delta, thread_sensitive=False)(name, **labels)

    async def avalue(self, name: str, **labels: str) -> float:
        return await sync_to_async(self.value, thread_sensitive=False)(name, **labels)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture(autouse=True)
def controlled_operations():
    """No shared degraded state carries over (each test's gateway runtime starts at level 0)."""
    cache.clear()
    degraded.refresh()
    yield
    cache.clear()
    degraded.refresh()


async def tick(**kwargs) -> degraded.Mode:
    """One tick of this test's gateway runtime (``now=`` moves the wall clock it judges by)."""
    return await (await runtime.current()).tick(**kwargs)


@pytest.fixture
async def clock():
    """The gateway runtime's monotonic clock (ack timing), under the test's control."""
    clock = Clock()
    (await runtime.current()).clock = clock
    yield clock
    gateway = runtime.running(asyncio.get_running_loop())
    if gateway is not None:
        await gateway.stop()


async def settled(*sockets) -> None:
    """Wait until each socket's hello has finished its work (presence reads the database after
    ``ready``): a ping is answered only after the frame before it. SQLite's shared in-memory
    test database refuses a write that overlaps a read on another thread."""
    for socket in sockets:
        await socket.send({"type": "ping"})
        await socket.recv_type("pong")


@pytest.fixture
def trio(make_user, make_device, make_group):
    """alice, bob and carol in a group; one device each."""
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    group = make_group(alice, [bob, carol])
    return group, [(user, make_device(user)) for user in (alice, bob, carol)]
