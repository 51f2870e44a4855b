"""The dashboard and control API as an ASGI application, served by granian (see web_command).

Why ASGI: under a threaded WSGI server every connection holds a thread from its first
byte to its last, so a few dozen clients that trickle their headers or stall their body
take every thread and the API stops answering. Under ASGI, granian reads the headers
(and closes a connection whose headers stall past its header read timeout) and Django
reads the body in the event loop, so a slow client costs a coroutine, not a thread;
views still run synchronously, in asgiref's thread.

Django has no timeout for a stalled body; `Handler` adds one: a request whose body
sends nothing for WEB_BODY_TIMEOUT seconds is answered 408 and its connection closed.
"""

from __future__ import annotations

import asyncio
import os

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")


class BodyTimedOut(Exception):
    """The client sent no part of the request body for WEB_BODY_TIMEOUT seconds."""


class Handler(ASGIHandler):
    async def read_body(self, receive):
        # An idle timeout between chunks, as nginx's client_body_timeout: a slow but
        # moving upload of a large bundle goes on; a stalled one is cut.
        timeout = settings.WEB_BODY_TIMEOUT

        async def receive_or_time_out():
            try:
                async with asyncio.timeout(timeout):
                    return await receive()
            except TimeoutError:
                raise BodyTimedOut from None

        return await super().read_body(receive_or_time_out)

    async def handle(self, scope, receive, send):
        try:
            await super().handle(scope, receive, send)
        except BodyTimedOut:
            # Nothing was sent yet: the body is read before the request is handled.
            # Without the whole body read, granian closes the connection after this.
            message = (
                f"the request body stalled: nothing arrived for {settings.WEB_BODY_TIMEOUT:g}s"
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 408,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": message.encode()})


def _application() -> Handler:
    # What django.core.asgi.get_asgi_application() does, with our handler.
    import django

    django.setup(set_prefix=False)
    return Handler()


application = _application()
