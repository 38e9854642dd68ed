"""The Redis cache backend (chatproject/cache.py): Django's, with its redis-py client reused."""
from __future__ import annotations

import contextvars
import threading
import uuid

import pytest
from django.conf import settings
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

from chatproject.cache import RedisCache

pytestmark = pytest.mark.redis


@pytest.fixture
def backend() -> RedisCache:
    """The backend the settings name when Redis is configured, on the same server."""
    return RedisCache(settings.REDIS_URL or settings.CHANNEL_REDIS_URLS[0], {"KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}"})


def test_the_settings_use_it_when_redis_is_configured():
    from chatproject import settings as configured

    assert configured.CACHES["default"]["BACKEND"] == "chatproject.cache.RedisCache"


def test_the_cache_reuses_one_client_per_connection_pool(backend):
    client = backend._cache.get_client(write=True)
    assert client is backend._cache.get_client(write=True)
    assert client.connection_pool is backend._cache._pools[0]
    assert isinstance(backend, DjangoRedisCache)  # what the rate limiter's Redis fast path checks


def test_cache_objects_of_one_configuration_share_one_client(backend):
    """Django builds a cache object per context; they must not each build a pool."""
    twin = RedisCache(settings.REDIS_URL or settings.CHANNEL_REDIS_URLS[0], {"KEY_PREFIX": "another-prefix"})
    assert twin._cache is backend._cache
    elsewhere = RedisCache("redis://127.0.0.1:1/0", {})
    assert elsewhere._cache is not backend._cache


def test_a_thousand_handshakes_reuse_the_pool_s_connections():
    """Each WebSocket consumer runs in a context of its own, where Django's ``caches`` gives a
    new cache object: each used to open its own Redis connection (a reconnect storm opened one
    per ticket). Calls made one after another now reuse the shared pool's connection."""
    from django.core.cache import caches

    pools = set()

    def handshake(n: int) -> None:
        cache = caches["default"]
        cache.set(f"handshake-{n}", n, 5)
        assert cache.pop(f"handshake-{n}") == n
        pools.add(cache._cache.get_client(write=True).connection_pool)

    contextvars.copy_context().run(handshake, -1)
    (pool,) = pools
    opened = pool._created_connections  # other tests' threads may have opened a few already
    for n in range(1000):
        contextvars.copy_context().run(handshake, n)
    assert pools == {pool}
    assert pool._created_connections == opened


def test_the_shared_client_serves_every_cache_operation_from_many_threads(backend):
    backend.set("counter", 0, 30)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                backend.incr("counter")
                assert backend.add(f"key-{n}", i, 30) is (i == 0)
                assert backend.get(f"key-{n}") == 0
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], repr(errors[:1])
    assert backend.get("counter") == 400
    backend.delete_many(["counter", *(f"key-{n}" for n in range(8))])


def test_a_new_redis_connection_does_not_read_package_metadata(monkeypatch):
    """redis-py reads its own metadata for each connection unless told its version; a pool
    growing under a reconnect storm paid that for every connection."""
    import redis.utils

    from chatproject import settings as configured

    reads = []
    monkeypatch.setattr(redis.utils, "get_lib_version", lambda: reads.append(1) or "0")
    cache = RedisCache(configured.CACHES["default"]["LOCATION"], {"OPTIONS": configured.CACHES["default"]["OPTIONS"]})
    cache.set("metadata-probe", 1)
    assert cache.get("metadata-probe") == 1
    host = configured.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    client = redis.Redis.from_url(host["address"], **{k: v for k, v in host.items() if k != "address"})
    assert client.ping()
    assert reads == []
