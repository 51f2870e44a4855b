"""Who may call an app through the gateway (App.auth_mode).

public: anyone. shared: any valid API token of this installation. private: a token of
the app's owner or of an admin. Token lookups are cached for a few seconds: the gateway
is on every request's path, and a revoked token stops working within that time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dashboard.controlplane.models import ApiToken, AuthMode, Role, hash_token
from dashboard.runtime.routing import AppRoute, db_call

CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Caller:
    user_id: int
    is_admin: bool


class Denied(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


@db_call
def _lookup(token_hash: str) -> Caller | None:
    token = (
        ApiToken.objects.select_related("user", "user__switchboard_profile")
        .filter(token_hash=token_hash, revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    role = token.effective_role  # None for an inactive user; never more than the user holds.
    if role is None:
        return None
    return Caller(user_id=token.user_id, is_admin=role == Role.ADMIN)


class Authenticator:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, Caller | None]] = {}

    async def caller(self, raw: str) -> Caller | None:
        key = hash_token(raw)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        caller = await _lookup(key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + CACHE_SECONDS, caller)
        return caller

    async def check(self, authorization: str, route: AppRoute) -> None:
        """Raise Denied unless the Authorization header lets its bearer call `route`."""
        if route.auth_mode == AuthMode.PUBLIC:
            return
        if not authorization:
            raise Denied(
                401,
                "missing_token",
                f"app {route.name!r} needs an API token: send 'Authorization: Bearer sbt_...'",
            )
        scheme, _, raw = authorization.partition(" ")
        raw = raw.strip()
        caller = None
        if scheme.lower() == "bearer" and raw.startswith(ApiToken.PREFIX):
            caller = await self.caller(raw)
        if caller is None:
            raise Denied(401, "invalid_token", "the API token is invalid, revoked or malformed")
        if route.auth_mode == AuthMode.SHARED:
            return
        if not (caller.is_admin or caller.user_id == route.owner_id):
            raise Denied(
                403,
                "forbidden",
                f"app {route.name!r} is private: only its owner and admins may call it",
            )
