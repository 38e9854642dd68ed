"""Django's Redis cache, keeping one redis-py client per connection pool (settings.CACHES).

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` on every cache call, and
redis-py fills a table of a few hundred response callbacks in each: about 0.3 ms of CPU per
cache operation here, a quarter of a message send (the send's rate limit is one cache call;
issue 15's profile). A ``redis.Redis`` is safe to share between threads (each command borrows
a connection from the pool, and the pool starts afresh in a forked child), so one per pool
is kept and reused. Everything else is Django's.
"""
from __future__ import annotations

from typing import Any

from django.core.cache.backends import redis as django_redis

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


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    def pop(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """The value of ``key``, deleted in the same step (Redis ``GETDEL``): of two callers
        racing for one key, exactly one gets it, in one round trip instead of a get and a delete."""
        key = self.make_and_validate_key(key, version=version)
        client: Any = self._cache  # type: ignore[attr-defined]  # Django's, not in django-stubs
        value = client.get_client(key, write=True).getdel(key)
        return default if value is None else client._serializer.loads(value)
