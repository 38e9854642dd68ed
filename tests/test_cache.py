"""The Redis cache backend (chatproject/cache.py): Django's, with its redis-py client reused."""
from __future__ import annotations

import threading

import pytest
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

pytestmark = pytest.mark.redis


def test_the_cache_reuses_one_client_per_connection_pool():
    client = cache._cache.get_client(write=True)
    assert client is cache._cache.get_client(write=True)
    assert client.connection_pool is cache._cache._pools[0]
    assert isinstance(caches["default"], RedisCache)  # what the rate limiter's Redis fast path checks


def test_the_shared_client_serves_every_cache_operation_from_many_threads():
    cache.delete_many([f"cache-test-{n}" for n in range(8)])
    cache.set("cache-test-counter", 0, 30)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                cache.incr("cache-test-counter")
                assert cache.add(f"cache-test-{n}", i, 30) is (i == 0)
                assert cache.get(f"cache-test-{n}") == 0
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], repr(errors[:1])
    assert cache.get("cache-test-counter") == 400
