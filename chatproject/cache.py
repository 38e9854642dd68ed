"""Django's Redis cache, with one redis-py client per process and configuration (settings.CACHES).

Two of Django's habits cost a gateway dearly, so both are undone here:

* ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` on every cache call, and redis-py
  fills a table of a few hundred response callbacks in each: about 0.3 ms of CPU per cache
  operation, a quarter of a message send (issue 15's profile). One client per pool is kept.
* Django keeps a cache object per context (``caches`` is an asgiref ``Local``), and each object
  built its own pool. Every WebSocket consumer runs in a context of its own, so each handshake
  opened a new TCP connection to Redis (connect, ``CLIENT SETINFO`` twice, then garbage): in a
  reconnect storm, a thousand connections for a thousand tickets. Cache objects of one
  configuration now share one client, whose pool keeps its connections.

A ``redis.Redis`` is safe to share between threads (each command borrows a connection from
the pool, and the pool starts afresh in a forked child). Everything else is Django's.
"""
from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends import redis as django_redis
from django.utils.functional import cached_property

# Its private attributes (_pools, _servers, ...) are not in django-stubs: typed as Any.
_DjangoRedisCacheClient: Any = django_redis.RedisCacheClient


class RedisCacheClient(_DjangoRedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:  # a race here builds a spare client, harmlessly
            if index not in self._pools:
                self._pools[index] = self._pool_class.from_url(self._servers[index], **self._pool_options)
            client = self._clients[index] = self._client(connection_pool=self._pools[index])
        return client


_shared_clients: dict[tuple[Any, ...], RedisCacheClient] = {}
_shared_lock = threading.Lock()


def shared_client(servers: list[str], options: dict[str, Any]) -> RedisCacheClient:
    """The process's client for these servers and options (the key prefix and timeouts are the
    cache object's, not the client's, so caches that differ only in those share it too)."""
    key = (tuple(servers), tuple(sorted((name, repr(value)) for name, value in options.items())))
    client = _shared_clients.get(key)
    if client is None:
        with _shared_lock:
            client = _shared_clients.get(key)
            if client is None:
                client = _shared_clients[key] = RedisCacheClient(servers, **options)
    return client


class RedisCache(django_redis.RedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        return shared_client(self._servers, self._options)  # type: ignore[attr-defined]

    def pop(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """The value of ``key``, deleted in the same step (Redis ``GETDEL``): of two callers
        racing for one key, exactly one gets it, in one round trip instead of a get and a delete."""
        key = self.make_and_validate_key(key, version=version)
        value = self._cache.get_client(key, write=True).getdel(key)
        return default if value is None else self._cache._serializer.loads(value)
