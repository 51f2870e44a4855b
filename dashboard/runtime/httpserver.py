"""The gateway's HTTP/1.1 server: httptools' parser under an asyncio.Protocol.

Why not aiohttp's server, which the admin API and the runners use: the gateway sits on
every request's path, and on a small machine its CPU per request is what limits an app's
throughput. aiohttp's server side (request object, multidicts, URL parsing, stream reader,
response object) cost ≈120–200 µs per request, most of the gateway's share; parsing with
httptools (llhttp, the parser Node.js uses) and answering with one prebuilt write costs
a fraction of that (BENCHMARKS.md has the before and after). The gateway needs little
of a web framework: one handler gets a whole request and returns a whole answer.

What it does: keep-alive and pipelined requests (answered in order, one at a time),
`Expect: 100-continue`, HEAD, bodies in Content-Length or chunked framing (httptools
de-chunks), limits on the head and body sizes (431 and 413), 400 for what does not parse,
an idle keep-alive timeout, and a graceful close that lets answers being computed finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

import httptools

log = logging.getLogger("switchboard.gateway")

MAX_HEAD_BYTES = 64 * 1024
KEEP_ALIVE_SECONDS = 75.0
# Requests parsed ahead of the one being answered (pipelining) before reading pauses.
MAX_PIPELINED = 16

REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


@dataclass(slots=True)
class Request:
    method: str
    path: bytes  # As received: still percent-encoded.
    query: bytes  # Without the "?"; b"" when there is none.
    headers: list[tuple[bytes, bytes]]  # Names and values as received, in order.
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Reply]]


def plain_error(status: int, message: str) -> Reply:
    """An answer the server gives on its own, before any handler (bad framing, limits)."""
    body = json.dumps({"error": {"code": "bad_request", "message": message}})
    return Reply(status, body.encode())


class _Clock:
    """The Date header's value, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[tuple[Request, bool]] = deque()
        self.worker: asyncio.Task | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.reading = True
        # Of the request being parsed:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._refused = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # Answered and closing: nothing after the refused request is read.
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(plain_error(501, "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            if not self._refused:
                self._refuse(plain_error(400, f"malformed HTTP request: {exc}"))
            return
        if not self.busy and not self.pending and not self.transport.is_closing():
            # Part of a request, and nothing being answered: a caller that stalls here
            # (or trickles bytes) gets the same idle timeout as a quiet keep-alive one.
            self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        # A handler already running finishes (it may hold a runner slot it must give
        # back); its answer has nowhere to go and is dropped.
        self.pending.clear()

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers, self._head_bytes = b"", [], 0
        self._body, self._body_bytes = [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._count_head(len(name) + len(value))

    def on_headers_complete(self) -> None:
        expects_continue = False
        for name, value in self._headers:
            name = name.lower()
            # A malformed Content-Length is httptools' to refuse; a large one is ours.
            if name == b"content-length" and value.isdigit() and int(value) > self.server.max_body:
                self._refuse(self._too_large())
                return
            if name == b"expect" and value.lower() == b"100-continue":
                expects_continue = True
        if expects_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.server.max_body:
            self._refuse(self._too_large())
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            self._refuse(plain_error(400, "malformed request target"))
            return
        request = Request(
            self.parser.get_method().decode("ascii"),
            url.path or b"/",
            url.query or b"",
            self._headers,
            b"".join(self._body),
        )
        self.pending.append((request, self.parser.should_keep_alive()))
        if len(self.pending) >= MAX_PIPELINED and self.reading:
            self.reading = False
            self.transport.pause_reading()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._answer_pending())

    # -- answering --------------------------------------------------------------------

    async def _answer_pending(self) -> None:
        while self.pending and not self.transport.is_closing():
            request, keep_alive = self.pending.popleft()
            if not self.reading and len(self.pending) < MAX_PIPELINED // 2:
                self.reading = True
                self.transport.resume_reading()
            try:
                reply = await self.server.handler(request)
            except Exception:
                log.exception("the gateway failed on %s %r", request.method, request.path)
                reply = plain_error(500, "the gateway failed on this request")
            if self.transport.is_closing():
                return  # The caller left while the answer was computed.
            keep_alive = keep_alive and not self.server.closing
            self._write(reply, keep_alive, head_only=request.method == "HEAD")
            if not keep_alive:
                self.pending.clear()
                self.transport.close()
                return
        if not self.transport.is_closing():
            self._arm_idle_timer()

    def _write(self, reply: Reply, keep_alive: bool, head_only: bool = False) -> None:
        lines = [
            b"HTTP/1.1 %d %s\r\n" % (reply.status, REASONS.get(reply.status, b"Unknown")),
            b"Date: %s\r\n" % self.server.clock.date(),
            b"Content-Type: %s\r\n" % reply.content_type.encode("latin-1"),
            b"Content-Length: %d\r\n" % len(reply.body),
        ]
        for name, value in reply.headers.items():
            lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        if not head_only:
            lines.append(reply.body)
        self.transport.write(b"".join(lines))

    def _refuse(self, reply: Reply) -> None:
        """Answer a request that cannot be read whole or parsed, then close: the rest of
        the stream can no longer be trusted to start at a request boundary."""
        self._refused = True
        self.pending.clear()
        if not self.transport.is_closing():
            self._write(reply, keep_alive=False)
            self.transport.close()

    def _too_large(self) -> Reply:
        return plain_error(413, f"the request body is larger than {self.server.max_body} bytes")

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES and not self._refused:
            self._refuse(plain_error(431, f"the request head is larger than {MAX_HEAD_BYTES}"))

    def _arm_idle_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(KEEP_ALIVE_SECONDS, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if not self.pending and (self.worker is None or self.worker.done()):
            self.transport.close()

    @property
    def busy(self) -> bool:
        return self.worker is not None and not self.worker.done()


class HttpServer:
    """Serves `handler` on host:port until close()."""

    def __init__(self, handler: Handler, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.clock = _Clock()
        self.connections: set[_Connection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024
        )

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, close idle connections, give answers in progress `grace`
        seconds to be written (each then closes its connection), then close the rest."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if not conn.busy:
                conn.transport.close()
        deadline = time.monotonic() + grace
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.transport.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
