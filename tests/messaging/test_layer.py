"""Publishing after commit (messaging.layer): nothing leaves before the commit, and a failing
after-commit action is logged without failing the write that scheduled it."""
from __future__ import annotations

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
