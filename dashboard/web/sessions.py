"""Dashboard sessions: kept in PostgreSQL, read through the shared Redis cache.

Every dashboard request reads its session, and an open action panel polls once a second,
so the session read is on the hottest path the dashboard has. Django's `cached_db` store
answers it from Redis and keeps the database row as the record. Redis is shared by every
web worker, so a sign-out (which deletes both) ends the session everywhere at once; a
per-process cache could not promise that.

Redis is a cache here, never the only copy: when it cannot be reached, sessions are read
from and written to the database alone and the dashboard keeps working (Django's store
would fail the request). A sign-out during such an outage cannot delete the cached copy,
so cached copies live at most CACHE_SECONDS: a session ended while Redis was unreachable
is over everywhere within that time, even if Redis kept its data through the outage.

The cache key is a hash of the session key, never the key itself: Redis key names are
listed by anyone who can run KEYS or MONITOR on the server, and a session key is a
signed-in user's credential.
"""

from __future__ import annotations

import hashlib
import logging

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends import cached_db
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from redis.exceptions import RedisError

log = logging.getLogger("switchboard.web")

CACHE_SECONDS = 300
KEY_PREFIX = cached_db.KEY_PREFIX


def cache_key_of(session_key: str) -> str:
    """The Redis cache key a session is kept under."""
    # Plain SHA-256 is enough: a session key is 32 random characters, so its hash can be
    # neither reversed nor guessed.
    return KEY_PREFIX + hashlib.sha256(session_key.encode()).hexdigest()


class SessionStore(cached_db.SessionStore):
    @property
    def cache_key(self) -> str:
        return cache_key_of(self._get_or_create_session_key())

    async def acache_key(self) -> str:
        return cache_key_of(await self._aget_or_create_session_key())

    def load(self) -> dict:
        try:
            data = self._cache.get(self.cache_key)
        except RedisError as exc:
            log.warning("session cache unavailable, reading the database: %s", exc)
            return DatabaseStore.load(self)
        if data is not None:
            return data
        row = self._get_session_from_db()
        if row is None:
            return {}
        data = self.decode(row.session_data)
        self._cache_set(data, self.get_expiry_age(expiry=row.expire_date))
        return data

    def exists(self, session_key: str) -> bool:
        try:
            if session_key and cache_key_of(session_key) in self._cache:
                return True
        except RedisError:
            pass  # The database answers alone.
        return DatabaseStore.exists(self, session_key)

    def save(self, must_create: bool = False) -> None:
        DatabaseStore.save(self, must_create)
        self._cache_set(self._session, self.get_expiry_age())

    def delete(self, session_key: str | None = None) -> None:
        DatabaseStore.delete(self, session_key)
        session_key = session_key or self.session_key
        if session_key is None:
            return
        try:
            self._cache.delete(cache_key_of(session_key))
        except RedisError as exc:
            log.warning(
                "session cache unavailable, the ended session stays cached for at most %ss: %s",
                CACHE_SECONDS,
                exc,
            )

    # Django's async variants build the raw cache key themselves: these go through the
    # methods above instead.
    async def aexists(self, session_key: str) -> bool:
        return await sync_to_async(self.exists)(session_key)

    async def adelete(self, session_key: str | None = None) -> None:
        await sync_to_async(self.delete)(session_key)

    def _cache_set(self, data: dict, expiry_age: int) -> None:
        try:
            self._cache.set(self.cache_key, data, min(expiry_age, CACHE_SECONDS))
        except RedisError as exc:
            log.warning("session cache unavailable, not caching: %s", exc)
