"""Telling the runtime's gateway that an app changed, without it polling on a timer.

The control plane publishes on a Redis channel after the change is committed; the
gateway subscribes and reloads that app's routing from the database. If Redis is down
the publish is skipped with a warning: the executor also calls runtime_client.sync_app
for switches that must take effect before it goes on, and the gateway reloads every app
whenever its subscription (re)connects.
"""

from __future__ import annotations

import json
import logging
from functools import cache

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

log = logging.getLogger(__name__)
APPS_CHANNEL = "switchboard:apps"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)


def publish_app_changed(app_name: str) -> None:
    """Publish once the surrounding transaction commits (at once outside one)."""

    def send() -> None:
        message = json.dumps({"app": app_name, "at": timezone.now().isoformat()})
        try:
            _redis().publish(APPS_CHANNEL, message)
        except redis.RedisError as exc:
            log.warning("could not announce change of app %s: %s", app_name, exc)

    transaction.on_commit(send)
