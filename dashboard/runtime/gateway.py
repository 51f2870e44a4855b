"""The gateway: `http://GATEWAY/<app>/<endpoint path>` → a runner of the app's Current revision.

A request takes a slot on the least-loaded ready runner (at most max_multiplexing per
runner) or waits in the app's queue, which wakes the autoscaler; it is aborted with 504
after request_timeout, queueing included. Errors are JSON: {"error": {"code", "message"}}.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from aiohttp import web
from django.conf import settings as conf

from dashboard.runtime.auth import Authenticator, Denied
from dashboard.runtime.routing import RoutingTable
from dashboard.runtime.supervisor import ACTIVE, StartFailed, Supervisor

# Hop-by-hop and gateway-only headers are not passed on to the runner.
DROP_HEADERS = frozenset(
    {"authorization", "host", "connection", "keep-alive", "transfer-encoding", "content-length"}
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
        path = "/" + request.match_info.get("path", "")
        if request.query_string:
            path += "?" + request.query_string
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP_HEADERS}
        runner, served = None, False
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                runner = await self.supervisor.acquire(name, route.revision)
                session = runner.session
                if session is None or session.closed:
                    raise aiohttp.ClientConnectionError("the runner is not serving")
                async with session.request(
                    request.method, "http://runner" + path, data=body or None, headers=headers
                ) as upstream:
                    payload = await upstream.read()
            served = upstream.status < 500
            return web.Response(
                status=upstream.status,
                body=payload,
                headers={
                    "Content-Type": upstream.headers.get("Content-Type", "application/json"),
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
        except (aiohttp.ClientError, RuntimeError) as exc:
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
