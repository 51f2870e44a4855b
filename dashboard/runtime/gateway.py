"""The gateway: `http://GATEWAY/<app>/<endpoint path>` → a runner of the app's Current revision.

A request takes a slot on the least-loaded ready runner (at most max_multiplexing per
runner) or waits in the app's queue, which wakes the autoscaler; it is aborted with 504
after request_timeout, queueing included. Errors are JSON: {"error": {"code", "message"}}.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import unquote

from django.conf import settings as conf

from dashboard.runtime.auth import Authenticator, Denied
from dashboard.runtime.httpserver import HttpServer, Reply, Request
from dashboard.runtime.routing import RoutingTable
from dashboard.runtime.supervisor import ACTIVE, StartFailed, Supervisor
from dashboard.runtime.upstream import UpstreamError

# Hop-by-hop and gateway-only headers are not passed on to the runner. The gateway has
# read the whole body already, so it sends its own Content-Length and no Expect.
DROP_HEADERS = frozenset(
    {
        b"authorization",
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"content-length",
        b"expect",
        b"te",
        b"trailer",
        b"upgrade",
    }
)


def split_path(request: Request) -> tuple[str, str]:
    """`/<app>/<rest>?<query>` → the app's name and the runner's request target: the path
    after `/<app>` and the query, still URL-encoded as received."""
    _, _, rest = request.path.partition(b"/")
    name, slash, rest = rest.partition(b"/")
    target = b"/" + rest
    if request.query:
        target += b"?" + request.query
    return unquote(name.decode("latin-1")), target.decode("utf-8", "surrogateescape")


def upstream_headers(request: Request) -> bytes:
    """The caller's headers as raw `Name: value` lines, without the ones in DROP_HEADERS."""
    return b"".join(
        [
            b"%s: %s\r\n" % (name, value)
            for name, value in request.headers
            if name.lower() not in DROP_HEADERS
        ]
    )


def error(status: int, code: str, message: str, **headers: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Reply(status, body, headers=headers)


class Gateway:
    def __init__(self, routing: RoutingTable, supervisor: Supervisor, auth: Authenticator):
        self.routing = routing
        self.supervisor = supervisor
        self.auth = auth

    def server(self) -> HttpServer:
        return HttpServer(self.handle, max_body=conf.MAX_BUNDLE_BYTES)

    async def handle(self, request: Request) -> Reply:
        name, target = split_path(request)
        if not name:
            return error(404, "app_not_found", "no app in the path: call /<app>/<endpoint path>")
        route = await self.routing.get(name)
        if route is None:
            return error(404, "app_not_found", f"app {name!r} not found")
        try:
            authorization = request.header(b"authorization") or b""
            await self.auth.check(authorization.decode("latin-1"), route)
        except Denied as denied:
            extra = {"WWW-Authenticate": "Bearer"} if denied.status == 401 else {}
            return error(denied.status, denied.code, denied.message, **extra)
        if route.revision is None:
            return error(
                503, "no_current_revision", f"app {name!r} has no Current revision: deploy one"
            )
        if route.revision_status == "suspended":
            return error(503, "app_suspended", "app suspended")
        failed = self._failing(route.revision)
        if failed:
            return error(
                503, "runner_start_failed", f"runners of app {name!r} fail to start: {failed}"
            )

        timeout = float(route.settings["request_timeout"])
        headers = upstream_headers(request)
        runner, served = None, False
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                runner = await self.supervisor.acquire(name, route.revision)
                upstream = runner.upstream
                if upstream is None:
                    raise UpstreamError("the runner is not serving")
                answer = await upstream.request(request.method, target, headers, request.body)
            served = answer.status < 500
            return Reply(
                answer.status,
                answer.body,
                answer.content_type or "application/json",
                {
                    "X-Switchboard-Runner": runner.id,
                    "X-Switchboard-Revision": runner.revision,
                },
            )
        except TimeoutError:
            waited = time.monotonic() - started
            return error(
                504,
                "request_timeout",
                f"the request was aborted after {waited:.1f}s: app {name!r} allows "
                f"request_timeout={timeout:g}s",
            )
        except StartFailed as exc:
            return error(
                503, "runner_start_failed", f"no runner of app {name!r} could start: {exc}"
            )
        except (UpstreamError, OSError) as exc:
            where = f"runner {runner.id}" if runner else "the runner"
            return error(
                502,
                "runner_lost",
                f"{where} went away before answering ({type(exc).__name__}: {exc})",
            )
        finally:
            if runner is not None:
                self.supervisor.release(runner, served=served)

    def _failing(self, revision: str) -> str:
        """The reason a revision's runners fail to start, while none of them is alive."""
        failed = self.supervisor.failed_at.get(revision)
        if not failed or time.monotonic() - failed[0] >= conf.RUNNER_BACKOFF_STEP:
            return ""
        if any(r.revision == revision and r.state in ACTIVE for r in self.supervisor.alive()):
            return ""
        return failed[1]
