"""The gateway → runner hop: a small HTTP/1.1 keep-alive client over a runner's Unix socket.

Why not aiohttp's ClientSession: on this hop its per-request machinery (request and
response objects, multidicts, URL building, connector bookkeeping, a stream reader) was
much of the gateway's CPU per proxied request (BENCHMARKS.md), and the gateway's CPU is
what limits its throughput on a small machine shared with the runners. This hop only
ever talks to our own runner (an aiohttp server, dashboard/runtime/runner.py), so the
client needs little: write one request and read the answer, which httptools parses
(framing, chunked bodies, keep-alive).

Bodies stream both ways: `open()` sends a body that may arrive in pieces (Content-Length
or chunked, never trailers), waiting while the runner does not read, and returns the
answer once its head is in; its body is read piece by piece, and reading from the runner
pauses while more than HIGH_WATER bytes wait, so the gateway never holds a large answer.

One UpstreamPool per runner keeps its idle connections for reuse. It never holds more than
`limit` connections (the runner's max_multiplexing; the supervisor already hands out no
more slots than that, so the limit is a second line, not the queue). A connection carries
one request at a time (no pipelining) and is reused only after a complete response that
did not say `Connection: close`; anything unexpected closes it. Every failure to reach the
runner or to read its full answer is an UpstreamError or an OSError, which the gateway
answers 502.

Responses are framed as RFC 9112 section 6.3 says: no body for HEAD, 1xx, 204 and 304;
else Transfer-Encoding: chunked, else Content-Length, else the body runs to the close.
The runner always sends Content-Length; the other cases keep an unusual answer from being
misread as the next request's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httptools

# A runner's status line and headers are small; more than this is not a runner talking.
MAX_HEAD_BYTES = 64 * 1024
# RFC 9110 §9.2.2: methods a client may repeat when it cannot tell whether a request was
# acted on.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Bodies above this size are written separately rather than copied onto the request head.
COALESCE_BELOW = 64 * 1024
# Answer bytes held for a reader that is not taking them: above HIGH_WATER reading from
# the runner pauses, below LOW_WATER it resumes, so a large answer never sits whole here.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """The runner could not be reached, or did not give a complete, well-formed answer."""


@dataclass(slots=True)
class Response:
    status: int
    content_type: str | None
    body: bytes


class BodySource(Protocol):
    async def read(self) -> bytes: ...  # The next piece; b"" at the end.


class Answer:
    """A runner's answer whose body is read piece by piece (`read()`, b"" at its end).

    release() gives the connection back: for reuse when the body was read to its end,
    else it is closed. The pool's place stays taken until then.
    """

    __slots__ = ("status", "content_type", "length", "_conn", "_pool", "_released")

    def __init__(self, conn: _Connection, pool: UpstreamPool) -> None:
        self.status = conn._status
        self.content_type = conn._content_type
        self.length = conn._length  # None: chunked or to the close.
        self._conn, self._pool, self._released = conn, pool, False

    @property
    def complete(self) -> bool:
        """The whole body has arrived (it may still be unread)."""
        return self._conn._done

    async def read(self) -> bytes:
        return await self._conn.read_body()

    async def read_all(self) -> bytes:
        parts = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        conn = self._conn
        self._pool._give_back(conn, conn.reusable and conn._done and not conn._chunks)


class _Connection(asyncio.Protocol):
    """One Unix-socket connection to a runner, parsing at most one response at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.counted = False  # Holds one of the pool's `limit` places.
        self.reused = False  # Taken from the idle connections, not newly opened.
        self.exchanging = False
        self._parser: httptools.HttpResponseParser | None = None
        self._head_bytes = 0  # Bytes received before the answer's head was complete.
        self._head: asyncio.Future[None] | None = None
        self._head_request = False
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        # Of the response being read, once its head is parsed:
        self._status = 0
        self._content_type: str | None = None
        self._length: int | None = None  # Content-Length; None with chunked or read-to-close.
        self._chunked = False
        self._head_done = False
        self._interim = False  # The head parsed is a 1xx: the real answer follows.
        self._complete = False  # The parser has seen the whole answer.
        # Of its body:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: Exception | None = None
        self._body_waiter: asyncio.Future[None] | None = None

    @property
    def nothing_received(self) -> bool:
        """No byte of an answer to the current request has arrived."""
        return self._head_bytes == 0 and not self._head_done

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.exchanging or self._done:
            # Bytes nobody asked for: the connection is out of step; never reuse it.
            self.abort()
            return
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
            if not self._head_done and self._head_bytes > MAX_HEAD_BYTES:
                raise UpstreamError("the runner's response head is too large")
        except UpstreamError as exc:
            self._fail(exc)
            return
        except httptools.HttpParserError as exc:
            # A callback's own UpstreamError comes back as the parser error's context.
            cause = exc.__context__
            self._fail(
                cause
                if isinstance(cause, UpstreamError)
                else UpstreamError(f"the runner sent a malformed answer: {exc}")
            )
            return
        if self._complete and not self._done:
            # Only once all of `data` parsed: bytes after the answer are an error, not
            # an answer followed by garbage.
            self._finish()

    def eof_received(self) -> bool:
        return False  # Let the transport close; connection_lost finishes the story.

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if not self.exchanging or self._done:
            return
        if self._head_done and self._length is None and not self._chunked:
            # A body without length or chunking ends where the connection does.
            self.reusable = False
            self._finish()
            return
        reason = f": {exc}" if exc else ""
        self._fail(UpstreamError(f"the runner closed the connection before a full answer{reason}"))

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- one exchange ----------------------------------------------------------------

    async def exchange(
        self, head: bytes, body: bytes | BodySource, head_request: bool, chunked: bool = False
    ) -> None:
        """Send a request and wait for its answer's head; the body is read with read_body()."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise UpstreamError("the connection to the runner is closed")
        self._parser = httptools.HttpResponseParser(self)
        self._head_bytes = 0
        self._head_done, self._chunked, self._length = False, False, None
        self._status, self._content_type, self.reusable = 0, None, False
        self._interim = self._complete = False
        self._chunks.clear()
        self._size = 0
        self._done, self._error = False, None
        self._head_request = head_request
        self._head = self.loop.create_future()
        self.exchanging = True
        if isinstance(body, bytes):
            if len(body) < COALESCE_BELOW:
                self.transport.write(head + body)  # One write: one wake-up of the runner.
            else:
                self.transport.write(head)
                self.transport.write(body)
        else:
            await self._send_stream(head, body, chunked)
        await self._head

    async def _send_stream(self, head: bytes, body: BodySource, chunked: bool) -> None:
        """Copy a body that arrives in pieces, waiting while the runner does not read."""
        self.transport.write(head)
        while chunk := await body.read():
            if self._head.done():
                # The runner answered before reading the whole body (an error): the
                # rest is not sent, and the connection cannot be reused.
                self.reusable = False
                return
            if chunked:
                self.transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                self.transport.write(chunk)
            if self._writable is not None and not self._writable.done():
                await self._writable
            if self.closed:
                return  # connection_lost has failed (or finished) the answer.
        if chunked:
            self.transport.write(b"0\r\n\r\n")

    async def read_body(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._body_waiter = self.loop.create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size < LOW_WATER and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        elif not self._done:
            self._error = exc
            self._wake()
        self.abort()

    def _wake(self) -> None:
        if self._body_waiter is not None and not self._body_waiter.done():
            self._body_waiter.set_result(None)

    def _deliver(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._size += len(data)
            self._wake()
            if self._size > HIGH_WATER and not self._paused and not self.closed:
                self._paused = True
                self.transport.pause_reading()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    # -- httptools' callbacks, while feed_data() parses ---------------------------------

    def on_message_begin(self) -> None:
        if self._complete or self._head_done:
            raise UpstreamError("the runner sent more bytes than its answer")
        self._content_type, self._length, self._chunked = None, None, False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # A chunked body's trailers: dropped.
        name = name.lower()
        if name == b"content-type":
            self._content_type = value.decode("latin-1")
        elif name == b"content-length":
            self._length = int(value)  # The parser has checked it is digits.
        elif name == b"transfer-encoding":
            self._chunked = value.lower().rstrip().endswith(b"chunked")

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if not parser.get_http_version().startswith("1.") or not 100 <= status <= 599:
            raise UpstreamError(f"the runner sent a malformed status {status}")
        if status < 200:
            self._interim = True  # E.g. 100 Continue: the real answer follows.
            return
        if self._chunked:
            self._length = None
        # The parser knows 204 and 304 have no body, not that this answered a HEAD.
        if self._head_request or status in (204, 304):
            self._length, self._chunked, self._complete = 0, False, True
        self._status = status
        # Without a length or chunking the body ends with the connection: not reusable.
        self.reusable = parser.should_keep_alive() and (self._chunked or self._length is not None)
        self._head_done = True
        self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._complete:
            raise UpstreamError("the runner sent more bytes than its answer")
        self._deliver(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True


class UpstreamPool:
    """Keep-alive connections to one runner's socket; at most `limit` open at once."""

    def __init__(
        self, socket_path: Path | str | tuple[str, int], limit: int, prefix: str = ""
    ) -> None:
        # A unix socket's path, or (host, port) of a TCP one (the Ray backend's Serve
        # proxy, where `prefix` is put before each target: the revision's route).
        self.socket_path = socket_path if isinstance(socket_path, tuple) else str(socket_path)
        self.prefix = prefix.encode()
        self.limit = max(1, limit)
        self.closed = False
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def resize(self, limit: int) -> None:
        """A new limit (the runner's slots followed a change of settings): requests waiting
        for a connection take the room a higher one makes; a lower one closes no connection
        in use, it only opens none until fewer are open."""
        self.limit = max(1, limit)
        for _ in range(self.limit - self._open):
            self._wake_one()

    async def request(
        self, method: str, target: str, headers: bytes = b"", body: bytes = b""
    ) -> Response:
        """Send one request and read its whole answer (for small answers: health checks)."""
        answer = await self.open(method, target, headers, body)
        try:
            return Response(answer.status, answer.content_type, await answer.read_all())
        finally:
            answer.release()

    async def open(
        self,
        method: str,
        target: str,
        headers: bytes = b"",
        body: bytes | BodySource = b"",
        length: int | None = None,
    ) -> Answer:
        """Send one request and wait for its answer's head; the caller reads its body and
        must release() it.

        `target` is the request target (path and query, already URL-encoded); `headers`
        are ready-made `Name: value\\r\\n` lines; Host and the body's framing are added
        here. A `body` that arrives in pieces is sent with `length` as its Content-Length,
        or chunked when `length` is None.
        """
        if self.closed:
            raise UpstreamError("the runner is not serving")
        if isinstance(body, bytes):
            framing = (
                b"Content-Length: %d\r\n\r\n" % len(body)
                if body or method not in ("GET", "HEAD")
                else b"\r\n"
            )
        elif length is None:
            framing = b"Transfer-Encoding: chunked\r\n\r\n"
        else:
            framing = b"Content-Length: %d\r\n\r\n" % length
        head = b"".join(
            (
                method.encode("ascii"),
                b" ",
                self.prefix,
                target.encode("utf-8", "surrogateescape"),
                b" HTTP/1.1\r\nHost: runner\r\n",
                headers,
                framing,
            )
        )
        chunked = not isinstance(body, bytes) and length is None
        while True:
            conn = await self._take()
            try:
                await conn.exchange(head, body, method == "HEAD", chunked)
            except UpstreamError:
                self._give_back(conn, False)
                # A kept connection the runner closed just as this request went out (its
                # idle close raced our reuse): nothing was answered, so a request that is
                # safe to repeat is sent again; the next connection is another kept one
                # or a new one, whose failure is final. Others may have been acted on.
                if not (
                    conn.reused
                    and conn.nothing_received
                    and isinstance(body, bytes)
                    and method in IDEMPOTENT_METHODS
                ):
                    raise
            except BaseException:
                # Cancelled (a timeout) or failed mid-exchange: the connection's state is
                # unknown, so it is dropped rather than handed to the next request.
                self._give_back(conn, False)
                raise
            else:
                return Answer(conn, self)

    async def _take(self) -> _Connection:
        """An idle connection, else a new one, else (at the limit) wait for either."""
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    conn.reused = True
                    return conn
            if self._open < self.limit:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # Woken just as it gave up: pass the turn on.
                else:
                    self._waiting.remove(waiter)
                raise
            if self.closed:
                raise UpstreamError("the runner is not serving")
        self._open += 1
        try:
            loop = asyncio.get_running_loop()
            if isinstance(self.socket_path, tuple):
                _, conn = await loop.create_connection(lambda: _Connection(self), *self.socket_path)
            else:
                _, conn = await loop.create_unix_connection(
                    lambda: _Connection(self), self.socket_path
                )
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        conn.counted = True
        return conn

    def _give_back(self, conn: _Connection, reusable: bool) -> None:
        conn.exchanging = False
        if reusable and not conn.closed and not self.closed:
            self._idle.append(conn)
            self._wake_one()
        else:
            conn.abort()  # connection_lost → _forget frees its place.

    def _forget(self, conn: _Connection) -> None:
        """A connection ended (either side closed it): it no longer counts."""
        if conn in self._idle:
            self._idle.remove(conn)
        if conn.counted:  # Not when its connect was cancelled: that place was given back.
            conn.counted = False
            self._open -= 1
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close idle connections now and refuse new requests; in-flight ones end by themselves."""
        self.closed = True
        for conn in self._idle:
            conn.abort()
        self._idle.clear()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
