"""The gateway's HTTP/1.1 server: httptools' parser under an asyncio.Protocol.

Why not aiohttp's server, which the admin API and the runners use: the gateway sits on
every request's path, and on a small machine its CPU per request is what limits an app's
throughput. aiohttp's server side (request object, multidicts, URL parsing, stream reader,
response object) was most of the gateway's share; parsing with httptools (llhttp, the
parser Node.js uses) and answering with one prebuilt write costs less. BENCHMARKS.md
compares it with uvicorn, aiohttp and nginx ("Framework first") and says what is owed. The gateway needs little
of a web framework: one handler gets a request as soon as its head has arrived and
returns an answer.

What it does: keep-alive and pipelined requests (answered in order, one at a time),
`Expect: 100-continue`, HEAD, bodies in Content-Length or chunked framing (httptools
de-chunks; trailers are dropped), limits on the head and body sizes (431 and 413), 400 for
what does not parse, an idle keep-alive timeout, and a graceful close that lets answers
being computed finish. Bodies stream both ways with backpressure: a request body reaches
the handler piece by piece (`Body.read()`), reading from the caller pauses while more than
HIGH_WATER bytes wait, and an answer's body may be a StreamBody, written as the caller
reads it. A head that does not arrive within the head timeout, or a body (or a reading of
the answer) that stalls past the body timeout, closes the connection (408 when nothing
was answered yet): a slow caller costs a socket, never a runner or unbounded memory.
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
from typing import Protocol

import httptools

log = logging.getLogger("switchboard.gateway")

MAX_HEAD_BYTES = 64 * 1024
KEEP_ALIVE_SECONDS = 75.0
# A request head must arrive whole within this many seconds of its first byte, and a
# request body (or the caller's reading of an answer) may make no progress for at most
# this long: a caller that trickles or stalls is closed, not waited for (slowloris).
HEAD_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0
# Requests parsed ahead of the one being answered (pipelining) before reading pauses.
MAX_PIPELINED = 16
# Request body bytes held for a handler that is not reading them: above HIGH_WATER reading
# from the caller pauses, below LOW_WATER it resumes. This bounds a connection's memory
# whatever the body's size or the speed of whoever consumes it.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


class ClientGone(Exception):
    """The caller closed the connection, stalled, or sent a body that was refused."""


class Body:
    """A request body as it arrives: `read()` gives the next piece, b"" at its end.

    Fed by the connection's parser; pauses the connection while more than HIGH_WATER
    bytes wait unread, so a large upload never sits whole in the gateway's memory.
    """

    __slots__ = ("_conn", "_chunks", "_size", "_waiter", "complete", "failed", "discarding")

    def __init__(self, conn: _Connection | None) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self.complete = conn is None
        self.failed: Exception | None = None
        self.discarding = False

    def ready(self) -> bytes | None:
        """The whole body, when all of it has already arrived and none was read; else None."""
        if not self.complete or self.failed is not None:
            return None
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return data

    async def settled(self) -> None:
        """Wait until the body has arrived whole or has filled the buffer (or failed).

        The gateway waits here before taking a runner's slot, so that a caller who sends
        a head and then stalls (or trickles a small body) never holds a runner."""
        while not (self.complete or self.failed is not None or self._size > HIGH_WATER):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.failed is not None:
            raise self.failed

    async def read(self) -> bytes:
        while not self._chunks:
            if self.failed is not None:
                raise self.failed
            if self.complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.failed is not None:
            raise self.failed
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._size < LOW_WATER and self._conn is not None:
            self._conn._resume("body")
        return chunk

    async def read_all(self) -> bytes:
        parts = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    # -- fed by the connection ----------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self.discarding:
            return
        self._chunks.append(data)
        self._size += len(data)
        self._wake()
        if self._size > HIGH_WATER:
            self._conn._pause("body")

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, exc: Exception) -> None:
        if self.failed is None and not self.complete:
            self.failed = exc
        self._wake()

    def _discard(self) -> None:
        """The answer went out without the rest of the body: drop it as it arrives, so
        that the connection can read on to the next request."""
        self.discarding = True
        self._chunks.clear()
        self._size = 0
        if self._conn is not None:
            self._conn._resume("body")

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


@dataclass(slots=True)
class Request:
    method: str
    path: bytes  # As received: still percent-encoded.
    query: bytes  # Without the "?"; b"" when there is none.
    headers: list[tuple[bytes, bytes]]  # Names and values as received, in order.
    body: Body
    length: int | None = 0  # Content-Length; None for a chunked body.

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    async def read(self) -> bytes:
        """The whole body (at most the server's max_body bytes: more is refused with 413)."""
        return await self.body.read_all()


class StreamBody(Protocol):
    """An answer's body that arrives in pieces. The server calls close() exactly once,
    whether or not it read to the end (the caller may leave), so that whatever the body
    holds (a runner's connection, a slot) is given back."""

    async def read(self) -> bytes: ...  # The next piece; b"" at the end.

    def close(self) -> None: ...


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes | StreamBody
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # Of a StreamBody; None sends it chunked.


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


def _close_body(reply: Reply) -> None:
    if not isinstance(reply.body, bytes):
        try:
            reply.body.close()
        except Exception:
            log.exception("closing an answer's body failed")


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[tuple[Request, bool]] = deque()
        self.worker: asyncio.Task | None = None
        self.paused_by: set[str] = set()  # Why reading is paused: "pipeline", "body".
        self.writable: asyncio.Future[None] | None = None  # Set while writing is paused.
        self.responding = False  # An answer's head has been written, its body not all.
        # The one timer: "idle" between requests, "head" while a head arrives, "body"
        # while a body arrives (and reading is not paused by us); None otherwise.
        self.timer: asyncio.TimerHandle | None = None
        self.timer_kind: str | None = None
        self.progress = 0.0  # When the body last moved.
        # Of the request being parsed:
        self.in_message = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._head_bytes = 0
        self._body: Body | None = None
        self._body_bytes = 0
        self._refused = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self._arm("head")  # A new caller gets as long to send a head as a stalled one.

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # Answered and closing: nothing after the refused request is read.
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(plain_error(501, "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            if not self._refused:
                self._refuse(plain_error(400, f"malformed HTTP request: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self._arm(None)
        gone = ClientGone("the caller closed the connection")
        if self._body is not None:
            self._body._fail(gone)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)  # The writer wakes and finds the transport closed.
        # A handler already running finishes (it may hold a runner slot it must give
        # back); its answer has nowhere to go and is dropped.
        self.pending.clear()

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self._url, self._headers, self._head_bytes = b"", [], 0
        self._head_done, self._body, self._body_bytes = False, None, 0
        self._arm("head")  # A deadline from the first byte: trickling does not extend it.

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # A chunked body's trailer: never passed on as a header.
        self._headers.append((name, value))
        self._count_head(len(name) + len(value))

    def on_headers_complete(self) -> None:
        self._head_done = True
        if self._refused:
            return
        expects_continue, length, chunked = False, 0, False
        for name, value in self._headers:
            name = name.lower()
            if name == b"content-length" and value.isdigit():
                # A malformed Content-Length is httptools' to refuse; a large one is ours.
                length = int(value)
                if length > self.server.max_body:
                    self._refuse(self._too_large())
                    return
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"expect" and value.lower() == b"100-continue":
                expects_continue = True
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            self._refuse(plain_error(400, "malformed request target"))
            return
        self._body = Body(self)
        request = Request(
            self.parser.get_method().decode("ascii"),
            url.path or b"/",
            url.query or b"",
            self._headers,
            self._body,
            None if chunked else length,
        )
        if chunked or length:
            self._arm("body")
        else:
            self._arm(None)
        if expects_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # The handler starts now, with the body still arriving: it streams it on.
        self.pending.append((request, self.parser.should_keep_alive()))
        if len(self.pending) >= MAX_PIPELINED:
            self._pause("pipeline")
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._answer_pending())

    def on_body(self, body: bytes) -> None:
        if self._refused or self._body is None:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.server.max_body:
            self._refuse(self._too_large())
            return
        self.progress = self.loop.time()
        self._body._feed(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self._refused or self._body is None:
            return
        self._body._finish()
        self._body = None
        self._arm(None)

    # -- flow control -----------------------------------------------------------------

    def _pause(self, reason: str) -> None:
        if not self.paused_by and not self.transport.is_closing():
            self.transport.pause_reading()
            if self.timer_kind == "body":
                self._arm(None)  # Our pause, not the caller's stall.
        self.paused_by.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self.paused_by:
            return
        self.paused_by.discard(reason)
        if not self.paused_by and not self.transport.is_closing():
            self.transport.resume_reading()
            if self._body is not None and self.timer_kind is None:
                self._arm("body")

    async def _drain(self) -> None:
        if self.writable is not None and not self.writable.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.writable), self.server.body_timeout)
            except TimeoutError:
                raise ClientGone("the caller stopped reading the answer") from None
        if self.transport.is_closing():
            raise ClientGone("the caller closed the connection")

    # -- answering --------------------------------------------------------------------

    async def _answer_pending(self) -> None:
        while self.pending and not self.transport.is_closing():
            request, keep_alive = self.pending.popleft()
            if len(self.pending) < MAX_PIPELINED // 2:
                self._resume("pipeline")
            try:
                reply = await self.server.handler(request)
            except ClientGone:
                return  # The connection is closing; there is no one to answer.
            except Exception:
                log.exception("the gateway failed on %s %r", request.method, request.path)
                reply = plain_error(500, "the gateway failed on this request")
            if self.transport.is_closing() or self._refused:
                _close_body(reply)
                return  # The caller left (or was refused) while the answer was computed.
            if not request.body.complete:
                request.body._discard()
            keep_alive = keep_alive and not self.server.closing
            try:
                await self._write(reply, keep_alive, head_only=request.method == "HEAD")
            except ClientGone:
                self.transport.abort()
                return
            except Exception:
                # The body failed half-way (its runner went away): the caller can only
                # learn that the answer is incomplete from the connection closing.
                log.warning("an answer to %s %r broke off", request.method, request.path)
                self.transport.abort()
                return
            if not keep_alive:
                self.pending.clear()
                self.transport.close()
                return
        if not self.transport.is_closing() and not self.in_message:
            self._arm("idle")

    async def _write(self, reply: Reply, keep_alive: bool, head_only: bool = False) -> None:
        """Write `reply`; a StreamBody is copied piece by piece as the caller reads."""
        streamed = not isinstance(reply.body, bytes)
        try:
            lines = [
                b"HTTP/1.1 %d %s\r\n" % (reply.status, REASONS.get(reply.status, b"Unknown")),
                b"Date: %s\r\n" % self.server.clock.date(),
                b"Content-Type: %s\r\n" % reply.content_type.encode("latin-1"),
            ]
            if not streamed:
                lines.append(b"Content-Length: %d\r\n" % len(reply.body))
            elif reply.length is not None:
                lines.append(b"Content-Length: %d\r\n" % reply.length)
            else:
                lines.append(b"Transfer-Encoding: chunked\r\n")
            for name, value in reply.headers.items():
                lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
            if not keep_alive:
                lines.append(b"Connection: close\r\n")
            lines.append(b"\r\n")
            if not streamed:
                if not head_only:
                    lines.append(reply.body)
                self.transport.write(b"".join(lines))
                return
            self.transport.write(b"".join(lines))
            if head_only:
                return
            self.responding = True
            chunked, sent = reply.length is None, 0
            while chunk := await reply.body.read():
                sent += len(chunk)
                if chunked:
                    self.transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    self.transport.write(chunk)
                await self._drain()
            if chunked:
                self.transport.write(b"0\r\n\r\n")
            elif sent != reply.length:
                raise ValueError(f"the body had {sent} bytes, not {reply.length}")
        finally:
            self.responding = False
            _close_body(reply)

    def _write_now(self, reply: Reply) -> None:
        """Write a whole (bytes) answer that closes the connection."""
        lines = [
            b"HTTP/1.1 %d %s\r\n" % (reply.status, REASONS.get(reply.status, b"Unknown")),
            b"Date: %s\r\n" % self.server.clock.date(),
            b"Content-Type: %s\r\n" % reply.content_type.encode("latin-1"),
            b"Content-Length: %d\r\n" % len(reply.body),
            b"Connection: close\r\n\r\n",
            reply.body,
        ]
        self.transport.write(b"".join(lines))

    def _refuse(self, reply: Reply) -> None:
        """Answer a request that cannot be read whole or parsed, then close: the rest of
        the stream can no longer be trusted to start at a request boundary."""
        self._refused = True
        self.pending.clear()
        if self._body is not None:
            self._body._fail(ClientGone(reply.body.decode(errors="replace")))
        if self.transport.is_closing():
            return
        if self.responding:
            # An answer is already being written on this connection: another cannot be
            # slipped into it, so the caller sees the connection close.
            self.transport.abort()
            return
        self._write_now(reply)
        self.transport.close()

    def _too_large(self) -> Reply:
        return plain_error(413, f"the request body is larger than {self.server.max_body} bytes")

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES and not self._refused:
            self._refuse(plain_error(431, f"the request head is larger than {MAX_HEAD_BYTES}"))

    # -- the timer --------------------------------------------------------------------

    def _arm(self, kind: str | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_kind = kind
        if kind is None:
            return
        delay = {
            "idle": KEEP_ALIVE_SECONDS,
            "head": self.server.head_timeout,
            "body": self.server.body_timeout,
        }[kind]
        self.progress = self.loop.time()
        self.timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        kind = self.timer_kind
        if kind == "idle":
            if not self.pending and not self.busy:
                self.transport.close()
            return
        if kind == "body":
            waited = self.loop.time() - self.progress
            if waited < self.server.body_timeout:
                # The body moved since the timer was set: wait out the rest from then.
                self.timer = self.loop.call_later(self.server.body_timeout - waited, self._on_timer)
                return
            message = f"the request body stalled for {self.server.body_timeout:g}s"
        else:
            message = f"the request head did not arrive within {self.server.head_timeout:g}s"
        self.timer_kind = None
        log.info("closing a connection: %s", message)
        self._refuse(plain_error(408, message))

    @property
    def busy(self) -> bool:
        return self.worker is not None and not self.worker.done()


class HttpServer:
    """Serves `handler` on host:port until close()."""

    def __init__(
        self,
        handler: Handler,
        max_body: int,
        head_timeout: float | None = None,
        body_timeout: float | None = None,
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.head_timeout = HEAD_TIMEOUT_SECONDS if head_timeout is None else head_timeout
        self.body_timeout = BODY_TIMEOUT_SECONDS if body_timeout is None else body_timeout
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
