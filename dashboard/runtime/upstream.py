"""The gateway → runner hop: a small HTTP/1.1 keep-alive client over a runner's Unix socket.

Why not aiohttp's ClientSession: on this hop its per-request machinery (request and
response objects, multidicts, URL building, connector bookkeeping, a stream reader) was
about half of the gateway's CPU per proxied request (measured on a 2-core machine: some
330 µs per request with it, some 200 µs with this), and the gateway's CPU is what limits
its throughput on a small machine shared with the runners. This hop only
ever talks to our own runner (an aiohttp server, dashboard/runtime/runner.py), so the client
needs little: write one request, read a status line, headers and a body.

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

# A runner's status line and headers are small; more than this is not a runner talking.
MAX_HEAD_BYTES = 64 * 1024
# Bodies above this size are written separately rather than copied onto the request head.
COALESCE_BELOW = 64 * 1024


class UpstreamError(Exception):
    """The runner could not be reached, or did not give a complete, well-formed answer."""


@dataclass(slots=True)
class Response:
    status: int
    content_type: str | None
    body: bytes


class _Connection(asyncio.Protocol):
    """One Unix-socket connection to a runner, parsing at most one response at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.counted = False  # Holds one of the pool's `limit` places.
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head_request = False
        # Of the response being read, once its head is parsed:
        self._status = 0
        self._content_type: str | None = None
        self._length: int | None = None  # Content-Length; None with chunked or read-to-close.
        self._chunked = False
        self._head_done = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection is out of step; never reuse it.
            self.abort()
            return
        self._buffer += data
        try:
            self._parse()
        except UpstreamError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # Let the transport close; connection_lost finishes the story.

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._head_done and self._length is None and not self._chunked:
            # A body without length or chunking ends where the connection does.
            self.reusable = False
            waiter.set_result(Response(self._status, self._content_type, bytes(self._buffer)))
            return
        reason = f": {exc}" if exc else ""
        waiter.set_exception(
            UpstreamError(f"the runner closed the connection before a full answer{reason}")
        )

    # -- one exchange ----------------------------------------------------------------

    async def exchange(self, head: bytes, body: bytes, head_request: bool) -> Response:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise UpstreamError("the connection to the runner is closed")
        self._buffer.clear()
        self._head_done, self._chunked, self._length = False, False, None
        self._status, self._content_type, self.reusable = 0, None, False
        self._head_request = head_request
        self._waiter = asyncio.get_running_loop().create_future()
        if len(body) < COALESCE_BELOW:
            self.transport.write(head + body)  # One write: one wake-up of the runner.
        else:
            self.transport.write(head)
            self.transport.write(body)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.abort()

    def _parse(self) -> None:
        buffer = self._buffer
        while not self._head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise UpstreamError("the runner's response head is too large")
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._parse_head(head)
        if self._chunked:
            body = self._dechunk()
            if body is None:
                return
        elif self._length is None:
            return  # Read to the close: connection_lost completes it.
        elif len(buffer) < self._length:
            return
        elif len(buffer) > self._length:
            raise UpstreamError("the runner sent more bytes than its Content-Length")
        else:
            body = bytes(buffer)
        buffer.clear()
        self._waiter.set_result(Response(self._status, self._content_type, body))

    def _parse_head(self, head: bytes) -> None:
        status_line, _, rest = head.partition(b"\r\n")
        version, _, tail = status_line.partition(b" ")
        try:
            status = int(tail[:3])
        except ValueError:
            raise UpstreamError(
                f"the runner sent a malformed status line {status_line!r}"
            ) from None
        if not version.startswith(b"HTTP/1.") or not 100 <= status <= 599:
            raise UpstreamError(f"the runner sent a malformed status line {status_line!r}")
        if 100 <= status < 200:
            return  # An interim answer (e.g. 100 Continue): the real one follows.
        # Only four headers matter here; finding them in the lower-cased head is far
        # cheaper than splitting every line (this runs once per proxied request).
        lower = rest.lower()
        length: int | None = None
        value = _header(rest, lower, b"content-length")
        if value is not None:
            try:
                length = int(value)
            except ValueError:
                raise UpstreamError(f"bad Content-Length {value!r}") from None
            if length < 0:
                raise UpstreamError(f"bad Content-Length {value!r}")
        encoding = _header(lower, lower, b"transfer-encoding")
        chunked = encoding is not None and encoding.endswith(b"chunked")
        keep_alive = version == b"HTTP/1.1"
        connection = _header(lower, lower, b"connection")
        if connection is not None:
            tokens = {t.strip() for t in connection.split(b",")}
            keep_alive = b"close" not in tokens and (keep_alive or b"keep-alive" in tokens)
        content_type = _header(rest, lower, b"content-type")
        if content_type is not None:
            content_type = content_type.decode("latin-1")
        if self._head_request or status in (204, 304):
            length, chunked = 0, False
        elif chunked:
            length = None
        self._status, self._content_type = status, content_type
        self._length, self._chunked = length, chunked
        # Without a length or chunking the body ends with the connection: not reusable.
        self.reusable = keep_alive and (chunked or length is not None)
        self._head_done = True

    def _dechunk(self) -> bytes | None:
        """The whole chunked body once it has arrived (trailers dropped), else None."""
        buffer, pos, parts = self._buffer, 0, []
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            try:
                size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
            except ValueError:
                raise UpstreamError("the runner sent a malformed chunk size") from None
            pos = line_end + 2
            if size == 0:
                trailers_end = buffer.find(b"\r\n", pos)
                while trailers_end > pos:  # Skip trailer lines up to the empty one.
                    pos = trailers_end + 2
                    trailers_end = buffer.find(b"\r\n", pos)
                if trailers_end < 0:
                    return None
                if trailers_end + 2 != len(buffer):
                    raise UpstreamError("the runner sent bytes after a chunked body")
                return b"".join(parts)
            if len(buffer) < pos + size + 2:
                return None
            parts.append(bytes(buffer[pos : pos + size]))
            pos += size + 2


def _header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower-case) in a response head that has no status line.

    `lower` is `head` lower-cased, for finding; the value is cut from `head`, keeping its case.
    """
    if lower.startswith(name + b":"):
        start = len(name) + 1
    else:
        start = lower.find(b"\r\n" + name + b":")
        if start < 0:
            return None
        start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class UpstreamPool:
    """Keep-alive connections to one runner's socket; at most `limit` open at once."""

    def __init__(self, socket_path: Path | str, limit: int) -> None:
        self.socket_path = str(socket_path)
        self.limit = max(1, limit)
        self.closed = False
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def request(
        self, method: str, target: str, headers: bytes = b"", body: bytes = b""
    ) -> Response:
        """Send one request and read its whole answer.

        `target` is the request target (path and query, already URL-encoded); `headers`
        are ready-made `Name: value\\r\\n` lines; Host and Content-Length are added here.
        """
        if self.closed:
            raise UpstreamError("the runner is not serving")
        head = b"".join(
            (
                method.encode("ascii"),
                b" ",
                target.encode("utf-8", "surrogateescape"),
                b" HTTP/1.1\r\nHost: runner\r\n",
                headers,
                b"Content-Length: %d\r\n\r\n" % len(body)
                if body or method not in ("GET", "HEAD")
                else b"\r\n",
            )
        )
        conn = await self._take()
        ok = False
        try:
            response = await conn.exchange(head, body, method == "HEAD")
            ok = conn.reusable
            return response
        finally:
            # Cancelled (a timeout) or failed mid-exchange: the connection's state is
            # unknown, so it is dropped rather than handed to the next request.
            self._give_back(conn, ok)

    async def _take(self) -> _Connection:
        """An idle connection, else a new one, else (at the limit) wait for either."""
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
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
            _, conn = await asyncio.get_running_loop().create_unix_connection(
                lambda: _Connection(self), self.socket_path
            )
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        conn.counted = True
        return conn

    def _give_back(self, conn: _Connection, reusable: bool) -> None:
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
