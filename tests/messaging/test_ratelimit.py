"""The one rate limiter (messaging.ratelimit), driven by a fake clock."""
from __future__ import annotations

import itertools
import logging

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from messaging import ratelimit
from messaging.errors import RateLimited, Unavailable
from messaging.ratelimit import ConnectionLimit, Limit, Rate, client_ip, enforce

# Nothing listens on port 1: a cache that is down.
DEAD_CACHE = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0"}}
TEST_LIMIT = Limit("test", None, fail_open=False)
_idents = itertools.count()


class Clock:
    def __init__(self, at: float = 1_000_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(ratelimit, "now", clock)
    return clock


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def shared(rate: Rate):
    """A counter in the cache, through the public entry point: 0 or the ms to wait."""
    ident = f"t{next(_idents)}"

    def hit() -> int:
        try:
            enforce(TEST_LIMIT, ident, rate=rate)
        except RateLimited as refused:
            return refused.retry_after_ms
        return 0

    return hit


def in_memory(rate: Rate):
    return ConnectionLimit(rate).hit


COUNTERS = pytest.mark.parametrize("counter", [shared, in_memory], ids=["cache", "connection"])


@pytest.mark.parametrize("text, rate", [
    ("30/s", Rate(30, 1)), ("10/m", Rate(10, 60)), ("20/h", Rate(20, 3600)), ("5/d", Rate(5, 86400)),
    ("1/2s", Rate(1, 2)), (" 3 / 10m ", Rate(3, 600)),
])
def test_rates_are_read_as_count_per_period(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["", "30", "0/s", "3/0s", "x/s", "3/w", "-1/s", "3/1.5s"])
def test_a_malformed_rate_is_a_configuration_error(text):
    with pytest.raises(ImproperlyConfigured):
        Rate.parse(text)


@COUNTERS
def test_a_limit_admits_its_count_per_period_and_says_when_the_next_one_fits(counter, clock):
    hit = counter(Rate(3, 10))
    assert [hit() for _ in range(3)] == [0, 0, 0]
    wait = hit()
    assert wait > 0
    clock.at += wait / 1000 - 0.002
    assert hit() > 0
    clock.at += 0.002
    assert hit() == 0


@COUNTERS
def test_refused_events_do_not_count_so_waiting_once_is_enough(counter, clock):
    hit = counter(Rate(2, 1))
    hit(), hit()
    waits = [hit() for _ in range(50)]
    assert all(waits) and waits[-1] <= waits[0]
    clock.at += waits[0] / 1000
    assert hit() == 0


@COUNTERS
def test_there_is_no_double_burst_across_a_window_boundary(counter, clock):
    clock.at = 1_000_009.9  # the end of a 10 s window
    hit = counter(Rate(3, 10))
    assert [hit() for _ in range(3)] == [0, 0, 0]
    clock.at = 1_000_010.1  # the next window has just begun: a fixed window would let 3 more in
    assert [hit() > 0 for _ in range(2)] == [False, True]  # one more, then the wait


@COUNTERS
def test_no_wait_is_longer_than_the_period(counter, clock):
    clock.at = 1_000_010.0  # the very start of a window
    hit = counter(Rate(3, 10))
    hit(), hit(), hit()
    assert hit() == 10_000


@COUNTERS
@hypothesis_settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 5), seconds=st.integers(1, 30),
       gaps_ms=st.lists(st.integers(0, 20_000), min_size=1, max_size=40))
def test_retry_after_is_exact_whatever_came_before(counter, count, seconds, gaps_ms):
    """A refused client that waits retry_after_ms gets in, and not noticeably earlier."""
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ratelimit, "now", clock)
        hit = counter(Rate(count, seconds))
        for gap in gaps_ms:
            clock.at += gap / 1000
            wait = hit()
            if wait:
                if wait > 2:
                    clock.at += (wait - 2) / 1000
                    assert hit() > 0
                    clock.at += 2 / 1000
                else:
                    clock.at += wait / 1000
                assert hit() == 0


def test_counters_are_shared_by_everything_that_uses_the_cache(clock):
    rate = Rate(2, 60)
    enforce(TEST_LIMIT, "shared", rate=rate)
    ConnectionLimit(rate).hit()  # a connection's own counter does not touch the shared one
    enforce(TEST_LIMIT, "shared", rate=rate)
    with pytest.raises(RateLimited):
        enforce(TEST_LIMIT, "shared", rate=rate)
    enforce(TEST_LIMIT, "someone-else", rate=rate)


def test_while_the_cache_is_down_sends_go_through_with_one_warning(clock, caplog):
    with override_settings(CACHES=DEAD_CACHE), caplog.at_level(logging.WARNING, logger="messaging.ratelimit"):
        for _ in range(5):
            enforce(ratelimit.SEND, "outage-sender")
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


@pytest.mark.parametrize("limit", [ratelimit.LOGIN_IP, ratelimit.LOGIN_USERNAME, ratelimit.SIGNUP_IP,
                                   ratelimit.WS_TICKET])
def test_while_the_cache_is_down_credentials_and_tickets_are_refused(limit):
    with override_settings(CACHES=DEAD_CACHE), pytest.raises(Unavailable) as refused:
        enforce(limit, "someone")
    assert refused.value.retry_after_ms == 1000


def test_only_limits_keyed_by_a_user_exempt_moderators_and_staff(make_user, settings, clock):
    staff = make_user(is_staff=True)
    for name in ("PARLEY_RATE_SEND", "PARLEY_RATE_LOGIN"):
        setattr(settings, name, "1/m")
    for _ in range(3):
        enforce(ratelimit.SEND, staff.pk, user=staff)
    enforce(ratelimit.LOGIN_IP, "10.0.0.1", user=staff)
    with pytest.raises(RateLimited):
        enforce(ratelimit.LOGIN_IP, "10.0.0.1", user=staff)
    settings.PARLEY_RATE_LIMIT_EXEMPT_MODERATORS = False
    with pytest.raises(RateLimited):
        enforce(ratelimit.SEND, staff.pk, user=staff)


@pytest.mark.parametrize("proxies, meta, ip", [
    (0, {"REMOTE_ADDR": "10.1.1.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6"}, "10.1.1.1"),
    (1, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}, "203.0.113.7"),
    (2, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7, 10.0.0.9"}, "203.0.113.7"),
    (1, {"REMOTE_ADDR": "10.0.0.2"}, "10.0.0.2"),
])
def test_the_client_address_trusts_only_what_the_configured_proxies_wrote(settings, proxies, meta, ip):
    settings.PARLEY_TRUSTED_PROXIES = proxies
    assert client_ip(meta) == ip
