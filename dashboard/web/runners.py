"""Runner listings from the runtime, shaped for the pages.

The runtime is a separate process: when it is down the pages still render and say
"runtime unavailable" instead of failing.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from dashboard import httpclient
from dashboard.controlplane import runtime_client

UNAVAILABLE = "runtime unavailable"
# The order states are shown in: the healthy ones first.
STATE_ORDER = [
    "RUNNING",
    "IDLE",
    "SETUP",
    "PENDING",
    "DRAINING",
    "TERMINATING",
    "CRASH_BACKOFF",
    "FAILED",
    "TERMINATED",
]


def fetch(app: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """(runners, None) or ([], a message saying why the runtime could not answer)."""
    try:
        return runtime_client.list_runners(app=app), None
    except httpclient.Unavailable:
        return [], UNAVAILABLE
    except runtime_client.RuntimeError_ as exc:
        return [], f"{UNAVAILABLE}: {exc}"


def counts_by_app(runners: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """{app: [(state, count), ...]} without TERMINATED runners, which are history."""
    counters: dict[str, Counter] = {}
    for runner in runners:
        if runner.get("state") == "TERMINATED":
            continue
        counters.setdefault(runner.get("app", ""), Counter())[runner.get("state", "?")] += 1
    return {
        app: sorted(counter.items(), key=lambda kv: _state_rank(kv[0]))
        for app, counter in counters.items()
    }


def _state_rank(state: str) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def for_display(runners: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each runner plus its times in whole seconds, for the table.

    A live runner has an `uptime` (since it started) and, while idle, `idle_left` before
    its idle shutdown. A stopped one (TERMINATED, FAILED) has neither: its uptime would
    count on from its start for ever. It has a `lifetime` instead when the runtime says
    when it ended (`ended_at`), else nothing to show.
    """
    now = timezone.now()
    shown = []
    for runner in sorted(runners, key=lambda r: (_state_rank(r.get("state", "")), r.get("id", ""))):
        started = _parse(runner.get("started_at"))
        shutdown = _parse(runner.get("idle_shutdown_at"))
        gone = runner.get("state") in runtime_client.GONE_STATES
        uptime = idle_left = lifetime = None
        if gone:
            ended = _parse(runner.get("ended_at"))
            if started and ended:
                lifetime = max(0, int((ended - started).total_seconds()))
        else:
            uptime = int((now - started).total_seconds()) if started else None
            idle_left = max(0, int((shutdown - now).total_seconds())) if shutdown else None
        shown.append(
            {
                **runner,
                "short_revision": (runner.get("revision") or "").replace("-", "")[:8],
                "uptime": uptime,
                "lifetime": lifetime,
                "idle_left": idle_left,
                "active": not gone,
            }
        )
    return shown
