"""One runner: `python -m dashboard.runtime.runner --bundle-dir D --entrypoint E --socket S
--ready-fd N --max-multiplexing M`, or a warm spare: `... --spare --ready-fd N`.

It imports the app, serves HTTP on a Unix socket at once (`/_health` answers 503 until
setup() finished, then 200), runs setup() in a thread, and tells the supervisor "ready"
or "setup failed: <one line>" through the inherited pipe so that readiness is an event,
not something polled. On SIGTERM it stops accepting, lets in-flight requests finish,
runs teardown() and exits 0.

Only aiohttp, uvloop and the SDK are imported here (no Django): a runner's cold start is
on the path of the first request after a deploy or an idle shutdown. It runs on uvloop,
as the runtime does: less CPU per request than asyncio's own loop, for little more
import time.

A spare (see backend.py) has done those imports, most of a runner's start, before any
runner is asked for. It reads
its assignment, one JSON line, on stdin, then becomes that runner: its log on stdout and
stderr, the bundle as its folder, the machine type's limits (lowering RLIMIT_AS and
raising niceness need no privilege), and on as above.

It always runs inside the runner sandbox (sandboxed.py): it sees its bundle, its socket
folder and a private /tmp, and the socket is its one channel to the runtime (with the Ray
backend, to the Serve replica that started it: ray_replica.py). What a request is
answered — health, 404/405/400/500, JSON — is decided here alone, for both backends.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import signal
import socket
import sys
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from dashboard.sdk.loader import apply_limits, endpoints, load_app_class

JSON = "application/json"

# The gateway is a runner's only client; it keeps at most max_multiplexing connections
# and reuses them. aiohttp's default would close one after 75 s idle, and a request sent
# in the instant of that close fails for nothing, so idle connections stay open.
KEEPALIVE_SECONDS = 24 * 3600


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.Response(status=status, text=json.dumps(body), content_type=JSON)


class Runner:
    def __init__(self, instance: Any, max_multiplexing: int):
        self.instance = instance
        self.ready = False
        self.pool = ThreadPoolExecutor(max_workers=max_multiplexing, thread_name_prefix="handler")

    async def health(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _error(503, "starting", "setup() has not finished yet")
        return web.Response(text='{"status": "ok"}', content_type=JSON)

    def handler(self, method_name: str, methods: tuple[str, ...]):
        func = getattr(self.instance, method_name)
        takes_data = bool(inspect.signature(func).parameters)
        is_async = inspect.iscoroutinefunction(func)

        async def handle(request: web.Request) -> web.Response:
            if request.method not in methods:
                return _error(
                    405, "method_not_allowed", f"{request.path} accepts {', '.join(methods)}"
                )
            if request.method == "GET":
                data: Any = dict(request.query)
            else:
                raw = await request.read()
                try:
                    data = json.loads(raw) if raw.strip() else {}
                except ValueError as exc:
                    return _error(400, "bad_json", f"the request body is not valid JSON: {exc}")
            args = (data,) if takes_data else ()
            try:
                if is_async:
                    result = await func(*args)
                else:
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(self.pool, func, *args)
                body = json.dumps(result)
            except Exception as exc:  # noqa: BLE001 - the app's bug is reported, not fatal.
                return _handler_failed(request, exc)
            return web.Response(text=body, content_type=JSON)

        return handle


def _handler_failed(request: web.Request, exc: BaseException) -> web.Response:
    """A 500 that tells the caller only a request id; the traceback goes to the runner's
    log under that id. A traceback (or even the exception's text) shows server paths,
    source lines and whatever data the app put in the message, to any caller."""
    request_id = uuid.uuid4().hex
    sys.stderr.write(
        f"request {request_id}: {request.method} {request.path} raised\n"
        + "".join(traceback.format_exception(exc))
    )
    sys.stderr.flush()
    return _error(
        500,
        "handler_error",
        f"the app failed on this request; its log has the details under request id {request_id}",
        request_id=request_id,
    )


def _failure(what: str, exc: BaseException) -> str:
    """One line for the revision's error; the whole traceback goes to the runner's log."""
    sys.stderr.write("".join(traceback.format_exception(exc)))
    sys.stderr.flush()
    return f"{what} raised {type(exc).__name__}: {exc}"


def _tell(fd: int, message: str) -> None:
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(message.encode())


async def serve(args: argparse.Namespace) -> int:
    try:
        cls = load_app_class(Path(args.bundle_dir), args.entrypoint)
        instance = cls()
        routes = endpoints(cls)
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything at import.
        _tell(args.ready_fd, "setup failed: " + _failure(f"importing {args.entrypoint}", exc))
        return 1

    runner = Runner(instance, args.max_multiplexing)
    web_app = web.Application(client_max_size=64 * 1024 * 1024)
    web_app.router.add_get("/_health", runner.health)
    for path, (method_name, methods) in routes.items():
        web_app.router.add_route("*", path, runner.handler(method_name, methods))
    known = ", ".join(sorted(routes)) or "no endpoints"

    async def not_found(request: web.Request) -> web.Response:
        # Matched last: the caller learns, in the gateway's JSON shape, what does exist.
        return _error(
            404, "endpoint_not_found", f"no endpoint {request.path}; this app serves {known}"
        )

    web_app.router.add_route("*", "/{tail:.*}", not_found)
    app_runner = web.AppRunner(
        web_app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_SECONDS
    )
    await app_runner.setup()
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    await web.UnixSite(app_runner, args.socket, shutdown_timeout=3600).start()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    setup = loop.run_in_executor(ThreadPoolExecutor(1, "setup"), instance.setup)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({setup, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not setup.done():
        # Stopped during setup(): there is nothing to drain and nothing to tear down yet.
        _tell(args.ready_fd, "setup failed: stopped before setup() finished")
        os._exit(0)
    if setup.exception() is not None:
        _tell(args.ready_fd, "setup failed: " + _failure("setup()", setup.exception()))
        os._exit(1)
    runner.ready = True
    print(f"setup() finished; serving {', '.join(sorted(routes)) or 'no endpoints'}", flush=True)
    _tell(args.ready_fd, "ready")

    await stopped
    print("stopping: finishing in-flight requests", flush=True)
    await app_runner.cleanup()
    await loop.run_in_executor(None, instance.teardown)
    print("teardown() finished", flush=True)
    return 0


def await_assignment(args: argparse.Namespace) -> None:
    """A spare waits here, everything heavy imported, until the runtime gives it a runner.

    Its stdin is a Unix socket: the assignment is one JSON line, with the runner's log
    file as an attached descriptor, since the log folder is not visible in the sandbox.
    """
    channel = socket.socket(fileno=0)
    try:
        line, fds, _, _ = socket.recv_fds(channel, 64 * 1024, 1)
    except OSError:
        line, fds = b"", []
    if not line or not fds:
        os._exit(0)  # The runtime ended (or stopped needing a spare) before using it.
    job = json.loads(line)
    log = fds[0]
    null = os.open(os.devnull, os.O_RDONLY)
    channel.close()
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.chdir(job["bundle_dir"])
    sys.path[0] = job["bundle_dir"]  # Where `-m` would have put it, started in the bundle.
    apply_limits(job["machine"])
    args.bundle_dir = job["bundle_dir"]
    args.entrypoint = job["entrypoint"]
    args.socket = job["socket"]
    args.max_multiplexing = job["max_multiplexing"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.runtime.runner")
    parser.add_argument("--spare", action="store_true", help="wait for an assignment on stdin")
    parser.add_argument("--bundle-dir")
    parser.add_argument("--entrypoint")
    parser.add_argument("--socket")
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--max-multiplexing", type=int, default=1)
    parser.add_argument("--machine", type=json.loads, help="resource limits as JSON")
    args = parser.parse_args(argv)
    if args.machine:
        apply_limits(args.machine)
    if args.spare:
        await_assignment(args)
    elif not (args.bundle_dir and args.entrypoint and args.socket):
        parser.error("--bundle-dir, --entrypoint and --socket are required without --spare")
    try:
        code = asyncio.run(serve(args), loop_factory=uvloop.new_event_loop)
    except Exception:  # noqa: BLE001 - teardown() failing still ends the runner, loudly.
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    # User threads (e.g. a handler still sleeping) must not keep a stopped runner alive.
    os._exit(code)


if __name__ == "__main__":
    main()
