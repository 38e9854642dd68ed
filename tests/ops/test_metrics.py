"""GET /metrics: every metric, named and labelled as documented, moving when the thing it counts happens."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from messaging.send import do_send_message
from messaging.tasks import flush_channel_batch

from .conftest import settled, tick

ROOT = Path(__file__).resolve().parents[2]

send = database_sync_to_async(do_send_message)


async def send_n(user, conversation, n: int, prefix: str = "m") -> None:
    for i in range(n):
        await send(sender=user, conversation_id=conversation.pk, client_msg_id=f"{prefix}{i}", body=f"{prefix} {i}")


def test_metrics_are_served_in_prometheus_text_format_with_every_documented_name(db):
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    for name, kind in [
        ("parley_send_to_deliver_seconds", "histogram"), ("parley_stage_seconds", "histogram"),
        ("parley_acks_total", "counter"), ("parley_ack_timeout_ratio", "gauge"),
        ("parley_queue_lag_seconds", "gauge"), ("parley_queue_length", "gauge"),
        ("parley_open_connections", "gauge"), ("parley_disconnects_total", "counter"),
        ("parley_reconnects_total", "counter"), ("parley_replayed_messages_total", "counter"),
        ("parley_replay_admission_wait_seconds", "histogram"), ("parley_messages_stored_total", "counter"),
        ("parley_push_deliveries_total", "counter"), ("parley_degraded_level", "gauge"),
        ("parley_canary_send_to_deliver_seconds", "histogram"), ("parley_canary_runs_total", "counter"),
        ("parley_ack_latency_seconds", "histogram"), ("parley_gateway_cpu_seconds_per_delivery", "gauge"),
        ("parley_gc_pause_seconds", "histogram"), ("parley_layer_backlog_seconds", "gauge"),
        ("parley_gateway_typing_share", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}" in text
    for path in ("direct", "buffered", "replay"):
        assert f'parley_send_to_deliver_seconds_count{{path="{path}"}}' in text
    for stage in ("fanout_dispatch", "client_ack"):
        assert f'parley_stage_seconds_count{{stage="{stage}"}}' in text


@pytest.mark.django_db(transaction=True)
async def test_a_delivered_and_acked_message_moves_every_metric_on_the_direct_path(trio, open_socket, metrics):
    group, [(alice, alice_phone), (bob, bob_phone), _] = trio
    await metrics.atake()
    a = await open_socket(alice, alice_phone)
    b = await open_socket(bob, bob_phone)
    await settled(a, b)
    await a.send({"type": "send", "conversation": group.pk, "client_msg_id": "k1", "body": "hi"})
    # The sender's own stream has it too, before or after send.ok.
    assert sorted([(await a.recv_type("send.ok", "message"))["type"] for _ in range(2)]) == ["message", "send.ok"]
    message = (await b.recv_type("message"))["message"]
    await b.send({"type": "ack", "conversation": group.pk, "seq": message["seq"]})
    await b.send({"type": "ping"})
    await b.recv_type("pong")

    assert await metrics.adelta("parley_messages_stored_total") == 1
    for stage, count in [("gateway_auth", 2), ("durable_write", 1), ("response", 1),
                         ("fanout_dispatch", 2), ("client_ack", 1)]:
        assert await metrics.adelta("parley_stage_seconds_count", stage=stage) == count, stage
    assert await metrics.adelta("parley_send_to_deliver_seconds_count", path="direct") == 2
    assert 0 < await metrics.adelta("parley_send_to_deliver_seconds_sum", path="direct") < 10
    assert await metrics.adelta("parley_acks_total", outcome="in_time") == 1
    assert await metrics.adelta("parley_reconnects_total", outcome="fresh") == 2
    assert await metrics.avalue("parley_open_connections") == 2
    await a.close()
    await b.close()
    assert await metrics.avalue("parley_open_connections") == 0
    assert await metrics.adelta("parley_disconnects_total") == 2


@pytest.mark.django_db(transaction=True)
async def test_a_hello_from_cursors_is_a_resumed_reconnect_and_its_replay_is_counted(
        trio, open_socket, metrics, make_device):
    group, [(alice, _), (bob, bob_phone), (carol, _)] = trio
    await send_n(alice, group, 3)
    await metrics.atake()
    await open_socket(bob, bob_phone, cursors={group.pk: 1})
    assert await metrics.adelta("parley_reconnects_total", outcome="resumed") == 1
    assert await metrics.adelta("parley_replayed_messages_total") == 2
    assert await metrics.adelta("parley_send_to_deliver_seconds_count", path="replay") == 2

    # A new device with no cursor anywhere starts fresh (from the user's delivered mark).
    carol_tablet = await database_sync_to_async(make_device)(carol, "tablet")
    await open_socket(carol, carol_tablet)
    assert await metrics.adelta("parley_reconnects_total", outcome="fresh") == 1
    assert await metrics.adelta("parley_replayed_messages_total") == 5


@pytest.mark.django_db(transaction=True)
async def test_a_large_channel_batch_is_measured_on_the_buffered_path(trio, open_socket, metrics, settings, monkeypatch):
    settings.PARLEY_LARGE_CHANNEL_THRESHOLD = 3
    monkeypatch.setattr(flush_channel_batch, "apply_async", lambda args, countdown: None)  # the test is the worker
    group, [(alice, _), (bob, bob_phone), _] = trio
    b = await open_socket(bob, bob_phone)
    await settled(b)
    await metrics.atake()
    await send_n(alice, group, 2)
    await database_sync_to_async(flush_channel_batch)(group.pk)
    batch = await b.recv_type("messages")
    assert [m["seq"] for m in batch["messages"]] == [1, 2]
    assert await metrics.adelta("parley_send_to_deliver_seconds_count", path="buffered") == 2
    assert await metrics.adelta("parley_messages_stored_total") == 2


@pytest.mark.django_db(transaction=True)
async def test_acks_that_do_not_come_within_the_timeout_count_as_timeouts(trio, open_socket, metrics, clock, settings):
    settings.PARLEY_ACK_TIMEOUT_MS = 2000
    group, [(alice, _), (bob, bob_phone), _] = trio
    b = await open_socket(bob, bob_phone)
    await settled(b)
    await metrics.atake()
    await send_n(alice, group, 3)
    for _ in range(3):
        await b.recv_type("message")
    clock.advance(0.5)
    await b.send({"type": "ack", "conversation": group.pk, "seq": 1})
    await b.send({"type": "ping"})
    await b.recv_type("pong")
    clock.advance(5)
    await tick()  # seqs 2 and 3: no ack within 2 s
    await b.send({"type": "ack", "conversation": group.pk, "seq": 3})  # too late to count
    await b.send({"type": "ping"})
    await b.recv_type("pong")

    assert await metrics.adelta("parley_acks_total", outcome="in_time") == 1
    assert await metrics.adelta("parley_acks_total", outcome="timeout") == 2
    assert await metrics.adelta("parley_stage_seconds_sum", stage="client_ack") == pytest.approx(0.5)
    # The ack latency histogram: the one ack in time, 0.5 s after its frame was written.
    assert await metrics.adelta("parley_ack_latency_seconds_count") == 1
    assert await metrics.adelta("parley_ack_latency_seconds_sum") == pytest.approx(0.5)
    assert await metrics.adelta("parley_ack_latency_seconds_bucket", le="0.3") == 0
    assert await metrics.adelta("parley_ack_latency_seconds_bucket", le="0.5") == 1


@pytest.mark.django_db(transaction=True)
async def test_a_gateway_reports_its_cpu_seconds_per_delivered_message(trio, open_socket, metrics, clock):
    group, [(alice, _), (bob, bob_phone), (carol, carol_phone)] = trio
    sockets = [await open_socket(bob, bob_phone), await open_socket(carol, carol_phone)]
    await settled(*sockets)
    await tick()  # the window's first sample
    await send_n(alice, group, 3)
    for socket in sockets:
        await socket.recv_messages(3)
    clock.advance(1)
    await tick()
    samples = await sync_scrape(metrics)
    values = [v for (name, _), v in samples.items() if name == "parley_gateway_cpu_seconds_per_delivery"]
    assert len(values) == 1 and 0 < values[0] < 1  # this process: its CPU over its 6 deliveries


async def sync_scrape(metrics) -> dict:
    from asgiref.sync import sync_to_async

    return await sync_to_async(metrics.scrape, thread_sensitive=False)()


def test_cpu_per_delivery_is_taken_over_the_window_and_nan_without_deliveries():
    import math

    from ops.metrics import CpuPerDelivery

    window = CpuPerDelivery(window=10)
    assert math.isnan(window.sample(at=0, cpu=1.0, deliveries=100))
    assert window.sample(at=5, cpu=1.5, deliveries=600) == pytest.approx(0.001)  # 0.5 s over 500
    assert window.sample(at=15, cpu=2.5, deliveries=1600) == pytest.approx(1.0 / 1000)  # the window since t=5
    assert window.sample(at=30, cpu=3.5, deliveries=2600) == pytest.approx(1.0 / 1000)  # since t=15
    assert math.isnan(window.sample(at=45, cpu=4.0, deliveries=2600))  # nothing delivered since t=30


def test_metrics_need_the_bearer_token_when_one_is_set(db, settings):
    settings.PARLEY_METRICS_TOKEN = "s3cret"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_push_attempts_are_counted_by_outcome(db, monkeypatch, metrics):
    from notifications import delivery
    from notifications.tasks import deliver

    monkeypatch.setattr(delivery, "prepare_delivery", lambda **kw: object())
    monkeypatch.setattr(delivery, "record_dead_letter", lambda *a, **kw: None)
    monkeypatch.setattr(delivery, "forget_subscription", lambda **kw: None)
    metrics.take()

    def attempt(outcome: Exception | None) -> str:
        def send(delivery):
            if outcome is not None:
                raise outcome
        monkeypatch.setattr(delivery, "send", send)
        return deliver.apply(args=(1, 1, delivery.MESSAGE, 0)).get()

    assert attempt(None) == "sent"
    assert attempt(delivery.SubscriptionGone("410")) == "gone"
    assert attempt(delivery.PushFailed("400 bad request", retryable=False)) == "dead-letter"
    assert metrics.delta("parley_push_deliveries_total", outcome="sent") == 1
    assert metrics.delta("parley_push_deliveries_total", outcome="gone") == 1
    assert metrics.delta("parley_push_deliveries_total", outcome="failed") == 1
    assert metrics.delta("parley_push_deliveries_total", outcome="dead_letter") == 1


def _process(directory: Path, body: str, *, wait: bool = True) -> subprocess.Popen:
    script = textwrap.dedent("""
        import django, sys, time
        django.setup()
        from ops import metrics
    """) + textwrap.dedent(body)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "DJANGO_SETTINGS_MODULE": "chatproject.settings"}
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    if wait:
        assert process.wait(60) == 0
    return process


def test_with_a_multiprocess_directory_metrics_add_up_every_process_and_forget_dead_ones_connections(
        db, tmp_path, monkeypatch, metrics):
    # Two finished processes (a gateway killed with its sockets open, a worker) and one alive.
    _process(tmp_path, "metrics.MESSAGES_STORED.inc(); metrics.OPEN_CONNECTIONS.inc(5)")
    _process(tmp_path, "metrics.MESSAGES_STORED.inc(2); metrics.DELIVERED['direct'].observe(0.02); metrics.flush()")
    alive = _process(tmp_path, """
        metrics.MESSAGES_STORED.inc(); metrics.OPEN_CONNECTIONS.inc(3)
        print('ready', flush=True)
        time.sleep(60)
    """, wait=False)
    try:
        assert alive.stdout.readline().strip() == b"ready"
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        assert metrics.value("parley_messages_stored_total") == 4
        assert metrics.value("parley_open_connections") == 3  # the dead process's 5 are gone
        assert metrics.value("parley_send_to_deliver_seconds_bucket", path="direct", le="0.025") == 1
    finally:
        alive.kill()
        alive.wait(10)
    deadline = time.monotonic() + 10
    while metrics.value("parley_open_connections") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metrics.value("parley_open_connections") == 0
