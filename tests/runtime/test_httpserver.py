"""The gateway's HTTP/1.1 server (httpserver.py) on a real TCP port, spoken to byte for byte.

A small handler echoes what it was given, so each test sees exactly what the server parsed
and exactly what it wrote back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from dashboard.runtime import httpserver
from dashboard.runtime.httpserver import HttpServer, Reply, Request
from tests.conftest import eventually, free_port

# /slow tells `started` it began and answers once `proceed` is set (each test that uses it
# makes both inside its own event loop).
SLOW: dict[str, asyncio.Event] = {}


async def echo(request: Request) -> Reply:
    if request.path == b"/slow":
        SLOW["started"].set()
        await SLOW["proceed"].wait()
    if request.path == b"/boom":
        raise RuntimeError("handler bug")
    seen = {
        "method": request.method,
        "path": request.path.decode(),
        "query": request.query.decode(),
        "trace": (request.header(b"x-trace") or b"").decode(),
        "body": (await request.read()).decode(),
    }
    return Reply(200, json.dumps(seen).encode(), headers={"X-Handled": "yes"})


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    length = int(headers.get("content-length", 0))
    return int(status_line.split()[1]), headers, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def connected(max_body: int = 1024):
    """A server on a free port and one client connection to it: (server, port, r, w)."""
    server = HttpServer(echo, max_body=max_body)
    port = free_port()
    await server.start("127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield server, port, reader, writer
    finally:
        writer.close()
        await server.close()


async def _closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the server closed the connection: one more request gets no answer."""
    try:
        writer.write(b"GET /probe HTTP/1.1\r\nHost: gw\r\n\r\n")
        await writer.drain()
        status, _, body = await read_answer(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        return True
    assert status == 200 and json.loads(body)["path"] == "/probe"
    return False


def talk(*chunks: bytes, answers: int = 1, max_body: int = 1024):
    """Send `chunks` on one connection; read `answers` answers, then whether it closed."""

    async def main():
        SLOW.update(started=asyncio.Event(), proceed=asyncio.Event())
        async with connected(max_body) as (_server, _port, reader, writer):
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            if any(b"GET /slow " in chunk for chunk in chunks):
                # /slow answers only once everything was sent: what follows it waits.
                await SLOW["started"].wait()
                SLOW["proceed"].set()
            got = [await read_answer(reader) for _ in range(answers)]
            closed = await _closed(reader, writer)
        return got, closed

    return asyncio.run(main())


def body_of(answer) -> dict:
    return json.loads(answer[2])


def test_it_parses_method_path_query_headers_and_body():
    [answer], closed = talk(
        b"POST /app/a%20b?x=1&y=%C3%A9 HTTP/1.1\r\nHost: gw\r\nX-Trace: t-1\r\n"
        b'Content-Length: 7\r\n\r\n{"n":1}'
    )
    status, headers, _ = answer
    assert status == 200 and not closed
    assert headers["content-type"] == "application/json"
    assert headers["x-handled"] == "yes" and "date" in headers
    assert body_of(answer) == {
        "method": "POST",
        "path": "/app/a%20b",
        "query": "x=1&y=%C3%A9",
        "trace": "t-1",
        "body": '{"n":1}',
    }


def test_keep_alive_and_pipelined_requests_are_answered_in_order_on_one_connection():
    answers, closed = talk(
        b"GET /slow HTTP/1.1\r\nHost: gw\r\n\r\nGET /second HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /third HTTP/1.1\r\nHost: gw\r\n\r\n",
        answers=3,
    )
    assert [body_of(a)["path"] for a in answers] == ["/slow", "/second", "/third"]
    assert not closed


def test_connection_close_and_http_1_0_close_after_the_answer():
    [answer], closed = talk(b"GET /a HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    assert answer[1]["connection"] == "close" and closed
    [answer], closed = talk(b"GET /a HTTP/1.0\r\n\r\n")
    assert answer[0] == 200 and closed


def test_a_chunked_body_arrives_whole():
    [answer], _ = talk(
        b"PUT /c HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert body_of(answer)["body"] == "abcde"


def test_expect_100_continue_is_answered_before_the_body_is_sent():
    async def main():
        async with connected() as (_server, _port, reader, writer):
            writer.write(
                b"POST /e HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            writer.write(b"ok")
            return interim, await read_answer(reader)

    interim, answer = asyncio.run(main())
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert body_of(answer)["body"] == "ok"


def test_a_head_request_gets_the_headers_and_no_body():
    async def main():
        async with connected() as (_server, _port, reader, writer):
            writer.write(
                b"HEAD /h HTTP/1.1\r\nHost: gw\r\n\r\nGET /after HTTP/1.1\r\nHost: gw\r\n\r\n"
            )
            head = await reader.readuntil(b"\r\n\r\n")
            # The next answer starts right after the head: no body between them.
            return head, await read_answer(reader)

    head, after = asyncio.run(main())
    assert b"Content-Length: " in head
    assert body_of(after)["path"] == "/after"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /big HTTP/1.1\r\nHost: gw\r\nContent-Length: 2048\r\n\r\n",
        b"POST /big HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n"
        + b"x" * 1024
        + b"\r\n"
        + b"400\r\n"
        + b"x" * 1024
        + b"\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_a_body_over_the_limit_is_413_and_the_connection_closes(request_bytes):
    [answer], closed = talk(request_bytes, max_body=1024)
    assert answer[0] == 413 and closed
    assert "larger than 1024 bytes" in body_of(answer)["error"]["message"]


def test_an_oversized_head_is_431(monkeypatch):
    monkeypatch.setattr(httpserver, "MAX_HEAD_BYTES", 100)
    [answer], closed = talk(b"GET /a HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"y" * 200 + b"\r\n\r\n")
    assert answer[0] == 431 and closed


def test_garbage_is_a_400_and_the_connection_closes():
    [answer], closed = talk(b"NOT HTTP AT ALL\r\n\r\n")
    assert answer[0] == 400 and closed
    assert "malformed HTTP request" in body_of(answer)["error"]["message"]


def test_a_failing_handler_is_a_500_and_the_connection_stays_usable():
    answers, closed = talk(
        b"GET /boom HTTP/1.1\r\nHost: gw\r\n\r\nGET /fine HTTP/1.1\r\nHost: gw\r\n\r\n",
        answers=2,
    )
    assert answers[0][0] == 500 and body_of(answers[1])["path"] == "/fine"
    assert not closed


def test_closing_lets_an_answer_in_progress_finish_then_closes_its_connection():
    async def main():
        SLOW.update(started=asyncio.Event(), proceed=asyncio.Event())
        async with connected() as (server, port, reader, writer):
            writer.write(b"GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n")
            await writer.drain()
            await SLOW["started"].wait()  # The answer is in progress...
            closing = asyncio.ensure_future(server.close(grace=30))
            await eventually(lambda: server.closing, what="the server to start closing")
            SLOW["proceed"].set()  # ...and finishes while the server closes.
            answer = await read_answer(reader)
            eof = await reader.read(1)
            await closing
        refused = False
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            refused = True
        return answer, eof, refused

    answer, eof, refused = asyncio.run(main())
    assert answer[0] == 200 and answer[1]["connection"] == "close"
    assert eof == b"" and refused


def test_an_idle_connection_and_a_stalled_request_are_closed_after_their_timeouts(
    monkeypatch,
):
    monkeypatch.setattr(httpserver, "KEEP_ALIVE_SECONDS", 0.2)
    monkeypatch.setattr(httpserver, "HEAD_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(httpserver, "BODY_TIMEOUT_SECONDS", 0.2)

    async def main():
        async with connected() as (_server, _port, reader, writer):
            writer.write(b"GET /a HTTP/1.1\r\nHost: gw\r\n\r\n")
            await read_answer(reader)
            idle = await asyncio.wait_for(reader.read(1), 2)
        async with connected() as (_server, _port, reader, writer):
            writer.write(b"GET /half-a-request HTTP/1.1\r\nHo")
            stalled_head = await asyncio.wait_for(read_answer(reader), 2)
            head_eof = await asyncio.wait_for(reader.read(1), 2)
        async with connected() as (_server, _port, reader, writer):
            writer.write(b"POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\nabc")
            stalled_body = await asyncio.wait_for(read_answer(reader), 2)
            body_eof = await asyncio.wait_for(reader.read(1), 2)
        return idle, stalled_head, head_eof, stalled_body, body_eof

    idle, stalled_head, head_eof, stalled_body, body_eof = asyncio.run(main())
    assert idle == head_eof == body_eof == b""
    assert stalled_head[0] == 408 and "did not arrive" in body_of(stalled_head)["error"]["message"]
    assert stalled_body[0] == 408 and "stalled" in body_of(stalled_body)["error"]["message"]


def test_chunked_trailers_are_not_taken_as_headers():
    [answer], _ = talk(
        b"POST /t HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-Trace: from-the-trailer\r\n\r\n"
    )
    assert body_of(answer)["body"] == "ok" and body_of(answer)["trace"] == ""


class Countdown:
    """A streamed answer body of `pieces` pieces of 64 KiB; records that it was closed."""

    closed: list[bool] = []

    def __init__(self, pieces: int) -> None:
        self.left = pieces

    async def read(self) -> bytes:
        if not self.left:
            return b""
        self.left -= 1
        return b"z" * 65536

    def close(self) -> None:
        Countdown.closed.append(True)


@pytest.mark.parametrize("length", [None, 4 * 65536], ids=["chunked", "content-length"])
def test_a_streamed_answer_is_written_piece_by_piece_and_closed(length):
    async def handler(request: Request) -> Reply:
        return Reply(200, Countdown(4), "application/octet-stream", length=length)

    async def main():
        server = HttpServer(handler, max_body=1024)
        port = free_port()
        await server.start("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /s HTTP/1.1\r\nHost: gw\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        if length is None:
            body = b""
            while (size := int((await reader.readuntil(b"\r\n"))[:-2], 16)) != 0:
                body += await reader.readexactly(size)
                await reader.readexactly(2)
        else:
            body = await reader.readexactly(length)
        writer.close()
        await server.close()
        return head, body

    Countdown.closed.clear()
    head, body = asyncio.run(main())
    assert body == b"z" * 4 * 65536 and Countdown.closed == [True]
    assert (b"Transfer-Encoding: chunked" in head) == (length is None)


def test_a_large_body_reaches_the_handler_in_pieces_while_it_arrives():
    """The handler starts with the head and reads the body as it comes: the server never
    holds it whole."""
    pieces: list[int] = []

    async def handler(request: Request) -> Reply:
        while chunk := await request.body.read():
            pieces.append(len(chunk))
        return Reply(200, b"{}")

    async def main():
        server = HttpServer(handler, max_body=64 * 1024 * 1024)
        port = free_port()
        await server.start("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        size = 16 * 1024 * 1024
        writer.write(b"POST /up HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"u" * 65536)
            await writer.drain()
        answer = await read_answer(reader)
        writer.close()
        await server.close()
        return answer, size

    answer, size = asyncio.run(main())
    assert answer[0] == 200 and sum(pieces) == size
    assert max(pieces) <= httpserver.HIGH_WATER * 2 and len(pieces) > 1
