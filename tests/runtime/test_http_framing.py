"""HTTP/1.1 framing split at every byte: the gateway's server (httpserver.py) and the
gateway → runner client (upstream.py) parse a message the same however it arrives.

Each message is sent over a real socket (TCP on 127.0.0.1 to the server, a Unix socket
from a raw runner to the client), cut at every byte boundary into two writes, and into
several pieces at boundaries hypothesis chooses; each write is flushed on its own
(TCP_NODELAY, drain), so the peer mostly reads them apart (the kernel may still join two;
the comparison holds either way). What the handler parsed, or the answer the client read,
must be the same as for the message in one piece. Malformed messages get the same precise
answer wherever they are cut: a 400 or 413 from the server, which then closes, and an
UpstreamError from the client, which drops the connection. No bytes at all make the
server answer a 5xx. The tests go through the public behaviour only (a real server, a real
pool), so they hold whatever parser is underneath.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.runtime.httpserver import HttpServer, Reply, Request
from dashboard.runtime.upstream import UpstreamError, UpstreamPool
from tests.conftest import free_port

# -- the server: requests -------------------------------------------------------------

CONTENT_LENGTH_REQUEST = (
    b"POST /echo/a%20b?x=1&y=2 HTTP/1.1\r\n"
    b"Host: gateway\r\n"
    b"X-Trace: t-1\r\n"
    b"Content-Length: 11\r\n"
    b"\r\n"
    b"hello world"
)
CHUNKED_REQUEST = (
    b"POST /chunks HTTP/1.1\r\n"
    b"Host: gateway\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"X-Trace: t-2\r\n"
    b"\r\n"
    b"5;ext=1\r\nhello\r\n"
    b'6;name="quoted value"\r\n world\r\n'
    b"0\r\n"
    b"X-Trailer: not-a-header\r\n"
    b"\r\n"
)
# After each request a second one on the same connection: the first's framing must end
# exactly where its body ends, or the second is misread.
NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: gateway\r\n\r\n"

MALFORMED_REQUESTS = [
    # (bytes, status, words of the message)
    (
        b"POST / HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
        "malformed HTTP request",
    ),
    (b"GET / HTTP/1.1\r\nHost: g\r\nBad Header\r\n\r\n", 400, "malformed HTTP request"),
    (
        b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 12x\r\n\r\nhello",
        400,
        "malformed HTTP request",
    ),
    (
        b"POST / HTTP/1.1\r\nHost: g\r\nContent-Length: 2048\r\n\r\n" + b"x" * 2048,
        413,
        "the request body is larger than 1024 bytes",
    ),
    (
        b"POST / HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"400\r\n" + b"x" * 1024 + b"\r\n1\r\nx\r\n0\r\n\r\n",
        413,
        "the request body is larger than 1024 bytes",
    ),
]


async def echo(request: Request) -> Reply:
    """What the server parsed, byte for byte (latin-1 keeps any byte as one character)."""
    seen = {
        "method": request.method,
        "path": request.path.decode("latin-1"),
        "query": request.query.decode("latin-1"),
        "headers": [[k.decode("latin-1").lower(), v.decode("latin-1")] for k, v in request.headers],
        "body": (await request.read()).decode("latin-1"),
    }
    return Reply(200, json.dumps(seen).encode())


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    return (
        int(status_line.split()[1]),
        headers,
        await reader.readexactly(int(headers.get("content-length", 0))),
    )


def every_byte(data: bytes, step: int = 1) -> list[list[int]]:
    """The message whole, then cut in two at every `step`th byte."""
    return [[], *([i] for i in range(1, len(data), step))]


def cut(data: bytes, at: list[int]) -> list[bytes]:
    """`data` in pieces, cut at the (sorted, distinct, inner) offsets `at`."""
    edges = [0, *sorted(set(at)), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


async def _send(writer: asyncio.StreamWriter, pieces: list[bytes]) -> None:
    for piece in pieces:
        writer.write(piece)
        await writer.drain()


async def _server_answers(server_port: int, pieces: list[bytes], answers: int) -> list:
    reader, writer = await asyncio.open_connection("127.0.0.1", server_port)
    try:
        await _send(writer, pieces)
        got = []
        for _ in range(answers):
            status, headers, body = await _read_answer(reader)
            got.append((status, headers.get("connection"), body))
        closed = (await reader.read()) == b"" if got[-1][1] == "close" else None
        return [got, closed]
    finally:
        writer.close()


def through_server(splits: list[list[int]], message: bytes, answers: int) -> list:
    """For each way of cutting `message`: the answers the server gave, in order."""

    async def main():
        server = HttpServer(echo, max_body=1024)
        port = free_port()
        await server.start("127.0.0.1", port)
        try:
            return [await _server_answers(port, cut(message, at), answers) for at in splits]
        finally:
            await server.close()

    return asyncio.run(main())


@pytest.mark.parametrize(
    "message", [CONTENT_LENGTH_REQUEST, CHUNKED_REQUEST], ids=["content-length", "chunked"]
)
def test_a_request_split_at_any_byte_is_parsed_the_same(message):
    stream = message + NEXT_REQUEST
    whole, *split = through_server(every_byte(stream), stream, answers=2)
    (first, second), _ = whole
    parsed = json.loads(first[2])
    assert first[0] == 200 and json.loads(second[2])["path"] == "/next"
    assert parsed["body"] == "hello world"
    assert any(header in parsed["headers"] for header in (["x-trace", "t-1"], ["x-trace", "t-2"]))
    # The trailer is not taken as a header.
    assert all(name != "x-trailer" for name, _ in parsed["headers"])
    for i, answer in enumerate(split, start=1):
        assert answer == whole, f"cut at byte {i}: {stream[:i]!r} | {stream[i:]!r}"


@pytest.mark.parametrize(("message", "status", "words"), MALFORMED_REQUESTS)
def test_a_malformed_request_gets_its_precise_answer_and_a_close_wherever_it_is_cut(
    message, status, words
):
    answers = through_server(every_byte(message, 7), message, 1)
    for got, closed in answers:
        (answer_status, connection, body) = got[0]
        assert answer_status == status
        assert words in json.loads(body)["error"]["message"]
        assert connection == "close" and closed


# -- the client: runners' answers -------------------------------------------------------

CONTENT_LENGTH_ANSWER = (
    b"HTTP/1.1 201 Created\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 17\r\n"
    b"\r\n"
    b'{"hello":"world"}'
)
CHUNKED_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b"5;ext=1\r\nhello\r\n"
    b'6;name="quoted value"\r\n world\r\n'
    b"0\r\n"
    b"X-Trailer: yes\r\n"
    b"\r\n"
)
MALFORMED_ANSWERS = [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nshort",  # then the runner closes
    b"NOT-HTTP garbage\r\n\r\n",
]
CLOSES_AFTER = {MALFORMED_ANSWERS[1]}


def through_client(splits: list[list[int]], answer: bytes, close: bool = False) -> list:
    """For each way of cutting `answer`, sent by a raw runner to the pool: (status,
    content type, body) it read, or the UpstreamError it raised; then the same for a
    second request on the pool, which must never be misread. `close`: the runner closes
    the connection after sending `answer`."""

    async def main():
        path = str(Path(tempfile.mkdtemp(prefix="sbfr-")) / "s.sock")
        # What the runner sends for each request it reads: (pieces, then close?).
        plan: list[tuple[list[bytes], bool]] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    pieces, close = plan.pop(0)
                    await _send(writer, pieces)
                    if close:
                        break
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_unix_server(handle, path)
        pool = UpstreamPool(path, limit=1)
        results = []
        try:
            for at in splits:
                plan[:] = [(cut(answer, at), close), ([CONTENT_LENGTH_ANSWER], False)]
                outcome = []
                for _ in range(2):
                    try:
                        got = await pool.request("GET", "/")
                        outcome.append((got.status, got.content_type, got.body))
                    except UpstreamError as exc:
                        outcome.append(("UpstreamError", type(exc).__name__))
                results.append(outcome)
        finally:
            pool.close()
            server.close()
        return results

    return asyncio.run(main())


@pytest.mark.parametrize(
    "answer", [CONTENT_LENGTH_ANSWER, CHUNKED_ANSWER], ids=["content-length", "chunked"]
)
def test_an_answer_split_at_any_byte_is_read_the_same(answer):
    whole, *split = through_client(every_byte(answer), answer)
    first, second = whole
    assert first[2] in (b'{"hello":"world"}', b"hello world")
    assert second == (201, "application/json", b'{"hello":"world"}')
    for i, outcome in enumerate(split, start=1):
        assert outcome == whole, f"cut at byte {i}: {answer[:i]!r} | {answer[i:]!r}"


def _server_side(stream: bytes, splits: list[list[int]]) -> list:
    return through_server(splits, stream, answers=2)


@pytest.mark.parametrize(
    ("side", "messages"),
    [
        (_server_side, [CONTENT_LENGTH_REQUEST + NEXT_REQUEST, CHUNKED_REQUEST + NEXT_REQUEST]),
        (
            lambda answer, splits: through_client(splits, answer),
            [CONTENT_LENGTH_ANSWER, CHUNKED_ANSWER],
        ),
    ],
    ids=["request", "answer"],
)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_message_in_many_pieces_is_parsed_the_same(side, messages, data):
    message = data.draw(st.sampled_from(messages))
    at = data.draw(st.lists(st.integers(1, len(message) - 1), max_size=30))
    whole, pieces = side(message, [[], at])
    assert pieces == whole


@pytest.mark.parametrize("answer", MALFORMED_ANSWERS, ids=["bad-chunk", "short", "garbage"])
def test_a_malformed_answer_is_an_upstream_error_wherever_it_is_cut(answer):
    closes = answer in CLOSES_AFTER
    for first, second in through_client(every_byte(answer, 5), answer, close=closes):
        assert first[0] == "UpstreamError"
        # The broken connection was dropped: the next request is read cleanly.
        assert second == (201, "application/json", b'{"hello":"world"}')


async def _answers_to(port: int, data: bytes) -> bytes:
    """Send `data`, say nothing more (half-close), and read all the server writes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        return await reader.read()
    except ConnectionError:
        return b""  # Closed on us mid-way: no answer to check.
    finally:
        writer.close()


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        # Near-misses of a valid request: one byte of it replaced, dropped or repeated.
        st.tuples(
            st.sampled_from([CONTENT_LENGTH_REQUEST, CHUNKED_REQUEST]),
            st.integers(0, 10**6),
            st.binary(min_size=0, max_size=3),
        ).map(lambda t: t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + 1 :]),
    )
)
def test_no_bytes_make_the_server_answer_a_5xx(data):
    async def main():
        server = HttpServer(echo, max_body=1024)
        port = free_port()
        await server.start("127.0.0.1", port)
        try:
            return await _answers_to(port, data)
        finally:
            await server.close()

    written = asyncio.run(main())
    statuses = [int(s) for s in re.findall(rb"(?:^|\r\n)HTTP/1\.1 (\d{3}) ", written)]
    assert all(status < 500 for status in statuses), (data, written[:300])


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        # Near-misses of a valid answer: one byte of it replaced, dropped or repeated.
        st.tuples(
            st.sampled_from([CONTENT_LENGTH_ANSWER, CHUNKED_ANSWER]),
            st.integers(0, 10**6),
            st.binary(min_size=0, max_size=3),
        ).map(lambda t: t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + 1 :]),
    )
)
def test_whatever_a_runner_sends_the_client_reads_an_answer_or_raises_upstream_error(wire):
    # The runner sends `wire` and closes: an answer, or an UpstreamError (502), never a
    # parser's own exception. After an error the connection was dropped, so the next
    # request is read cleanly. (After a complete answer the pool may reuse the connection
    # the runner is closing: that keep-alive race is not what this test is about.)
    [(first, second)] = through_client([[]], wire, close=True)
    assert first[0] == "UpstreamError" or isinstance(first[0], int)
    if first[0] == "UpstreamError":
        assert second == (201, "application/json", b'{"hello":"world"}')
