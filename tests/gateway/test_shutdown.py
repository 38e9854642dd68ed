"""A gateway's shutdown is bounded, whatever its requests are waiting on (real processes)."""
from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from rest_framework.authtoken.models import Token

from messaging.models import Message
from ops.client import ParleyClient
from tests.live import Gateway, RedisServer, redis_server  # noqa: F401 - redis_server: fixture

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

GRACE, BOUND = 1.0, 4.0  # PARLEY_GATEWAY_SHUTDOWN_GRACE_SECONDS and _TIMEOUT_SECONDS here
SHUTDOWN = {"PARLEY_GATEWAY_SHUTDOWN_GRACE_SECONDS": str(GRACE), "PARLEY_GATEWAY_SHUTDOWN_TIMEOUT_SECONDS": str(BOUND)}


@pytest.fixture
def pair(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    tokens = {u.username: Token.objects.create(user=u).key for u in (alice, bob)}
    return group, tokens, str(make_device(bob).pk)


@pytest.fixture
def layer_redis():
    """The channel layer on a Redis of its own, so a test can freeze the layer alone (the
    cache and the rate limits stay on ``redis_server``)."""
    server = RedisServer()
    server.start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


def rest_send(base: str, token: str, conversation: int, key: str, timeout: float = 60) -> int | str:
    request = urllib.request.Request(
        f"{base}/api/v1/conversations/{conversation}/messages", method="POST",
        data=json.dumps({"client_msg_id": key, "body": f"in flight {key}"}).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:  # the gateway went away mid-request
        return type(error).__name__


def wait_stored(count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Message.objects.count() < count:
        assert time.monotonic() < deadline, f"{Message.objects.count()} of {count} messages stored"
        time.sleep(0.05)


def terminate_and_time(gateway: Gateway, bound: float) -> float:
    """SIGTERM, then how long the process took to exit (SIGKILLed past ``bound`` + 10 s)."""
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    try:
        gateway.process.wait(bound + 10)
    except Exception:  # noqa: BLE001 - report the hang as a number, then clean up
        gateway.process.kill()
        gateway.process.wait(10)
    return time.monotonic() - started


def replayed_keys(base: str, token: str, device: str, conversation: int, last_seq: int) -> list[str]:
    """What a fresh connection of ``device`` is shown, replay page after replay page."""
    async def hello() -> list[str]:
        keys: list[str] = []
        client = ParleyClient([base], token=token, device_id=device,
                              on_message=lambda delivery: keys.append(delivery.message["client_msg_id"]))
        runner = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(client.ready.wait(), 30)
            for _ in range(300):
                if client.cursors.get(conversation, 0) >= last_seq:
                    break
                await asyncio.sleep(0.1)
            assert client.violations == []
        finally:
            await client.stop()
            runner.cancel()
        return keys

    return asyncio.run(hello())


@pytest.mark.parametrize("publish_timeout, abandoned", [
    ("2", False),  # the default bound: the publish gives up, the request ends, a clean exit
    ("60", True),  # a publish outliving the shutdown bound: the watchdog abandons it
])
def test_sigterm_with_a_rest_send_stuck_in_its_publish_exits_within_the_bound_and_the_message_replays(
    pair, redis_server, layer_redis, publish_timeout, abandoned,
):
    """The channel layer's Redis freezes (SIGSTOP: connections stay open, nothing answers),
    so the send's after-commit publish waits on it; the message is already committed."""
    group, tokens, bob_device = pair
    env = {"CHANNEL_REDIS_URLS": layer_redis.url, "PARLEY_PUBLISH_TIMEOUT_SECONDS": publish_timeout, **SHUTDOWN}
    gateway = Gateway(redis_server.url, extra_env=env)
    gateway.start()
    try:
        layer_redis.process.send_signal(signal.SIGSTOP)
        sender = threading.Thread(target=rest_send, args=(gateway.url, tokens["alice"], group.pk, "stuck"))
        sender.start()
        wait_stored(1)
        time.sleep(0.5)  # well into the publish

        took = terminate_and_time(gateway, BOUND)
        sender.join(30)
    finally:
        log = gateway.stop()
    assert took < BOUND + 1, f"the gateway took {took:.1f} s to exit after SIGTERM\n{log[-3000:]}"
    assert ("abandoning the work of 1 threads" in log) is abandoned, log[-3000:]
    if abandoned:
        assert "chatproject/layers.py" in log and "group_send_blocking" in log  # where the thread was stuck

    layer_redis.process.send_signal(signal.SIGCONT)
    after = Gateway(redis_server.url, extra_env={"CHANNEL_REDIS_URLS": layer_redis.url})
    after.start()
    try:
        assert replayed_keys(after.url, tokens["bob"], bob_device, group.pk, 1) == ["stuck"]
    finally:
        after.stop()


def test_sigterm_with_many_rest_sends_in_flight_exits_within_the_bound_and_every_stored_message_replays(
    pair, redis_server,
):
    group, tokens, bob_device = pair
    gateway = Gateway(redis_server.url, extra_env=SHUTDOWN)
    gateway.start()
    outcomes: list[int | str] = []
    stop = threading.Event()

    def keep_sending(n: int) -> None:
        i = 0
        while not stop.is_set():
            outcome = rest_send(gateway.url, tokens["alice"], group.pk, f"{n}-{i}", timeout=30)
            outcomes.append(outcome)
            if outcome != 201:
                return
            i += 1

    senders = [threading.Thread(target=keep_sending, args=(n,)) for n in range(24)]
    try:
        for sender in senders:
            sender.start()
        wait_stored(100)
        took = terminate_and_time(gateway, BOUND)
        stop.set()
        for sender in senders:
            sender.join(40)
    finally:
        log = gateway.stop()
    assert took < BOUND + 1, f"the gateway took {took:.1f} s to exit after SIGTERM\n{log[-3000:]}"
    # Each send was answered 201 or cut off by the shutdown (refused, reset): never a 500.
    assert 201 in outcomes and not [o for o in outcomes if isinstance(o, int) and o != 201], outcomes

    stored = list(Message.objects.filter(conversation=group).order_by("seq").values_list("client_msg_id", flat=True))
    after = Gateway(redis_server.url)
    after.start()
    try:
        replayed = replayed_keys(after.url, tokens["bob"], bob_device, group.pk, len(stored))
    finally:
        after.stop()
    assert replayed == stored
