"""How the control plane talks to the runtime's admin API (loopback only, shared secret).

This module is the contract between the two; dashboard/runtime/admin_api.py serves it.
A runner as returned by the runtime is a dict:

    {"id": "r-1a2b3c4d", "app": "demo", "revision": "<uuid>", "state": "IDLE",
     "in_flight": 0, "pid": 1234, "started_at": iso, "ready_at": iso | null,
     "idle_since": iso | null, "idle_shutdown_at": iso | null,
     "ended_at": iso | null (set once TERMINATED or FAILED), "restarts": 0,
     "error": "" , "machine_type": "XS"}

Its "state" is one of dashboard/runner_states.py's RunnerState.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings

from dashboard import httpclient
from dashboard.controlplane.errors import ControlError, NotFound, Unavailable


class RuntimeError_(Exception):
    """The runtime answered with an error (its message is precise and user-facing)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


# What a call below may raise besides its answer: catch these, then say it with error().
FAILURES = (httpclient.Unavailable, RuntimeError_)


def error(exc: httpclient.Unavailable | RuntimeError_) -> ControlError:
    """A failed runtime call as the one error users read, from the API, the dashboard,
    an operation's record and the health column alike.

    Unreachable: 503 runtime_unavailable. The runtime's 404 (no such runner or revision):
    404 not_found with its own message. Any other refusal: 503 runtime_error.
    """
    if isinstance(exc, httpclient.Unavailable):
        return Unavailable(f"runtime unavailable: {exc.detail}", code="runtime_unavailable")
    if exc.status == 404:
        return NotFound(str(exc))
    return Unavailable(f"the runtime refused: {exc}", code="runtime_error")


def admin_secret() -> str:
    # Derived, not configured: one less setting to get wrong, and rotating SECRET_KEY rotates it.
    return hmac.new(
        settings.SECRET_KEY.encode(), b"switchboard-runtime-admin", hashlib.sha256
    ).hexdigest()


def _call(
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict | None = None,
    timeout: float | None = None,
    retries: int | None = None,
) -> Any:
    response = httpclient.request(
        method,
        settings.RUNTIME_URL.rstrip("/") + path,
        service="runtime",
        json=json,
        params=params,
        headers={"Authorization": f"Bearer {admin_secret()}"},
        timeout=timeout or settings.HTTP_TIMEOUT,
        retries=settings.HTTP_RETRIES if retries is None else retries,
        # Admin calls are idempotent by design (start takes a key, stop/kill of a stopped
        # runner is a no-op), so they are safe to resend after a lost response.
        idempotency_key="runtime",
    )
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"runtime answered HTTP {response.status_code}"
        raise RuntimeError_(response.status_code, message)
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.text


def list_runners(app: str | None = None, revision: str | None = None) -> list[dict]:
    params = {k: v for k, v in {"app": app, "revision": revision}.items() if v}
    return _call("GET", "/runners", params=params, retries=1)["runners"]


def find_runner(runner_id: str, *, app: str | None = None) -> dict:
    """The runner with this id (of `app`, when given), or the one error to answer: the
    runtime's failure (error()) or 404 no such runner."""
    try:
        runners = list_runners(app=app)
    except FAILURES as exc:
        raise error(exc) from None
    found = next((r for r in runners if r.get("id") == runner_id), None)
    if found is None:
        where = f" in app {app!r}" if app else ""
        raise NotFound(f"no runner {runner_id!r}{where}", details={"runner": runner_id})
    return found


def start_runners(
    revision: str, count: int = 1, *, key: str, settings: dict | None = None
) -> list[dict]:
    """Start `count` new runners of a revision. `key` (e.g. "<operation id>:start") makes a
    repeated call return the runners the first call started instead of starting more.

    `settings` are the values these runners run with (startup_timeout, machine_type,
    max_multiplexing...): a rolling set-rev passes what the alias will have after the
    switch. Without it the runtime uses the app's live settings when the revision is
    Current, else the revision's own deployed settings."""
    body = {"count": count, "key": key, "settings": settings}
    return _call("POST", f"/revisions/{revision}/runners", json=body)["runners"]


def wait_runner(runner_id: str, *, until: str = "ready", timeout: float = 5.0) -> dict:
    """Long-poll one runner until it is ready (or gone, for until="gone") or timeout passes.

    Returns the runner as it is then; the caller decides from its state.
    """
    return _call(
        "GET",
        f"/runners/{runner_id}",
        params={"wait_for": until, "timeout": timeout},
        timeout=timeout + 10,
    )


def stop_runner(runner_id: str, *, replace: bool = False) -> dict:
    """Graceful: no new work, in-flight requests finish (bounded by request_timeout), teardown()."""
    return _call("POST", f"/runners/{runner_id}/stop", json={"replace": replace})


def kill_runner(runner_id: str) -> dict:
    return _call("POST", f"/runners/{runner_id}/kill", json={})


def stop_revision(revision: str, *, force: bool = False) -> list[dict]:
    """Stop every runner of a revision (delete-rev, suspend). Returns the runners stopped."""
    return _call("POST", f"/revisions/{revision}/stop", json={"force": force})["runners"]


def sync_app(app: str, state: dict[str, Any] | None = None) -> dict:
    """Make the gateway route by the app's committed state now, then drain every runner
    that does not belong to its Current revision. Returns {"current_revision": id|None}.

    `state` is events.app_state of the alias switch just committed: the runtime routes by
    it without reading the database, or keeps what it has when that is this switch or a
    later one (the switch's Redis message usually got there first). Without it the runtime
    reloads the app from the database."""
    return _call("POST", f"/apps/{app}/sync", json={"state": state} if state else {})


def logs(
    *,
    runner: str | None = None,
    revision: str | None = None,
    app: str | None = None,
    tail: int = 200,
) -> str:
    params = {
        k: v
        for k, v in {"runner": runner, "revision": revision, "app": app, "tail": tail}.items()
        if v
    }
    return _call("GET", "/logs", params=params, retries=1)


def metrics(revisions: list[str] | None = None) -> dict[str, dict]:
    """Each revision's traffic over the runtime's window (runtime/metrics.py) and its
    runners, by revision id:

        {"<uuid>": {"requests": 120, "errors_5xx": 1, "error_rate": 0.0083,
                    "p50_ms": 3.4, "p99_ms": 45.3 (both null without traffic),
                    "window_s": 300,
                    "runners": {"ready": 2, "busy": 0, "starting": 0, "failing": 0}}}

    Of the revisions named (at most 100), else of every revision with traffic in the
    window or a runner."""
    params = {"revision": revisions} if revisions else None
    return _call("GET", "/metrics", params=params, retries=1)["revisions"]
