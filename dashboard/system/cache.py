"""Django's Redis cache, with one client for the whole process.

Django keeps its cache objects per request context (`django.core.cache.caches` is an
asgiref `Local`), and each `RedisCache` builds its own redis-py client with its own
connection pool. Under ASGI every request runs in a context of its own, so each request
built a client (redis-py looks its own version up in the installed packages for each)
and opened a new TCP connection to Redis for its session read, left for the garbage
collector to close. Here every cache object of the process with the same servers and
options shares one client, so its pool's connections are opened once and reused.
redis-py's client and pool are thread-safe, and after a fork (granian's and Celery's
workers) the pool starts over in the child. BENCHMARKS.md, "The progress poll under
ASGI", has the figures.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from django.core.cache.backends import redis as django_redis
from django.utils.functional import cached_property


class RedisCache(django_redis.RedisCache):
    _clients: ClassVar[dict[str, django_redis.RedisCacheClient]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @cached_property
    def _cache(self) -> django_redis.RedisCacheClient:
        key = repr((self._servers, sorted(self._options.items())))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._class(self._servers, **self._options)
            return client
