"""Telling the runtime's gateway that an app changed, without it polling on a timer.

The control plane publishes on a Redis channel after the change is committed; the
gateway subscribes and updates that app's routing. A message that carries the app's
routing state (an alias switch, see app_state) is routed by at once, with no database
round trip; any other message makes the gateway reload the app from the database. If
Redis is down the publish is skipped with a warning: the executor also calls
runtime_client.sync_app for switches that must take effect before it goes on, and the
gateway reloads every app whenever its subscription (re)connects.

Messages are signed (signed() / read_message()): anyone who can publish on Redis could
otherwise announce a state the control plane never committed, e.g. a private app made
public, and the gateway would route by it.
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
from django.utils.crypto import constant_time_compare, salted_hmac

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


def pages_channel() -> str:
    """The Redis channel that tells open dashboard pages an app's state changed.

    Apart from the gateway's: a deploy's every step and an operation's end change what
    the Versions page shows but not how the gateway routes, and each message here would
    otherwise make the gateway reload the app from the database. Its messages name the
    app's primary key and nothing else: the page reads what changed from the database.
    """
    return apps_channel().replace(":apps:", ":pages:", 1)


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
        "network": app.network,
        "revision": {
            "id": str(rev.id),
            "status": rev.status,
            "entrypoint": rev.entrypoint,
            "settings": rev.settings,
        }
        if rev
        else None,
    }


# Derives the messages' HMAC key from SECRET_KEY (Django's salted_hmac), so it is never
# the key of anything else and rotates with it.
SIGNATURE_SALT = "switchboard.controlplane.events.apps-channel"


class UntrustedMessage(ValueError):
    """A message on the apps channel that the control plane did not send (or not whole)."""


def _signature(message: dict[str, Any]) -> str:
    # Over a canonical form, so the receiver can check the object it parsed: any change,
    # including a duplicated key that JSON parsing would resolve differently, breaks it.
    body = json.dumps(message, sort_keys=True, separators=(",", ":"))
    return salted_hmac(SIGNATURE_SALT, body, algorithm="sha256").hexdigest()


def signed(message: dict[str, Any]) -> dict[str, Any]:
    """The message with its signature under "sig"; still plain JSON for anyone reading."""
    return {**message, "sig": _signature(message)}


def read_message(data: bytes | str) -> dict[str, Any]:
    """The message the control plane signed, or UntrustedMessage saying why not.

    Why signatures rather than treating a message as a hint to re-read the database: the
    state in an alias switch's message is what lets the gateway switch with no database
    round trip (BENCHMARKS.md), and checking it costs one HMAC. A hint would cost a read
    per message, forged ones included. A genuine message replayed later cannot undo a
    change: switches are ordered by (App id, generation), and a message without state
    only makes the gateway read the database.
    """
    try:
        message = json.loads(data)
    except ValueError:
        raise UntrustedMessage("not JSON") from None
    if not isinstance(message, dict):
        raise UntrustedMessage("not a JSON object")
    signature = message.pop("sig", None)
    if not isinstance(signature, str):
        raise UntrustedMessage("unsigned")
    if not constant_time_compare(signature, _signature(message)):
        raise UntrustedMessage("bad signature")
    return message


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
            _redis().publish(apps_channel(), json.dumps(signed(message)))
        except redis.RedisError as exc:
            log.warning("could not announce change of app %s: %s", app_name, exc)
        if state is not None:
            # An alias switch: open pages refresh at once too (see pages_channel).
            _announce_page_change(state["app_id"])

    transaction.on_commit(send)


def _announce_page_change(app_id: int) -> None:
    try:
        _redis().publish(pages_channel(), json.dumps({"app_id": app_id}))
    except redis.RedisError as exc:
        log.warning("could not tell open pages of a change of app %s: %s", app_id, exc)


def publish_page_changed(app_id: int) -> None:
    """Tell open pages (dashboard/web/live.py) once the surrounding transaction commits.

    Called by every change the dashboard shows: an operation created, claimed, given a
    step or ended, and through publish_app_changed an alias switch. A page that misses
    one (Redis down) catches up at its next fallback poll.
    """
    transaction.on_commit(lambda: _announce_page_change(app_id))
