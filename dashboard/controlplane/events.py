"""Telling the runtime's gateway that an app changed, without it polling on a timer.

The control plane publishes on a Redis channel after the change is committed; the
gateway subscribes and updates that app's routing. A message that carries the app's
routing state (an alias switch, see app_state) is routed by at once, with no database
round trip; any other message makes the gateway reload the app from the database. If
Redis is down the publish is skipped with a warning: the executor also calls
runtime_client.sync_app for switches that must take effect before it goes on, and the
gateway reloads every app whenever its subscription (re)connects.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

if TYPE_CHECKING:
    from dashboard.controlplane.models import App

log = logging.getLogger(__name__)


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)


def apps_channel() -> str:
    """The Redis channel this installation's app changes are announced on.

    Unlike keys, pub/sub channels are shared by all the databases of a Redis server.
    Naming the channel after the database number keeps installations that share a server,
    each on its own database (as the tests and the bench do), from hearing each other:
    an announced state names revisions that only its own installation has.
    """
    return (
        f"{settings.REDIS_NAMESPACE}:apps:{_redis().connection_pool.connection_kwargs.get('db', 0)}"
    )


def app_state(app: App) -> dict[str, Any]:
    """What the gateway routes an app by: the app row and its Current revision.

    Needs app.current_revision loaded. The runtime builds its route from this whether it
    came in a message or from its own database read, so the two cannot disagree.
    `app_id` and `generation` order alias switches (see App.generation); the id tells an
    app re-created under the same name from the old one.
    """
    rev = app.current_revision
    return {
        "app_id": app.pk,
        "generation": app.generation,
        "auth_mode": app.auth_mode,
        "owner_id": app.owner_id,
        "settings": app.settings,
        "revision": {
            "id": str(rev.id),
            "status": rev.status,
            "entrypoint": rev.entrypoint,
            "settings": rev.settings,
        }
        if rev
        else None,
    }


def publish_app_changed(app_name: str, state: dict[str, Any] | None = None) -> None:
    """Publish once the surrounding transaction commits (at once outside one).

    `state` is app_state() as an alias switch leaves the app (its generation moved on):
    the gateway routes by it without a database round trip. Without it the gateway
    reloads the app from the database, which any other change needs, since only a switch
    moves the generation the gateway orders messages by.
    """

    def send() -> None:
        message = {"app": app_name, "at": timezone.now().isoformat()}
        if state is not None:
            message["state"] = state
        try:
            _redis().publish(apps_channel(), json.dumps(message))
        except redis.RedisError as exc:
            log.warning("could not announce change of app %s: %s", app_name, exc)

    transaction.on_commit(send)
