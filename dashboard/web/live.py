"""Server-sent events that make an open Versions page refresh the moment its app changes.

The control plane publishes the app's id on events.pages_channel() once a change is
committed (an operation created, claimed, given a step or ended; an alias switch). This
view holds the browser's EventSource open, subscribed to that channel with redis.asyncio,
and sends `event: changed` for each change of its app; the page then re-fetches its
table and its action panels in one request (versions.html, static/js/poll.js). The event
carries no data: what changed is read from the database, as the signed-in user may see it.

An async view, so an open stream costs a coroutine and a Redis connection, not one of the
web server's threads. Every stream is bounded:
- it ends after LIVE_MAX_SECONDS (the browser reconnects by itself and the page refreshes
  once on reconnecting, so nothing is missed across the gap);
- a session holds at most LIVE_MAX_PER_SESSION streams at once (each tab holds one; a
  browser speaks to one host over at most six HTTP/1.1 connections), counted in Redis
  because every web worker serves some; past that the answer is 429 and the page polls;
- changes that arrive while the browser has not yet read the last event are coalesced
  into one event, so a client that never reads costs at most the socket's buffers;
- a comment line every LIVE_HEARTBEAT_SECONDS lets proxies and the browser see the stream
  is alive, and lets the server notice a client that went away.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError

from dashboard.controlplane import events
from dashboard.web.access import BadInput, get_app

log = logging.getLogger("switchboard.web")

CHANGED = b"event: changed\ndata: \n\n"
HEARTBEAT = b": alive\n\n"


def _streams_key(session_key: str) -> str:
    # A hash, never the session key itself (see web/sessions.py: keys are listed openly).
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:32]
    return f"{settings.REDIS_NAMESPACE}:live:{digest}"


def _about(message: dict | None, app_id: int) -> bool:
    if not message or message.get("type") != "message":
        return False
    try:
        return json.loads(message["data"]).get("app_id") == app_id
    except (ValueError, AttributeError):
        return False  # Not ours: the channel is open to anyone who can publish on Redis.


def stream_url(request: HttpRequest, app: str) -> str:
    """The app's stream for a page to connect to, or "" where it cannot stream: under a
    WSGI server (`manage.py runserver`, the test suite's live server) Django collects an
    async stream whole before sending any of it, so the page polls instead."""
    return reverse("app-events", args=[app]) if isinstance(request, ASGIRequest) else ""


@require_GET
@login_required
async def app_events(request: HttpRequest, app: str) -> HttpResponse:
    if not isinstance(request, ASGIRequest):
        return HttpResponse(
            "Live updates need the ASGI server (manage.py up); this page polls instead.",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    try:
        app_obj = await sync_to_async(get_app)(app)
    except BadInput as exc:
        return HttpResponse(exc.message, status=404, content_type="text/plain; charset=utf-8")
    session_key = request.session.session_key or ""
    client = aioredis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=1, health_check_interval=0
    )
    key = _streams_key(session_key)
    try:
        async with client.pipeline(transaction=True) as pipe:
            held, _ = (
                await pipe.incr(key).expire(key, int(settings.LIVE_MAX_SECONDS) + 60).execute()
            )
        if held > settings.LIVE_MAX_PER_SESSION:
            await client.decr(key)
            await client.aclose()
            return HttpResponse(
                f"This session already holds {settings.LIVE_MAX_PER_SESSION} live "
                "connections; this page refreshes by polling instead.",
                status=429,
                content_type="text/plain; charset=utf-8",
                headers={"Retry-After": str(int(settings.LIVE_MAX_SECONDS))},
            )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(events.pages_channel())
    except RedisError as exc:
        log.warning("live updates unavailable: %s", exc)
        await client.aclose()
        return HttpResponse(
            "Live updates are unavailable (Redis does not answer); this page refreshes by "
            "polling instead.",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    response = StreamingHttpResponse(
        _stream(client, pubsub, key, app_obj.pk), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # Proxies that buffer (nginx) pass events at once.
    return response


async def _stream(
    client: aioredis.Redis, pubsub: aioredis.client.PubSub, key: str, app_id: int
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    heartbeat = settings.LIVE_HEARTBEAT_SECONDS
    try:
        # The browser reconnects a second after the stream ends (its default is ~3 s).
        yield b"retry: 1000\n" + HEARTBEAT
        last_sent = started = loop.time()
        while (left := started + settings.LIVE_MAX_SECONDS - loop.time()) > 0:
            wait = max(0.0, min(left, last_sent + heartbeat - loop.time()))
            message = await pubsub.get_message(timeout=wait)
            if _about(message, app_id):
                # Whatever else is already waiting makes no second refresh.
                while await pubsub.get_message(timeout=0) is not None:
                    pass
                last_sent = loop.time()
                yield CHANGED
            elif loop.time() - last_sent >= heartbeat:
                last_sent = loop.time()
                yield HEARTBEAT
    except RedisError as exc:
        # The browser reconnects; meanwhile the page polls (static/js/poll.js).
        log.warning("live updates interrupted: %s", exc)
    finally:
        try:
            await pubsub.aclose()
            await client.decr(key)
        except RedisError:
            pass  # The count expires by itself.
        finally:
            await client.aclose()
