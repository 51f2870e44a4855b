"""The gateway's routing table: for each app, its Current revision and live settings.

Loaded from the database at start, then kept fresh without a timer: the control plane
publishes {"app": name} on Redis (events.apps_channel) after every change, and this
table reloads that one app. An alias switch's message also carries the app's new state
(events.app_state) and version: the table routes by it at once, with no database
round trip on the way from the commit to the gateway. Messages from different processes
may arrive in another order than their commits, so a switch older than the one the table
has changes nothing. Every (re)subscription reloads everything, since changes may have
been missed while Redis was away, and a gateway cache miss reloads that app. A message
without the control plane's signature (events.read_message) changes nothing: Redis is not
the authority on who may call an app.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from dashboard.controlplane import events, parameters, revisions
from dashboard.controlplane.models import App, Network, Revision

log = logging.getLogger("switchboard.runtime")


@dataclass(frozen=True)
class AppRoute:
    name: str
    auth_mode: str
    owner_id: int | None
    settings: dict[str, Any]
    network: str = Network.OFF  # The app's outbound network for runners (sandboxed.py).
    revision: str | None = None
    revision_status: str | None = None
    entrypoint: str = ""
    bundle_dir: Path | None = None
    # Which alias switch this reflects: (App id, App.generation) when it was read or
    # announced; an app deleted and created again under the same name has a higher id.
    # Not part of the route itself, so a reload that finds the same route changes nothing.
    version: tuple[int, int] = field(default=(0, 0), compare=False)


@dataclass(frozen=True)
class RevisionInfo:
    id: str
    app: str
    status: str
    entrypoint: str
    bundle_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    is_current: bool = False
    network: str = Network.OFF  # The app's, when read: its runners start with it.


def effective_settings(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults, overlaid by each layer in turn (later wins)."""
    values = parameters.defaults()
    for layer in layers:
        values.update({k: v for k, v in (layer or {}).items() if k in values})
    return values


def route_from_state(name: str, state: dict[str, Any]) -> AppRoute:
    """The route of an app in the shape events.app_state gives it."""
    rev = state["revision"]
    return AppRoute(
        name=name,
        auth_mode=state["auth_mode"],
        owner_id=state["owner_id"],
        settings=effective_settings(rev["settings"] if rev else None, state["settings"]),
        network=state["network"],
        revision=rev["id"] if rev else None,
        revision_status=rev["status"] if rev else None,
        entrypoint=rev["entrypoint"] if rev else "",
        # Derived here, from this process's VAR_DIR, as the runtime's own reads always did.
        bundle_dir=Revision.bundle_dir_of(rev["id"]) if rev else None,
        version=(int(state["app_id"]), int(state["generation"])),
    )


def _route(app: App) -> AppRoute:
    return route_from_state(app.name, events.app_state(app))


def db_call(func: Callable) -> Callable:
    """Run an ORM function in Django's sync thread, on a connection that is still good."""

    def fresh(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        return func(*args, **kwargs)

    return sync_to_async(fresh)


@db_call
def load_all_routes() -> dict[str, AppRoute]:
    return {app.name: _route(app) for app in App.objects.select_related("current_revision")}


@db_call
def load_route(name: str) -> AppRoute | None:
    app = App.objects.select_related("current_revision").filter(name=name).first()
    return _route(app) if app else None


def _info(rev: Revision) -> RevisionInfo:
    is_current = rev.app.current_revision_id == rev.id
    return RevisionInfo(
        id=str(rev.id),
        app=rev.app.name,
        status=rev.status,
        entrypoint=rev.entrypoint,
        bundle_dir=rev.bundle_dir,
        # A Current revision runs with the alias's live settings (scale applies at once);
        # any other with the settings it was deployed with.
        settings=effective_settings(rev.settings, rev.app.settings if is_current else None),
        is_current=is_current,
        network=rev.app.network,
    )


@db_call
def load_revision(revision_id: str) -> RevisionInfo | None:
    try:
        key = uuid.UUID(revision_id)
    except ValueError:
        return None
    rev = Revision.objects.select_related("app").filter(pk=key).first()
    return None if rev is None else _info(rev)


@db_call
def resolve_revision(app: str, ref: str) -> RevisionInfo:
    """The revision of `app` that `ref` (a full id or a unique prefix of 8+ hex
    characters) names, read from the database: the one resolver the API and the CLI use
    (controlplane.revisions), so every surface says the same about a bad prefix. Raises
    its ControlError (400 invalid or ambiguous, 404 unknown or another app's).
    """
    return _info(revisions.resolve(revisions.get_app(app), ref))


class RoutingTable:
    def __init__(self, on_change: Callable[[str, AppRoute | None, AppRoute | None], None]):
        self.apps: dict[str, AppRoute] = {}
        # Told (name, old, new) after every reload, so runners of a revision that stopped
        # being Current can be drained and queued requests re-dispatched.
        self._on_change = on_change

    def _set(self, name: str, route: AppRoute | None) -> None:
        old = self.apps.get(name)
        if route is None:
            self.apps.pop(name, None)
        else:
            self.apps[name] = route
        if old != route:
            self._on_change(name, old, route)

    async def reload_all(self) -> None:
        routes = await load_all_routes()
        for name in set(self.apps) - set(routes):
            self._set(name, None)
        for name, route in routes.items():
            self._set_read(name, route)

    async def reload(self, name: str) -> AppRoute | None:
        return self._set_read(name, await load_route(name))

    def _set_read(self, name: str, route: AppRoute | None) -> AppRoute | None:
        """Take a route read from the database, unless a later switch overtook the read."""
        known = self.apps.get(name)
        if route is not None and known is not None and route.version < known.version:
            # The read began before a switch that was applied from its message meanwhile.
            return known
        self._set(name, route)
        return route

    async def apply(self, name: str, state: dict[str, Any]) -> AppRoute | None:
        """Route by an alias switch's announced state at once, with no database round trip.

        A switch older than the one the table has (its message arrived late) changes
        nothing; the table has the same one when the runtime is told twice (the message
        and the executor's sync). An app the table does not know yet, or a malformed
        state, is read from the database instead.
        """
        route = self._parse(name, state)
        known = self.apps.get(name)
        if route is None or known is None:
            return await self.reload(name)
        if route.version > known.version:
            self._set(name, route)
            return route
        return known

    @staticmethod
    def _parse(name: str, state: dict[str, Any]) -> AppRoute | None:
        try:
            return route_from_state(name, state)
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring the malformed state announced for app %s: %r", name, state)
            return None

    async def get(self, name: str) -> AppRoute | None:
        route = self.apps.get(name)
        return route if route is not None else await self.reload(name)

    async def follow_changes(self) -> None:
        """Reload apps as the control plane announces changes; reconnect when Redis drops."""
        while True:
            client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
            try:
                async with client.pubsub() as pubsub:
                    channel = events.apps_channel()
                    await pubsub.subscribe(channel)
                    await self.reload_all()
                    log.info("following app changes on Redis channel %s", channel)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        await self._reload_from(message["data"])
            except (aioredis.RedisError, OSError) as exc:
                log.warning("lost Redis subscription (%s); reconnecting in 1s", exc)
                await asyncio.sleep(1)
            finally:
                await client.aclose()

    async def _reload_from(self, data: bytes) -> None:
        try:
            message = events.read_message(data)
        except events.UntrustedMessage as exc:
            log.warning("ignoring an app-change message (%s): %r", exc, data[:500])
            return
        try:
            name, state = message["app"], message.get("state")
        except KeyError:
            log.warning("ignoring malformed app-change message %r", data[:500])
            return
        try:
            if state is None:
                await self.reload(name)
            else:
                await self.apply(name, state)
        except Exception:
            log.exception("could not reload app %s", name)
