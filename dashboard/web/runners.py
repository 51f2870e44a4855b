"""Runner listings from the runtime, shaped for the pages.

The runtime is a separate process: when it is down the pages still render and say
"runtime unavailable" instead of failing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from dashboard.controlplane import runtime_client
from dashboard.runner_states import DISPLAY_ORDER, GONE, RunnerState


def fetch(app: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """(runners, None) or ([], the control plane's message saying why the runtime could
    not answer)."""
    try:
        return runtime_client.list_runners(app=app), None
    except runtime_client.FAILURES as exc:
        return [], runtime_client.error(exc).message


@dataclass
class AppRunners:
    """What the Apps page says about one app's runners.

    An on-call engineer reads the Apps page as "is this app serving, and on what?", the
    way Cloud Run's service list or `heroku ps` show the serving revision's instances or
    dynos. So `current` counts only the Current revision's runners. Runners of other
    revisions are not the app's serving state: a Failed revision's FAILED runner is shown
    on its Versions row and its Runners page, not here, where it read as if the app were
    failing. Live ones (an old revision draining after a switch, a rolling deploy's new
    runner starting up) are counted in `other_live`, so a busy switch is still visible.
    """

    current: list[tuple[str, int]] = field(default_factory=list)  # (state, count), in DISPLAY_ORDER
    other_live: int = 0


def _revision_key(revision: object) -> str:
    # The runtime may send a UUID with or without hyphens.
    return str(revision or "").replace("-", "").lower()


def counts_by_app(
    runners: list[dict[str, Any]], current_revisions: dict[str, Any]
) -> dict[str, AppRunners]:
    """{app: AppRunners}, given each app's Current revision id; TERMINATED runners are
    history and left out."""
    current = {app: _revision_key(rev) for app, rev in current_revisions.items()}
    counters: dict[str, Counter] = {}
    result: dict[str, AppRunners] = {}
    for runner in runners:
        app, state = runner.get("app", ""), runner.get("state", "?")
        if state == RunnerState.TERMINATED:
            continue
        summary = result.setdefault(app, AppRunners())
        if current.get(app) and _revision_key(runner.get("revision")) == current[app]:
            counters.setdefault(app, Counter())[state] += 1
        elif state not in GONE:
            summary.other_live += 1
    for app, counter in counters.items():
        result[app].current = sorted(counter.items(), key=lambda kv: _state_rank(kv[0]))
    return result


def _state_rank(state: str) -> int:
    return DISPLAY_ORDER.index(state) if state in DISPLAY_ORDER else len(DISPLAY_ORDER)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def for_display(runners: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each runner plus its times in seconds, for the table, live runners first.

    A live runner has an `uptime` (since it started) and, while idle, `idle_left` before
    its idle shutdown. A stopped one (TERMINATED, FAILED) has neither: its uptime would
    count on from its start for ever. It has a `lifetime` instead when the runtime says
    when it ended (`ended_at`), to the millisecond, else nothing to show.
    """
    now = timezone.now()
    shown = []
    for runner in runners:  # In the runtime's order: live first, then newest first.
        started = _parse(runner.get("started_at"))
        shutdown = _parse(runner.get("idle_shutdown_at"))
        gone = runner.get("state") in GONE
        uptime = idle_left = lifetime = None
        if gone:
            ended = _parse(runner.get("ended_at"))
            if started and ended:
                # Not whole seconds: a runner whose setup() failed at once lived 370 ms, not 0 s.
                lifetime = max(0.0, round((ended - started).total_seconds(), 3))
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
