"""The gateway → runner hop (upstream.py) against real servers on Unix sockets.

An aiohttp server (what a runner is) answers the ordinary cases; small raw servers send
the unusual answers byte for byte, so framing and connection handling are seen exactly.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from dashboard.runtime.upstream import UpstreamError, UpstreamPool
from tests.conftest import eventually


def socket_path() -> str:
    return str(Path(tempfile.mkdtemp(prefix="sbup-")) / "s.sock")


async def aiohttp_server(path: str, routes: list[web.RouteDef]) -> web.AppRunner:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    return runner


class RawServer:
    """A server that reads each request head, then lets `answer` write whatever it likes.

    It counts the connections it was given, and the most it had open at once.
    """

    def __init__(
        self, answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        self.answer = answer
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.server: asyncio.Server | None = None

    async def start(self, path: str) -> RawServer:
        self.server = await asyncio.start_unix_server(self._handle, path)
        return self

    def close(self) -> None:
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await self.answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


def test_it_sends_method_target_headers_and_body_and_reads_the_answer():
    seen = {}

    async def echo(request: web.Request) -> web.Response:
        seen.update(
            method=request.method,
            path_qs=request.raw_path,
            header=request.headers.get("X-Trace"),
            body=await request.read(),
        )
        return web.json_response({"ok": True}, status=201)

    async def main():
        path = socket_path()
        server = await aiohttp_server(path, [web.route("*", "/{tail:.*}", echo)])
        pool = UpstreamPool(path, limit=4)
        try:
            answer = await pool.request(
                "POST", "/a%20b/c?x=1&y=%C3%A9", b"X-Trace: t-1\r\n", b'{"n": 1}'
            )
        finally:
            pool.close()
            await server.cleanup()
        return answer

    answer = asyncio.run(main())
    assert answer.status == 201
    assert answer.content_type == "application/json; charset=utf-8"
    assert answer.body == b'{"ok": true}'
    assert seen == {
        "method": "POST",
        "path_qs": "/a%20b/c?x=1&y=%C3%A9",
        "header": "t-1",
        "body": b'{"n": 1}',
    }


def test_one_connection_serves_one_request_after_another():
    peers = []

    async def hello(request: web.Request) -> web.Response:
        peers.append(id(request.transport))
        return web.Response(text="hi")

    async def main():
        path = socket_path()
        server = await aiohttp_server(path, [web.get("/", hello)])
        pool = UpstreamPool(path, limit=4)
        try:
            return [(await pool.request("GET", "/")).body for _ in range(5)]
        finally:
            pool.close()
            await server.cleanup()

    assert asyncio.run(main()) == [b"hi"] * 5
    assert len(set(peers)) == 1


def held_answers():
    """A RawServer handler that answers "ok" to each request once the event is set."""
    answer_now = asyncio.Event()

    async def held(reader, writer):
        await answer_now.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    return answer_now, held


def test_it_never_opens_more_connections_than_its_limit_and_extra_requests_wait():
    answer_now, held = held_answers()  # Every answer is held until the pool is full.

    async def main():
        path = socket_path()
        server = await RawServer(held).start(path)
        pool = UpstreamPool(path, limit=2)
        try:
            requests = [asyncio.ensure_future(pool.request("GET", "/")) for _ in range(7)]
            await eventually(lambda: server.open == 2, what="the pool to open its 2 connections")
            waiting = sum(not r.done() for r in requests)
            answer_now.set()
            answers = await asyncio.gather(*requests)
        finally:
            pool.close()
            server.close()
        return [a.body for a in answers], waiting, server

    bodies, waiting, server = asyncio.run(main())
    assert waiting == 7  # Two sent, five waiting for a connection, none answered yet.
    assert bodies == [b"ok"] * 7
    assert server.most_open == 2


def test_a_raised_limit_lets_waiting_requests_open_connections_at_once():
    answer_now, held = held_answers()

    async def main():
        path = socket_path()
        server = await RawServer(held).start(path)
        pool = UpstreamPool(path, limit=1)
        try:
            requests = [asyncio.ensure_future(pool.request("GET", "/")) for _ in range(5)]
            await eventually(lambda: server.open == 1, what="the pool's one connection")
            pool.resize(3)  # The runner's slots followed a change of settings.
            await eventually(lambda: server.open == 3, what="two more connections")
            answer_now.set()
            answers = await asyncio.gather(*requests)
        finally:
            pool.close()
            server.close()
        return [a.body for a in answers], server

    bodies, server = asyncio.run(main())
    assert bodies == [b"ok"] * 5
    assert server.most_open == 3


def exchange_twice(wire: bytes, *, byte_by_byte: bool = False, method: str = "GET"):
    """Two requests on a pool of one, against a server that always answers `wire`."""

    async def answer(reader, writer):
        if byte_by_byte:  # Every partial state of the parser gets exercised.
            for i in range(len(wire)):
                writer.write(wire[i : i + 1])
                await writer.drain()
        else:
            writer.write(wire)
        if b"Connection: close" in wire:
            writer.close()

    async def main():
        path = socket_path()
        server = await RawServer(answer).start(path)
        pool = UpstreamPool(path, limit=1)
        try:
            return [await pool.request(method, "/") for _ in range(2)], server
        finally:
            pool.close()
            server.close()

    return asyncio.run(main())


@pytest.mark.parametrize(
    "wire, body",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", b"abcde"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-T: 1\r\n\r\n", b"z"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes", b"yes"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", b""),
    ],
    ids=["content-length", "chunked", "chunked-with-trailer", "after-100-continue", "204"],
)  # fmt: skip
def test_answers_framed_each_way_are_read_whole_and_the_connection_is_kept(wire, body):
    answers, server = exchange_twice(wire, byte_by_byte=True)
    assert [(a.status, a.body) for a in answers] == [(answers[0].status, body)] * 2
    assert server.connections == 1


def test_a_head_answer_has_no_body_whatever_its_content_length_says():
    answers, server = exchange_twice(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method="HEAD"
    )
    assert [a.body for a in answers] == [b"", b""]
    assert server.connections == 1


def test_an_answer_that_says_connection_close_is_not_reused():
    answers, server = exchange_twice(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    )
    assert [a.body for a in answers] == [b"ok", b"ok"]
    assert server.connections == 2


def test_a_body_without_length_runs_to_the_close():
    answers, server = exchange_twice(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
    assert [a.body for a in answers] == [b"all of it", b"all of it"]
    assert server.connections == 2


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ntoo long",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["cut-short", "longer-than-said", "not-http", "negative-length"],
)
def test_a_broken_answer_is_an_upstream_error_and_the_connection_is_dropped(wire):
    async def answer(reader, writer):
        writer.write(wire)
        await writer.drain()
        if b"close" in wire:
            writer.close()

    async def main():
        path = socket_path()
        server = await RawServer(answer).start(path)
        pool = UpstreamPool(path, limit=1)
        try:
            with pytest.raises(UpstreamError):
                await pool.request("GET", "/")
            # The dropped connection's close lands: its place is given back.
            await eventually(lambda: pool._open == 0, what="its place to be freed")  # noqa: SLF001
            return pool._open  # noqa: SLF001 - the count the limit is kept with.
        finally:
            pool.close()
            server.close()

    assert asyncio.run(main()) == 0


def test_a_runner_that_dies_mid_request_is_an_upstream_error():
    async def vanish(reader, writer):
        writer.transport.abort()

    async def main():
        path = socket_path()
        server = await RawServer(vanish).start(path)
        pool = UpstreamPool(path, limit=1)
        try:
            with pytest.raises(UpstreamError, match="closed the connection"):
                await pool.request("POST", "/", body=b"{}")
        finally:
            pool.close()
            server.close()

    asyncio.run(main())


def test_a_missing_socket_is_an_os_error():
    async def main():
        pool = UpstreamPool(socket_path(), limit=1)
        with pytest.raises(OSError):
            await pool.request("GET", "/")
        return pool._open  # noqa: SLF001

    assert asyncio.run(main()) == 0


def test_a_request_cancelled_by_its_timeout_drops_its_connection_and_frees_its_place():
    async def never(reader, writer):
        await asyncio.Event().wait()  # Never answers.

    async def main():
        path = socket_path()
        server = await RawServer(never).start(path)
        pool = UpstreamPool(path, limit=1)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await pool.request("GET", "/")
            # The one place is free again: a second request gets a connection of its own.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pool.request("GET", "/")
            return server.connections
        finally:
            pool.close()
            server.close()

    assert asyncio.run(main()) == 2


def test_a_closed_pool_refuses_requests_and_wakes_those_waiting_for_a_connection():
    async def never(reader, writer):
        await asyncio.Event().wait()  # Never answers.

    async def main():
        path = socket_path()
        server = await RawServer(never).start(path)
        pool = UpstreamPool(path, limit=1)
        try:
            first = asyncio.ensure_future(pool.request("GET", "/"))
            second = asyncio.ensure_future(pool.request("GET", "/"))
            # The first holds the one connection; the second waits for it.
            await eventually(lambda: server.open == 1, what="the first request's connection")
            assert not second.done()
            pool.close()
            with pytest.raises(UpstreamError, match="not serving"):
                await second
            with pytest.raises(UpstreamError, match="not serving"):
                await pool.request("GET", "/")
            first.cancel()
        finally:
            server.close()

    asyncio.run(main())


def test_header_names_are_matched_in_any_case_and_values_keep_theirs():
    answers, server = exchange_twice(
        b"HTTP/1.1 200 OK\r\ncontent-type: Text/Plain\r\nX-Other: 1\r\n"
        b"CONTENT-LENGTH:  2 \r\n\r\nok"
    )
    assert [(a.content_type, a.body) for a in answers] == [("Text/Plain", b"ok")] * 2
    assert server.connections == 1


class Pieces:
    """A request body that arrives in `count` pieces of `size` bytes."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size

    async def read(self) -> bytes:
        if not self.count:
            return b""
        self.count -= 1
        return b"p" * self.size


@pytest.mark.parametrize("length", [None, 8 * 65536], ids=["chunked", "content-length"])
def test_a_body_in_pieces_is_sent_framed_and_a_large_answer_is_read_in_pieces(length):
    """Both ways bounded: the answer (8 MB) comes in pieces no larger than the buffer, and
    the connection is reused only once the answer was read to its end."""
    seen: list[int] = []

    async def upload(request: web.Request) -> web.StreamResponse:
        seen.append(len(await request.read()))
        seen.append(int(request.headers.get("Content-Length", -1)))
        return web.Response(body=b"a" * (8 * 1024 * 1024))

    async def main():
        path = socket_path()
        runner = await aiohttp_server(path, [web.post("/", upload)])
        pool = UpstreamPool(path, limit=1)
        try:
            answer = await pool.open("POST", "/", body=Pieces(8, 65536), length=length)
            pieces = []
            while chunk := await answer.read():
                pieces.append(len(chunk))
                await asyncio.sleep(0)  # A slow reader: the buffer fills and reading pauses.
            answer.release()
            again = await pool.request("POST", "/", body=b"x")
            return answer.length, pieces, again.status, pool._open  # noqa: SLF001
        finally:
            pool.close()
            await runner.cleanup()

    total, pieces, status, open_ = asyncio.run(main())
    assert total == sum(pieces) == 8 * 1024 * 1024 and status == 200 and open_ == 1
    assert max(pieces) <= 2 * 256 * 1024
    assert seen[:2] == [8 * 65536, length if length is not None else -1]


def test_an_answer_released_before_its_end_drops_its_connection():
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"b" * (4 * 1024 * 1024))

    async def main():
        path = socket_path()
        runner = await aiohttp_server(path, [web.get("/", big)])
        pool = UpstreamPool(path, limit=1)
        try:
            answer = await pool.open("GET", "/")
            await answer.read()
            answer.release()  # The caller went away half-way.
            # The dropped connection's close lands: its place is given back.
            await eventually(lambda: pool._open == 0, what="its place to be freed")  # noqa: SLF001
            dropped = pool._open  # noqa: SLF001
            again = await pool.request("GET", "/")
            return dropped, len(again.body)
        finally:
            pool.close()
            await runner.cleanup()

    assert asyncio.run(main()) == (0, 4 * 1024 * 1024)


@pytest.mark.parametrize("method, repeated", [("GET", True), ("PUT", True), ("POST", False)])
def test_a_kept_connection_closed_as_a_request_arrives_is_retried_only_when_safe(method, repeated):
    """A runner may close a kept-alive connection just as the next request goes out on it.
    Nothing was answered: a request that is safe to repeat is sent again on a new
    connection; a POST may have been acted on, so it fails and is not sent twice."""
    answered: set[asyncio.StreamWriter] = set()
    requests = 0

    async def close_a_kept_connection(reader, writer):
        nonlocal requests
        requests += 1
        if writer in answered:
            writer.transport.abort()  # Its idle close, as the second request arrives.
            return
        answered.add(writer)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async def main():
        path = socket_path()
        server = await RawServer(close_a_kept_connection).start(path)
        pool = UpstreamPool(path, limit=1)
        try:
            assert (await pool.request(method, "/")).body == b"ok"
            if repeated:
                second = await pool.request(method, "/")
                assert (second.status, second.body) == (200, b"ok")
            else:
                with pytest.raises(UpstreamError, match="closed the connection"):
                    await pool.request(method, "/", body=b"{}")
            return server
        finally:
            pool.close()
            server.close()

    server = asyncio.run(main())
    assert server.connections == (2 if repeated else 1)
    assert requests == (3 if repeated else 2)
