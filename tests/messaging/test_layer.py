"""Publishing after commit (messaging.layer): nothing leaves before the commit, and a failing
after-commit action is logged without failing the write that scheduled it."""
from __future__ import annotations

import asyncio
import time
from functools import partial

import pytest
from django.db import transaction

from messaging import layer


@pytest.mark.django_db(transaction=True)
def test_an_action_runs_after_commit_and_a_failing_one_is_logged_not_raised(caplog):
    ran: list[str] = []

    def fails(what: str) -> None:
        raise ValueError(f"{what} failed")

    with transaction.atomic():
        layer.after_commit(partial(fails, "publishing"))  # a partial has no __qualname__
        layer.after_commit(partial(ran.append, "next"))
        assert ran == []
    assert ran == ["next"]
    assert "publishing failed" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_payload_that_cannot_travel_fails_when_it_is_scheduled():
    with pytest.raises(TypeError), transaction.atomic():
        layer.publish_after_commit("conv.1", {"type": "conv.message", "when": object()})


class UnansweringLayer:
    """A channel layer whose Redis never answers (frozen, or a half-open connection)."""

    async def group_send(self, group: str, message: dict) -> None:
        await asyncio.Event().wait()


def test_a_publish_the_layer_never_answers_is_given_up_within_the_bound(monkeypatch, settings, caplog):
    settings.PARLEY_PUBLISH_TIMEOUT_SECONDS = 0.2
    monkeypatch.setattr(layer, "get_channel_layer", UnansweringLayer)
    started = time.monotonic()
    layer.publish("conv.1", {"type": "conv.message", "seq": 1})  # returns instead of hanging
    assert time.monotonic() - started < 2
    assert "fan-out publish to conv.1 failed (no answer within 0.2 s)" in caplog.text


async def test_an_async_publish_the_layer_never_answers_is_given_up_within_the_bound(monkeypatch, settings, caplog):
    settings.PARLEY_PUBLISH_TIMEOUT_SECONDS = 0.2
    monkeypatch.setattr(layer, "get_channel_layer", UnansweringLayer)
    await asyncio.wait_for(layer.apublish("user.1", {"type": "typing"}), 2)
    assert "publish to user.1 failed (no answer within 0.2 s)" in caplog.text


@pytest.mark.redis
def test_a_sync_publish_on_the_redis_layer_sends_from_its_own_thread_with_no_event_loop(monkeypatch, settings):
    """The send path's publish on Parley's Redis layer wakes no event loop (the hand-over had
    been most of its CPU); what arrives is what was published, stamped."""
    import uuid

    from chatproject.layers import RedisChannelLayer

    redis_layer = RedisChannelLayer(hosts=[settings.CHANNEL_REDIS_URLS[0]], prefix=f"t{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(layer, "get_channel_layer", lambda: redis_layer)

    def no_loop(*args, **kwargs):
        raise AssertionError("the publish went through an event loop")

    monkeypatch.setattr(layer, "_own_loop", no_loop)
    monkeypatch.setattr(layer, "async_to_sync", no_loop)

    async def join() -> str:
        channel = await redis_layer.new_channel("gateway.")
        await redis_layer.group_add("conv.9", channel)
        return channel

    channel = asyncio.run(join())
    layer.publish("conv.9", {"type": "conv.message", "seq": 1})

    async def receive() -> dict:
        try:
            return await asyncio.wait_for(redis_layer.receive(channel), 3)
        finally:
            await redis_layer.flush()

    got = asyncio.run(receive())
    assert (got["type"], got["seq"], got["group"]) == ("conv.message", 1, "conv.9") and got["published_at"] > 0
