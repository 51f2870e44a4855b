"""The gateway: `http://GATEWAY/<app>/<endpoint path>` → a runner of the app's Current revision.

`http://GATEWAY/<app>@<revision prefix>/<path>` calls one revision of the app directly,
whatever is Current (to try a rollback target before switching), under the app's auth
rules. The prefix is resolved by the control plane's one resolver; only a Deployed
revision serves. A revision that is not Current is served by one runner, cold-started by
the first such call and stopped by the autoscaler once idle like any other that is not
Current.

A request takes a slot on the least-loaded ready runner (at most max_multiplexing per
runner) or waits in the app's queue, which wakes the autoscaler; it is aborted with 504
after request_timeout, queueing included. Errors are JSON: {"error": {"code", "message"}}.

Bodies stream through both ways (a large answer holds its runner's slot until the caller
has read it, bounded by request_timeout). The dashboard's session and CSRF cookies and
Switchboard's Authorization header never reach an app.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from urllib.parse import unquote

from django.conf import settings as conf

from dashboard.controlplane.errors import ControlError
from dashboard.controlplane.models import RevisionStatus
from dashboard.runner_states import ACTIVE
from dashboard.runtime.auth import Authenticator, Denied
from dashboard.runtime.httpserver import HttpServer, Reply, Request
from dashboard.runtime.metrics import Traffic
from dashboard.runtime.routing import RevisionInfo, RoutingTable, resolve_revision
from dashboard.runtime.supervisor import CrashLooping, Runner, StartFailed, Supervisor
from dashboard.runtime.upstream import Answer, UpstreamError

# Hop-by-hop and gateway-only headers are not passed on to the runner. Authorization is
# Switchboard's own (an API or dashboard token decides who may call a private or shared
# app) and never reaches app code, whatever the app's auth mode. The gateway frames the
# body itself (Content-Length, or chunked without trailers) and has answered any Expect.
DROP_HEADERS = frozenset(
    {
        b"authorization",
        b"proxy-authorization",
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
    after `/<app>` and the query, still URL-encoded as received. For `/<app>@<rev>/...`
    the name is `<app>@<rev>` (an app name never holds '@')."""
    _, _, rest = request.path.partition(b"/")
    name, slash, rest = rest.partition(b"/")
    target = b"/" + rest
    if request.query:
        target += b"?" + request.query
    return unquote(name.decode("latin-1")), target.decode("utf-8", "surrogateescape")


def dashboard_cookies() -> frozenset[bytes]:
    """The dashboard's own cookies. A browser sends them to any port of the dashboard's
    host name, the gateway's included, and an app that saw them could act as the
    signed-in user: they are taken out of every Cookie header."""
    return frozenset(
        name.encode("latin-1") for name in (conf.SESSION_COOKIE_NAME, conf.CSRF_COOKIE_NAME)
    )


def strip_cookies(value: bytes, names: frozenset[bytes]) -> bytes:
    """A Cookie header's value without the pairs named in `names`."""
    kept = [
        pair.strip()
        for pair in value.split(b";")
        if pair.strip() and pair.split(b"=", 1)[0].strip() not in names
    ]
    return b"; ".join(kept)


def upstream_headers(request: Request, cookies: frozenset[bytes]) -> bytes:
    """The caller's headers as raw `Name: value` lines, without the ones in DROP_HEADERS
    and without the dashboard's cookies."""
    lines = []
    for name, value in request.headers:
        lower = name.lower()
        if lower in DROP_HEADERS:
            continue
        if lower == b"cookie":
            value = strip_cookies(value, cookies)
            if not value:
                continue
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines)


class Relay:
    """A runner's answer body on its way to the caller: read piece by piece before the
    request's deadline; close() gives back the runner's connection and slot."""

    def __init__(
        self, answer: Answer, supervisor: Supervisor, runner: Runner, deadline: float
    ) -> None:
        self.answer, self.supervisor, self.runner = answer, supervisor, runner
        self.deadline = deadline
        self.closed = False

    async def read(self) -> bytes:
        async with asyncio.timeout_at(self.deadline):
            return await self.answer.read()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.answer.release()
            self.supervisor.release(self.runner, served=self.answer.status < 500)


def error(status: int, code: str, message: str, **headers: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Reply(status, body, headers=headers)


def crash_looping(app: str, looping: CrashLooping) -> Reply:
    """503 at once while every runner of the revision waits out a crash backoff."""
    retry = max(1, math.ceil(looping.retry_after))
    return error(
        503,
        "revision_crash_looping",
        f"every runner of app {app!r} is crash-looping (last: {looping.reason}); "
        f"the next restart is in {retry}s",
        **{"Retry-After": str(retry)},
    )


# Why a revision named in the URL does not serve, by its status: only Deployed ones do.
NOT_SERVING = {
    RevisionStatus.SUSPENDED: (
        "revision_suspended",
        "revision {short} of app {app!r} is Suspended: resume it to call it",
    ),
    RevisionStatus.FAILED: (
        "revision_failed",
        "revision {short} of app {app!r} is Failed and never serves",
    ),
    RevisionStatus.DEPLOYING: (
        "revision_deploying",
        "revision {short} of app {app!r} is still Deploying: call it once it is Deployed",
    ),
}


class Gateway:
    def __init__(self, routing: RoutingTable, supervisor: Supervisor, auth: Authenticator):
        self.routing = routing
        self.supervisor = supervisor
        self.auth = auth

        self.cookies = dashboard_cookies()
        # Requests, 5xx answers and latency per revision over the last five minutes, read
        # by the admin API (GET /metrics) for the control plane's health answer.
        self.traffic = Traffic()

    def server(self) -> HttpServer:
        return HttpServer(
            self.handle,
            max_body=conf.MAX_BUNDLE_BYTES,
            head_timeout=conf.GATEWAY_HEAD_TIMEOUT,
            body_timeout=conf.GATEWAY_BODY_TIMEOUT,
        )

    async def handle(self, request: Request) -> Reply:
        began = time.monotonic()
        name, target = split_path(request)
        name, at, ref = name.partition("@")
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
        # The revision is looked up only after the caller passed the app's auth rules, so
        # nobody learns which revisions a private app has.
        direct: RevisionInfo | None = None
        if at:
            try:
                direct = await resolve_revision(name, ref)
            except ControlError as exc:
                return error(exc.status, exc.code, exc.message)
            if direct.status in NOT_SERVING:
                code, text = NOT_SERVING[direct.status]
                short = direct.id.replace("-", "")[:8]
                return error(
                    409,
                    code,
                    text.format(short=short, app=name),
                    **{"X-Switchboard-Revision": direct.id},
                )
            if direct.id == route.revision:
                direct = None  # The Current revision: served as the app is, by its runners.
        if direct is not None:
            revision, settings = direct.id, direct.settings
        elif route.revision is None:
            return error(
                503, "no_current_revision", f"app {name!r} has no Current revision: deploy one"
            )
        elif route.revision_status == "suspended":
            return error(503, "app_suspended", "app suspended")
        else:
            revision, settings = route.revision, route.settings
        # From here on the answer is the revision's: counted in its health figures, the
        # gateway's 502/503/504 for it included. A streamed answer counts when its head is
        # ready (time to first byte); a caller who left before any answer is not counted.
        reply = await self._serve(request, name, target, revision, settings, direct)
        done = time.monotonic()
        self.traffic.record(revision, reply.status, done - began, done)
        return reply

    async def _serve(
        self,
        request: Request,
        name: str,
        target: str,
        revision: str,
        settings: dict,
        direct: RevisionInfo | None,
    ) -> Reply:
        failed = self._failing(revision)
        if failed:
            return error(
                503, "runner_start_failed", f"runners of app {name!r} fail to start: {failed}"
            )
        looping = self.supervisor.crash_looping(revision)
        if looping is not None:
            return crash_looping(name, looping)

        timeout = float(settings["request_timeout"])
        headers = upstream_headers(request, self.cookies)
        # A body that has arrived whole (most do, with their head) goes in one write; a
        # larger one streams through as the caller sends it and the runner reads it. Either
        # way a runner's slot is taken only once the body is whole or fills the buffer: a
        # caller who stalls before that is closed by the body timeout without holding one.
        await request.body.settled()
        whole = request.body.ready()
        body = request.body if whole is None else whole
        runner, served, relayed = None, False, False
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                if direct is None:
                    runner = await self.supervisor.acquire(name, revision)
                else:
                    runner = await self._acquire_direct(direct)
                upstream = runner.upstream
                if upstream is None:
                    raise UpstreamError("the runner is not serving")
                answer = await upstream.open(request.method, target, headers, body, request.length)
                served = answer.status < 500
                extra = {
                    "X-Switchboard-Runner": runner.id,
                    "X-Switchboard-Revision": runner.revision,
                }
                content_type = answer.content_type or "application/json"
                if answer.complete:
                    try:
                        data = await answer.read_all()
                    finally:
                        answer.release()
                    return Reply(answer.status, data, content_type, extra)
            # A large answer streams to the caller as the caller reads it; the relay
            # holds the runner's slot until it is closed.
            relayed = True
            relay = Relay(answer, self.supervisor, runner, deadline)
            return Reply(answer.status, relay, content_type, extra, length=answer.length)
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
        except CrashLooping as exc:
            return crash_looping(name, exc)
        except (UpstreamError, OSError) as exc:
            where = f"runner {runner.id}" if runner else "the runner"
            return error(
                502,
                "runner_lost",
                f"{where} went away before answering ({type(exc).__name__}: {exc})",
            )
        finally:
            if runner is not None and not relayed:
                self.supervisor.release(runner, served=served)

    async def _acquire_direct(self, rev: RevisionInfo) -> Runner:
        """A slot on a runner of a revision that is not Current, called by its URL.

        The app's queue and the autoscaler serve the Current revision only, so this waits
        for its own runner: one is cold-started when none is alive, and a request finding
        its slots taken waits until a runner of the revision changes (a slot freed, a runner
        ready or gone). The caller's deadline bounds the wait.
        """
        sup = self.supervisor
        while True:
            runner = sup.try_acquire(rev.id)
            if runner is not None:
                return runner
            mine = [r for r in sup.of_revision(rev.id) if r.state in ACTIVE and not r.stopping]
            if not mine:
                failed = self._failing(rev.id)
                if failed:
                    raise StartFailed(failed)
                mine = [sup.start(rev, rev.settings)]
            waits = [asyncio.ensure_future(r.changed.wait()) for r in mine]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()

    def _failing(self, revision: str) -> str:
        """The reason a revision's runners fail to start, while none of them is alive."""
        failed = self.supervisor.failed_at.get(revision)
        if not failed or time.monotonic() - failed[0] >= conf.RUNNER_BACKOFF_STEP:
            return ""
        if any(r.revision == revision and r.state in ACTIVE for r in self.supervisor.alive()):
            return ""
        return failed[1]
