"""Queue lag, read from the broker: the age of the oldest task waiting in each Celery queue."""
from __future__ import annotations

import time
import uuid

import pytest
from kombu import Queue

from chatproject.celery import app
from ops import degraded, queues

pytestmark = pytest.mark.redis


@pytest.fixture
def queue(settings):
    name = f"ops-test-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_QUEUES = [Queue(name)]
    yield name
    queues._broker(settings.CELERY_BROKER_URL).delete(name)


def test_a_queue_lag_is_the_age_of_its_oldest_waiting_task(queue, metrics):
    published = time.time()
    app.send_task("parley.bulk.canary", queue=queue)
    app.send_task("parley.bulk.canary", queue=queue)
    [depth] = queues.measure(now=published + 12)
    assert depth.queue == queue and depth.length == 2
    assert depth.lag == pytest.approx(12, abs=1)
    assert metrics.value("parley_queue_lag_seconds", queue=queue) == pytest.approx(12, abs=1)
    assert metrics.value("parley_queue_length", queue=queue) == 2


def test_an_empty_queue_has_no_lag(queue):
    [depth] = queues.measure()
    assert (depth.length, depth.lag) == (0, 0.0)


def test_a_lagging_queue_puts_parley_in_degraded_mode(db, queue, settings):
    settings.PARLEY_DEGRADED_QUEUES = [queue]
    app.send_task("parley.bulk.canary", queue=queue)
    state = degraded.evaluate(now=time.time() + settings.PARLEY_DEGRADED_QUEUE_LAG_SECONDS + 1)
    assert state["level"] == 1 and state["auto"]["reasons"] == ("queue_lag",)


def test_without_a_broker_to_read_there_is_nothing_to_measure(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert queues.measure() == []
