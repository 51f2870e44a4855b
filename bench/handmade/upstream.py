"""dashboard/runtime/upstream.py as it was, with its own HTTP/1.1 response parser and
chunked decoder; kept only for bench/run.py --only speedups."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# A runner's status line and headers are small; more than this is not a runner talking.
MAX_HEAD_BYTES = 64 * 1024
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
        self.exchanging = False
        self._buffer = bytearray()
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
        # Of its body:
        self._left = 0  # Bytes still to come (Content-Length) or of the current chunk.
        self._chunk_state = "size"  # "size", "data", "crlf", "trailers"
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: Exception | None = None
        self._body_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.exchanging or self._done:
            # Bytes nobody asked for: the connection is out of step; never reuse it.
            self.abort()
            return
        try:
            if self._head_done and not self._chunked and not self._buffer:
                self._take_body(data)  # The common case: no copy through the buffer.
            else:
                self._buffer += data
                self._parse()
        except UpstreamError as exc:
            self._fail(exc)

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
        self._buffer.clear()
        self._head_done, self._chunked, self._length = False, False, None
        self._status, self._content_type, self.reusable = 0, None, False
        self._chunks.clear()
        self._size, self._left, self._chunk_state = 0, 0, "size"
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

    def _take_body(self, data: bytes) -> None:
        """Body bytes of a Content-Length or read-to-close answer."""
        if self._length is None:
            self._deliver(data)
            return
        if len(data) > self._left:
            raise UpstreamError("the runner sent more bytes than its Content-Length")
        self._left -= len(data)
        self._deliver(data)
        if self._left == 0:
            self._finish()

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
            self._dechunk()
        elif buffer:
            data = bytes(buffer)
            buffer.clear()
            self._take_body(data)

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
        self._left = length or 0
        if length == 0:
            self._finish()
        self._head.set_result(None)

    def _dechunk(self) -> None:
        """Deliver what has arrived of a chunked body (trailers dropped)."""
        buffer = self._buffer
        while buffer:
            state = self._chunk_state
            if state == "data":
                take = min(self._left, len(buffer))
                self._deliver(bytes(buffer[:take]))
                del buffer[:take]
                self._left -= take
                if self._left == 0:
                    self._chunk_state = "crlf"
                continue
            if self._done:
                raise UpstreamError("the runner sent bytes after a chunked body")
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise UpstreamError("the runner sent an overlong chunk line")
                return
            line = bytes(buffer[:line_end])
            del buffer[: line_end + 2]
            if state == "crlf":
                if line:
                    raise UpstreamError("the runner sent a malformed chunk")
                self._chunk_state = "size"
            elif state == "size":
                try:
                    size = int(line.split(b";")[0], 16)
                except ValueError:
                    raise UpstreamError("the runner sent a malformed chunk size") from None
                if size < 0:
                    raise UpstreamError("the runner sent a malformed chunk size")
                self._left = size
                self._chunk_state = "data" if size else "trailers"
            elif not line:  # "trailers": skipped up to the empty line that ends them.
                self._finish()


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
        conn = await self._take()
        try:
            chunked = not isinstance(body, bytes) and length is None
            await conn.exchange(head, body, method == "HEAD", chunked)
        except BaseException:
            # Cancelled (a timeout) or failed mid-exchange: the connection's state is
            # unknown, so it is dropped rather than handed to the next request.
            self._give_back(conn, False)
            raise
        return Answer(conn, self)

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
