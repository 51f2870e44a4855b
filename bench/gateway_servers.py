#!/usr/bin/env python
"""The gateway's own HTTP server against uvicorn, aiohttp and nginx, in one run (issue 12).

    .venv/bin/python bench/gateway_servers.py [--rounds N] [--seconds S]

One runner-like aiohttp app (uvloop) answers a small JSON body on a Unix socket, as a
runner does. In front of it, each in its own process on a free 127.0.0.1 port:

- own:     dashboard/runtime/httpserver.py (the gateway's server), uvloop
- uvicorn: uvicorn with httptools and uvloop, an ASGI app
- aiohttp: aiohttp.web, uvloop
- nginx:   nginx as a reverse proxy (keep-alive upstream), the outside anchor

The three Python servers run the same proxy handler over the gateway's own runner client
(dashboard/runtime/upstream.py), so only the server differs. The load generator
(bench/run.py's httptools client) measures, per round and in turn for each: latency on
one keep-alive connection (p50, p99) and throughput with 16 connections; "direct" is
the runner's socket itself. Then the slow-client goal of issue 9: 20 connections per
server that send part of a request head and stall, and how many of them each server has
closed once the gateway's head timeout (plus 5 s) has passed. uvicorn is in the dev extra; nginx is Debian's; a server
that is missing is left out. Results are kept in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ANSWER = b'{"hello":"world"}'
NGINX_CONF = ROOT / "bench" / "nginx.conf"


# -- the processes ---------------------------------------------------------------------


def run_runner(sock: str) -> None:
    import uvloop
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", hello)
    uvloop.install()
    web.run_app(app, path=sock, print=None, access_log=None)


def _pool(sock: str):
    from dashboard.runtime.upstream import UpstreamPool

    return UpstreamPool(sock, limit=64)


def run_own(port: int, sock: str) -> None:
    import uvloop

    from dashboard.runtime.httpserver import HttpServer, Reply

    async def main() -> None:
        pool = _pool(sock)

        async def handler(request) -> Reply:
            answer = await pool.open(
                request.method, request.path.decode(), b"", await request.read()
            )
            try:
                body = await answer.read_all()
            finally:
                answer.release()
            return Reply(answer.status, body, answer.content_type or "application/json")

        server = HttpServer(handler, max_body=1 << 20)
        await server.start("127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(main())


def run_uvicorn(port: int, sock: str) -> None:
    import uvicorn

    pool = None

    async def app(scope, receive, send) -> None:
        nonlocal pool
        if scope["type"] != "http":
            return
        pool = pool or _pool(sock)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = await pool.open(scope["method"], scope["raw_path"].decode(), b"", body)
        try:
            data = await answer.read_all()
        finally:
            answer.release()
        content_type = (answer.content_type or "application/json").encode()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": data})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


def run_aiohttp(port: int, sock: str) -> None:
    import uvloop
    from aiohttp import web

    pool = None

    async def proxy(request: web.Request) -> web.Response:
        nonlocal pool
        pool = pool or _pool(sock)
        answer = await pool.open(request.method, request.raw_path, b"", await request.read())
        try:
            data = await answer.read_all()
        finally:
            answer.release()
        return web.Response(
            status=answer.status, body=data, content_type=answer.content_type or None
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the run ---------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT, start_new_session=True)


def start_nginx(tmp: Path, port: int, sock: str) -> subprocess.Popen | None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        print("nginx is not installed (apt-get install nginx-light): left out")
        return None
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.read_text()
        .replace("{port}", str(port))
        .replace("{sock}", sock)
        .replace("{tmp}", str(tmp))
    )
    return subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"], start_new_session=True
    )


async def connect(target) -> object:
    from bench.run import _Connection

    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    loop = asyncio.get_running_loop()
    if isinstance(target, str):
        _, conn = await loop.create_unix_connection(lambda: _Connection(request), target)
    else:
        _, conn = await loop.create_connection(lambda: _Connection(request), "127.0.0.1", target)
    return conn


async def ready(target, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await connect(target)
            assert await conn.get() == 200
            conn.transport.close()
            return
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {target} did not answer") from None
            await asyncio.sleep(0.05)


async def latency(target, count: int) -> list[float]:
    conn = await connect(target)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        assert await conn.get() == 200
        times.append((time.perf_counter() - started) * 1000)
    conn.transport.close()
    return times


async def throughput(target, seconds: float, concurrency: int = 16) -> float:
    conns = [await connect(target) for _ in range(concurrency)]
    done = 0
    deadline = time.perf_counter() + seconds

    async def client(conn) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            assert await conn.get() == 200
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.transport.close()
    return done / elapsed


STALLED = 20


async def stalled_heads(targets: dict) -> dict[str, int]:
    """How many of STALLED connections with a stalled head each server has closed once
    the gateway's head timeout (plus a margin) has passed."""
    from dashboard.runtime.httpserver import HEAD_TIMEOUT_SECONDS

    held: dict[str, list] = {}
    for name, port in targets.items():
        if name == "direct":
            continue
        held[name] = []
        for _ in range(STALLED):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
            await writer.drain()
            held[name].append((reader, writer))
    await asyncio.sleep(HEAD_TIMEOUT_SECONDS + 5)
    closed = {}
    for name, pairs in held.items():
        closed[name] = 0
        for reader, writer in pairs:
            try:
                # A 408 or an end of stream: the server let the connection go.
                await asyncio.wait_for(reader.read(65536), 0.2)
                closed[name] += 1
            except TimeoutError:
                pass  # Still held open, waiting for the rest of the head.
            except ConnectionError:
                closed[name] += 1
            writer.close()
    return closed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(targets: dict, rounds: int, seconds: float) -> dict:
    for target in targets.values():
        await ready(target)
    lat: dict[str, list[float]] = {name: [] for name in targets}
    rps: dict[str, list[float]] = {name: [] for name in targets}
    for round_ in range(rounds + 1):
        for name, target in targets.items():  # In turn: the machine's noise falls on all.
            try:
                times = await latency(target, 300)
                rate = await throughput(target, seconds)
            except ConnectionError as exc:
                raise SystemExit(f"bench: {name} closed a connection: {exc}") from None
            if round_:  # The first round warms every path.
                lat[name] += times
                rps[name].append(rate)
    figures = {}
    for name in targets:
        figures[name] = {
            "p50": pct(lat[name], 0.5),
            "p99": pct(lat[name], 0.99),
            "req/s": max(rps[name]),
        }
    direct = figures["direct"]
    for f in figures.values():
        f["overhead p50"] = f["p50"] - direct["p50"]
        f["throughput ÷ direct"] = f["req/s"] / direct["req/s"]
    return figures


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("runner", "own", "uvicorn", "aiohttp"):
        kind, *rest = sys.argv[1:]
        if kind == "runner":
            run_runner(rest[0])
        else:
            {"own": run_own, "uvicorn": run_uvicorn, "aiohttp": run_aiohttp}[kind](
                int(rest[0]), rest[1]
            )
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    tmp = Path(tempfile.mkdtemp(prefix="sb-servers-"))
    sock = str(tmp / "runner.sock")
    procs = [spawn("runner", sock)]
    targets: dict[str, object] = {"direct": sock}
    try:
        import uvicorn  # noqa: F401

        have_uvicorn = True
    except ImportError:
        print("uvicorn is not installed (make setup installs it): left out")
        have_uvicorn = False
    for kind in ("own", "uvicorn", "aiohttp"):
        if kind == "uvicorn" and not have_uvicorn:
            continue
        port = free_port()
        procs.append(spawn(kind, str(port), sock))
        targets[kind] = port
    started = datetime.now(UTC)
    load = os.getloadavg()
    try:
        while not Path(sock).exists():
            time.sleep(0.05)
        os.chmod(sock, 0o777)  # nginx's workers may run as another user.
        nginx_port = free_port()
        nginx = start_nginx(tmp, nginx_port, sock)
        if nginx is not None:
            procs.append(nginx)
            targets["nginx"] = nginx_port
        figures = asyncio.run(measure(targets, args.rounds, args.seconds))
        for name, count in asyncio.run(stalled_heads(targets)).items():
            figures[name]["stalled heads closed"] = f"{count}/{STALLED}"
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # Its own session: it and its children.
        for proc in procs:
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{'':10} {'p50 ms':>8} {'p99 ms':>8} {'overhead':>9} {'req/s':>8} {'÷ direct':>9}"
        f" {'stalled heads closed':>21}"
    )
    for name, f in figures.items():
        print(
            f"{name:10} {f['p50']:8.3f} {f['p99']:8.3f} {f['overhead p50']:9.3f}"
            f" {f['req/s']:8.0f} {f['throughput ÷ direct']:9.2f}"
            f" {f.get('stalled heads closed', '-'):>21}"
        )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    path = ROOT / "bench" / "results" / f"{started:%Y%m%dT%H%M%SZ}-servers-{commit[:10]}.json"
    path.write_text(
        json.dumps(
            {
                "date": started.isoformat(timespec="seconds"),
                "commit": commit,
                "load_average": [round(x, 2) for x in load],
                "rounds": args.rounds,
                "seconds": args.seconds,
                "figures": figures,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"saved {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
