"""The gateway: `http://GATEWAY/<app>/<endpoint path>` → a runner of the app's Current revision.

A request takes a slot on the least-loaded ready runner (at most max_multiplexing per
runner) or waits in the app's queue, which wakes the autoscaler; it is aborted with 504
after request_timeout, queueing included. Errors are JSON: {"error": {"code", "message"}}.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web
from django.conf import settings as conf

from dashboard.runtime.auth import Authenticator, Denied
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


def upstream_target(request: web.Request) -> str:
    """The request's path after `/<app>`, and its query, still URL-encoded as received."""
    url = request.rel_url
    parts = url.raw_path.split("/", 2)
    target = "/" + parts[2] if len(parts) > 2 else "/"
    query = url.raw_query_string
    return target + "?" + query if query else target


def upstream_headers(request: web.Request) -> bytes:
    """The caller's headers as raw `Name: value` lines, without the ones in DROP_HEADERS."""
    return b"".join(
        [
            b"%s: %s\r\n" % (name, value)
            for name, value in request.raw_headers
            if name.lower() not in DROP_HEADERS
        ]
    )


def error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


class Gateway:
    def __init__(self, routing: RoutingTable, supervisor: Supervisor, auth: Authenticator):
        self.routing = routing
        self.supervisor = supervisor
        self.auth = auth

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=conf.MAX_BUNDLE_BYTES)
        app.router.add_route("*", "/{app}", self.handle)
        app.router.add_route("*", "/{app}/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["app"]
        route = await self.routing.get(name)
        if route is None:
            return error(404, "app_not_found", f"app {name!r} not found")
        try:
            await self.auth.check(request.headers.get("Authorization", ""), route)
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
        target = upstream_target(request)
        body = await request.read()
        headers = upstream_headers(request)
        runner, served = None, False
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                runner = await self.supervisor.acquire(name, route.revision)
                upstream = runner.upstream
                if upstream is None:
                    raise UpstreamError("the runner is not serving")
                answer = await upstream.request(request.method, target, headers, body)
            served = answer.status < 500
            return web.Response(
                status=answer.status,
                body=answer.body,
                headers={
                    "Content-Type": answer.content_type or "application/json",
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
