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
"""

from __future__ import annotations

import logging

from django.contrib.sessions.backends import cached_db
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from redis.exceptions import RedisError

log = logging.getLogger("switchboard.web")

CACHE_SECONDS = 300
KEY_PREFIX = cached_db.KEY_PREFIX


class SessionStore(cached_db.SessionStore):
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
            if session_key and (self.cache_key_prefix + session_key) in self._cache:
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
            self._cache.delete(self.cache_key_prefix + session_key)
        except RedisError as exc:
            log.warning(
                "session cache unavailable, the ended session stays cached for at most %ss: %s",
                CACHE_SECONDS,
                exc,
            )

    def _cache_set(self, data: dict, expiry_age: int) -> None:
        try:
            self._cache.set(self.cache_key, data, min(expiry_age, CACHE_SECONDS))
        except RedisError as exc:
            log.warning("session cache unavailable, not caching: %s", exc)
