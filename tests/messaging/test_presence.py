"""Presence counts across gateways: what the offline path trusts to decide 'online'."""
from __future__ import annotations

import pytest
from django.core.cache import cache, caches
from django.core.cache.backends import base, locmem

from messaging import presence
from tests.clock import ManualClock


def test_a_user_is_online_while_any_socket_is_counted_and_offline_after_the_last():
    cache.clear()
    presence.change_count(7, 1)
    presence.change_count(7, 1)
    presence.change_count(7, -1)
    assert presence.online_user_ids([7, 8]) == {7}
    presence.change_count(7, -1)
    assert presence.online_user_ids([7]) == set()


def test_a_count_never_goes_negative():
    cache.clear()
    assert presence.change_count(9, -1) == 0
    assert presence.change_count(9, 1) == 1


@pytest.fixture
def cache_clock(settings, monkeypatch):
    """The counts expire by their cache's TTL: a local-memory cache here, whose clock the test moves."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "presence-expiry"}}
    clock = ManualClock(start=1_000_000.0)

    class Time:
        time = staticmethod(clock)

    monkeypatch.setattr(locmem, "time", Time)  # when a key has expired
    monkeypatch.setattr(base, "time", Time)  # when a key will expire
    yield clock
    caches["default"].clear()


def test_counts_left_by_a_crashed_gateway_expire_unless_a_live_gateway_refreshes_them(settings, cache_clock):
    settings.PARLEY_PRESENCE_REFRESH_SECONDS = 0.5  # counts live int(1.5) = 1 s
    presence.change_count(5, 1)  # a socket on a gateway that then dies without decrementing
    presence.change_count(6, 1)  # a socket whose gateway keeps refreshing
    for _ in range(4):
        cache_clock.advance(0.5)
        presence.refresh([6])
    assert presence.online_user_ids([5, 6]) == {6}


def test_last_seen_is_when_the_last_socket_closed_and_is_remembered_only_while_offline():
    cache.clear()
    presence.change_count(7, +1)
    presence.change_count(7, +1)
    assert presence.last_seen([7]) == {}
    presence.change_count(7, -1)
    assert presence.last_seen([7]) == {}  # one socket still open
    presence.change_count(7, -1)
    seen = presence.last_seen([7, 8])
    assert list(seen) == [7] and seen[7].tzinfo is not None


@pytest.fixture(params=["configured cache", "local memory"])
def either_cache(request, settings):
    """Redis takes one round trip for a batch; other caches (the embedded defaults) the portable path."""
    if request.param == "local memory":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                       "LOCATION": "presence-batches"}}
    cache.clear()
    yield request.param
    caches["default"].clear()


def test_a_batch_of_count_changes_gives_each_user_s_count_before_and_after(either_cache):
    presence.change_count(1, +1)
    assert presence.change_counts({1: +1, 2: +1, 3: -1, 4: +2}) == {1: (1, 2), 2: (0, 1), 3: (0, 0), 4: (0, 2)}
    assert presence.online_user_ids([1, 2, 3, 4]) == {1, 2, 4}
    assert presence.change_counts({1: -2, 4: -1}) == {1: (2, 0), 4: (2, 1)}
    assert presence.online_user_ids([1, 2, 3, 4]) == {2, 4}
    assert set(presence.last_seen([1, 2, 3, 4])) == {1, 3}  # whose count a close left at zero
    assert presence.change_count(3, +1) == 1  # the close before did not leave it below zero
