"""The runtime's admin API (loopback only): the contract of controlplane/runtime_client.py.

Every call but GET /health needs `Authorization: Bearer <runtime_client.admin_secret()>`.
Errors are JSON {"error": {"message": ...}}; an unknown runner or revision is a 404.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from django.conf import settings as conf

from dashboard.controlplane import parameters
from dashboard.controlplane.api.body import parse_object
from dashboard.controlplane.errors import ControlError
from dashboard.controlplane.models import Network
from dashboard.controlplane.rules import APP_NAME_RE
from dashboard.controlplane.runtime_client import admin_secret
from dashboard.runner_states import ACTIVE, FAILING, GONE, READY, STARTING, RunnerState
from dashboard.runtime.metrics import Traffic
from dashboard.runtime.routing import RoutingTable, effective_settings, load_revision
from dashboard.runtime.supervisor import Runner, Supervisor

RUNNER_ID_RE = re.compile(r"\Ar-[0-9a-f]{8}\Z")
UUID_RE = re.compile(r"\A[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\Z")
MAX_WAIT = 600.0
MAX_TAIL = 10_000
MAX_METRICS_REVISIONS = 100


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


@web.middleware
async def errors_and_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path != "/health":
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(secret.strip(), admin_secret()):
            return _json({"error": {"message": "missing or wrong runtime admin secret"}}, 401)
    try:
        return await handler(request)
    except ApiError as exc:
        return _json({"error": {"message": exc.message}}, exc.status)
    except web.HTTPException as exc:
        return _json({"error": {"message": exc.reason}}, exc.status)


async def _body(request: web.Request) -> dict[str, Any]:
    # The control API's own parser: the same depth limit and the same messages.
    try:
        return parse_object(await request.read())
    except ControlError as exc:
        raise ApiError(exc.status, exc.message) from None


def _check_parameters(values: Any, what: str, *, complete: bool = False) -> None:
    """Refuse values the control API would refuse, by its own rules (parameters.py).

    `complete` values are a whole set (an app's or a revision's settings), so the
    cross-field rules (floor and buffer within the ceiling) apply to them as they are.
    """
    if not isinstance(values, dict):
        raise ApiError(400, f"{what} must be a JSON object of parameter values")
    try:
        clean = parameters.validate(values)
        if complete and clean:
            parameters.check_consistent({**parameters.defaults(), **clean})
    except parameters.ParameterError as exc:
        raise ApiError(400, f"{what} refused, nothing changed: {exc}") from None


def _check_state(state: Any) -> None:
    """Refuse a state whose parameter values break the control API's rules.

    A state of the wrong shape is not refused here: RoutingTable.apply reads such an app
    from the database instead, as it does for a malformed Redis message.
    """
    if not isinstance(state, dict):
        raise ApiError(400, "state must be an object, as events.app_state makes it")
    if isinstance(state.get("settings"), dict):
        _check_parameters(state["settings"], "state's settings", complete=True)
    if "network" in state and state["network"] not in Network.values:
        choices = ", ".join(Network.values)
        raise ApiError(400, f"state's network must be one of {choices}, got {state['network']!r}")
    rev = state.get("revision")
    if isinstance(rev, dict) and isinstance(rev.get("settings"), dict):
        _check_parameters(rev["settings"], "state's revision settings", complete=True)


def _number(value: str | None, name: str, default: float, maximum: float) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, got {value!r}") from None
    if not 0 <= number <= maximum:
        raise ApiError(400, f"{name} must be between 0 and {maximum:g}, got {value!r}")
    return number


def _tail(path: Path, lines: int) -> list[str]:
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(size - 2 * 1024 * 1024, 0))  # The tail of a huge log, not all of it.
        text = f.read().decode(errors="replace")
    return text.splitlines()[-lines:]


def runner_counts(runners: list[Runner]) -> dict[str, int]:
    """A revision's runners as on-call reads them: ready (warm, idle), busy (serving),
    starting (PENDING, SETUP) and failing (CRASH_BACKOFF, or FAILED and still listed, that
    is within the last two minutes). Draining and stopped runners serve nothing new."""
    counts = {"ready": 0, "busy": 0, "starting": 0, "failing": 0}
    for runner in runners:
        if runner.state == RunnerState.IDLE:
            counts["ready"] += 1
        elif runner.state == RunnerState.RUNNING:
            counts["busy"] += 1
        elif runner.state in STARTING:
            counts["starting"] += 1
        elif runner.state in FAILING:
            counts["failing"] += 1
    return counts


class AdminApi:
    def __init__(
        self, routing: RoutingTable, supervisor: Supervisor, traffic: Traffic | None = None
    ):
        self.routing = routing
        self.supervisor = supervisor
        self.traffic = traffic or Traffic()

    def web_app(self) -> web.Application:
        app = web.Application(middlewares=[errors_and_auth])
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/runners", self.list_runners)
        r.add_get("/runners/{id}", self.get_runner)
        r.add_post("/runners/{id}/stop", self.stop_runner)
        r.add_post("/runners/{id}/kill", self.kill_runner)
        r.add_post("/revisions/{rev}/runners", self.start_runners)
        r.add_post("/revisions/{rev}/stop", self.stop_revision)
        r.add_post("/apps/{app}/sync", self.sync_app)
        r.add_get("/logs", self.logs)
        r.add_get("/metrics", self.metrics)
        return app

    def _runner(self, request: web.Request) -> Runner:
        runner = self.supervisor.runners.get(request.match_info["id"])
        if runner is None:
            raise ApiError(404, f"no runner {request.match_info['id']!r}")
        return runner

    async def health(self, request: web.Request) -> web.Response:
        alive = self.supervisor.alive()
        return _json({"status": "ok", "runners": len(alive), "apps": len(self.routing.apps)})

    async def list_runners(self, request: web.Request) -> web.Response:
        app, revision = request.query.get("app"), request.query.get("revision")
        chosen = [
            r
            for r in self.supervisor.runners.values()
            if (not app or r.app == app) and (not revision or r.revision == revision)
        ]
        # Live runners above stopped ones, then newest first: what the dashboard and the
        # CLI show. Not by state among the live ones: a runner flips between IDLE and
        # RUNNING with every request, and rows that swapped places on each refresh could
        # not be followed.
        chosen.sort(key=lambda r: (r.state in GONE, -r.started_at.timestamp()))
        return _json({"runners": [r.as_dict() for r in chosen]})

    async def get_runner(self, request: web.Request) -> web.Response:
        runner = self._runner(request)
        wait_for = request.query.get("wait_for", "")
        timeout = _number(request.query.get("timeout"), "timeout", 5.0, MAX_WAIT)
        if wait_for == "ready":
            await self.supervisor.wait_for(
                runner, lambda r: r.state in READY or r.state in GONE, timeout
            )
        elif wait_for == "gone":
            await self.supervisor.wait_for(runner, lambda r: r.state in GONE, timeout)
        elif wait_for:
            raise ApiError(400, f"wait_for must be 'ready' or 'gone', got {wait_for!r}")
        return _json(runner.as_dict())

    async def stop_runner(self, request: web.Request) -> web.Response:
        runner = self._runner(request)
        body = await _body(request)
        self.supervisor.stop(runner, replace=bool(body.get("replace")))
        return _json(runner.as_dict())

    async def kill_runner(self, request: web.Request) -> web.Response:
        runner = self._runner(request)
        self.supervisor.kill(runner)
        return _json(runner.as_dict())

    async def start_runners(self, request: web.Request) -> web.Response:
        revision_id = request.match_info["rev"]
        rev = await load_revision(revision_id) if UUID_RE.match(revision_id) else None
        if rev is None:
            raise ApiError(404, f"revision {revision_id!r} not found")
        body = await _body(request)
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
            raise ApiError(400, f"count must be a whole number in 1–100, got {count!r}")
        overrides = body.get("settings") or {}
        _check_parameters(overrides, "settings")
        settings = effective_settings(rev.settings, overrides)
        try:
            parameters.check_consistent(settings)
        except parameters.ParameterError as exc:
            raise ApiError(400, f"settings refused, nothing changed: {exc}") from None
        runners = self.supervisor.start_keyed(rev, settings, count, str(body.get("key") or ""))
        return _json({"runners": [r.as_dict() for r in runners]}, 201)

    async def stop_revision(self, request: web.Request) -> web.Response:
        revision_id = request.match_info["rev"]
        runners = [r for r in self.supervisor.of_revision(revision_id) if r.state in ACTIVE]
        if not runners and (
            not UUID_RE.match(revision_id) or await load_revision(revision_id) is None
        ):
            raise ApiError(404, f"revision {revision_id!r} not found")
        force = bool((await _body(request)).get("force"))
        for runner in runners:
            if force:
                self.supervisor.kill(runner)
            else:
                self.supervisor.stop(runner)
        return _json({"runners": [r.as_dict() for r in runners]})

    async def sync_app(self, request: web.Request) -> web.Response:
        name = request.match_info["app"]
        state = (await _body(request)).get("state")
        if state is not None:
            _check_state(state)
        # With the switch's state this needs no database read, and nothing at all when the
        # switch's Redis message got here first, as it usually does.
        if state is not None:
            route = await self.routing.apply(name, state)
        else:
            route = await self.routing.reload(name)
        self.supervisor.drain_not_current(name)
        return _json({"current_revision": route.revision if route else None})

    async def metrics(self, request: web.Request) -> web.Response:
        """Each revision's traffic over the window (metrics.Traffic) and its runners
        (runner_counts): of the revisions named by `revision` (repeatable), else of every
        revision with traffic in the window or a runner."""
        wanted = request.query.getall("revision", [])
        if len(wanted) > MAX_METRICS_REVISIONS:
            raise ApiError(
                400, f"at most {MAX_METRICS_REVISIONS} revisions at once, got {len(wanted)}"
            )
        for revision in wanted:
            if not UUID_RE.match(revision):
                raise ApiError(400, f"revision must be a revision id, got {revision!r}")
        # The runtime keys revisions by their hyphenated id, as the control plane writes it.
        wanted = [str(uuid.UUID(revision)) for revision in wanted]
        by_revision: dict[str, list[Runner]] = {}
        for runner in self.supervisor.runners.values():
            by_revision.setdefault(runner.revision, []).append(runner)
        chosen = wanted or sorted({*self.traffic.active(), *by_revision})
        return _json(
            {
                "revisions": {
                    rev: {
                        **self.traffic.figures(rev),
                        "runners": runner_counts(by_revision.get(rev, [])),
                    }
                    for rev in chosen
                }
            }
        )

    async def logs(self, request: web.Request) -> web.Response:
        q = request.query
        tail = int(_number(q.get("tail"), "tail", 200, MAX_TAIL))
        root = conf.VAR_DIR / "logs"
        app = q.get("app")
        if app is not None and not APP_NAME_RE.match(app):
            raise ApiError(404, f"no app named {app!r}")
        if runner_id := q.get("runner"):
            # With an app, only that app's runners: its logs are not another app's to read.
            files = (
                list(root.glob(f"{app or '*'}/*/{runner_id}.log"))
                if RUNNER_ID_RE.match(runner_id)
                else []
            )
            if not files:
                raise ApiError(
                    404,
                    f"app {app!r} has no runner {runner_id!r}"
                    if app
                    else f"no runner {runner_id!r}",
                )
            return web.Response(text="\n".join(_tail(files[0], tail)) + "\n")
        if revision := q.get("revision"):
            if not UUID_RE.match(revision):
                raise ApiError(404, f"revision {revision!r} not found")
            files = list(root.glob(f"*/{revision}/*.log"))
        elif app:
            files = list(root.glob(f"{app}/*/*.log"))
        else:
            raise ApiError(400, "give one of runner, revision or app")
        lines: list[str] = []
        for path in sorted(files, key=lambda p: p.stat().st_mtime):
            lines += [f"[{path.stem}] {line}" for line in _tail(path, tail)]
        return web.Response(text="\n".join(lines[-tail:]) + ("\n" if lines else ""))
