"""Django's Redis cache, with one redis-py client per connection pool.

Django's backend builds a new `redis.Redis` around its pool for every cache call, and
building one registers some 170 response callbacks: about a tenth of the session read
that every dashboard request makes (BENCHMARKS.md). A client is only a thin, thread-safe
front for its pool, and Django keeps one cache object per thread, so one client per pool
is shared safely.
"""

from __future__ import annotations

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))  # Pools live as long as this object.
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
