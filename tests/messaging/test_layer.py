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
