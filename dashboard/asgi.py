"""The dashboard and control API as an ASGI application, served by granian (see web_command).

Why ASGI: under a threaded WSGI server every connection holds a thread from its first
byte to its last, so a few dozen clients that trickle their headers or stall their body
take every thread and the API stops answering. Under ASGI, granian reads the headers
(and closes a connection whose headers stall past its header read timeout) and Django
reads the body in the event loop, so a slow client costs a coroutine, not a thread;
views still run synchronously, in asgiref's thread.

Django has no timeout for a stalled body; `Handler` adds one: a request whose body
sends nothing for WEB_BODY_TIMEOUT seconds is answered 408 and its connection closed.
As Django under ASGI reads every body before any view runs, `Handler` also refuses a
body over DATA_UPLOAD_MAX_MEMORY_SIZE with 413 while reading it.

Django's own handler runs a chain of sync middleware in a thread, goes back to the event
loop for the view middleware and the view, and from there to a thread again for each:
four round trips between loop and thread for every request. Every middleware and view
here is sync but the live stream, so `Handler` runs the whole chain, view included, in
one thread: one round trip (an async view, the live stream, is run on the loop from
there and returns its stream at once). BENCHMARKS.md, "The progress poll under ASGI",
compares the two.
"""

from __future__ import annotations

import asyncio
import os

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse

from dashboard.controlplane.api.errors import error_response

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")


class BodyRefused(Exception):
    """The request body stalled or is too large; refused before any view runs."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, "body_too_large", f"the request body is over {limit} bytes")


class Handler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)

    async def read_body(self, receive):
        # An idle timeout between chunks, as nginx's client_body_timeout: a slow but
        # moving upload of a large bundle goes on; a stalled one is cut.
        timeout = settings.WEB_BODY_TIMEOUT
        # Under WSGI a view that never reads the body never receives it; here every body
        # is read (to disk past FILE_UPLOAD_MAX_MEMORY_SIZE) before any check runs, so
        # the largest body Django accepts anywhere bounds it.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        received = 0

        async def receive_within_limits():
            nonlocal received
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyRefused(
                    408,
                    "body_timeout",
                    f"the request body stalled: nothing arrived for {timeout:g}s",
                ) from None
            received += len(message.get("body", b""))
            if limit is not None and received > limit:
                raise _too_large(limit)
            return message

        return await super().read_body(receive_within_limits)

    async def handle(self, scope, receive, send):
        try:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            declared = dict(scope.get("headers", ())).get(b"content-length", b"")
            if limit is not None and declared.isdigit() and int(declared) > limit:
                raise _too_large(limit)  # Refused before reading any of it.
            await super().handle(scope, receive, send)
        except BodyRefused as refused:
            # Nothing was sent yet: the body is read before the request is handled.
            # Without the whole body read, granian closes the connection after this.
            await self.send_response(_refusal(scope["path"], refused), send)


def _refusal(path: str, refused: BodyRefused) -> HttpResponse:
    if path.startswith("/api/"):
        return error_response(refused.status, refused.code, refused.message)
    return HttpResponse(
        refused.message, status=refused.status, content_type="text/plain; charset=utf-8"
    )


def _application() -> Handler:
    # What django.core.asgi.get_asgi_application() does, with our handler.
    import django

    django.setup(set_prefix=False)
    return Handler()


application = _application()
