"""Health at a glance: is the Current revision serving well, and what are its runners doing?

The one home of the health answer. The control API puts it on every app (GET /apps,
GET /apps/APP, GET /apps/APP/health), `switchboard apps list` prints its `summary`, and
the dashboard's Apps and Versions pages show it. The figures come from the gateway, which
counts each revision's requests, 5xx answers and latency over the last five minutes
(runtime/metrics.py), read in one call to the runtime for any number of apps.

Shape (`status` is "available", "unavailable" when the runtime cannot be asked, or
"no current revision"):

    {"status": "available", "message": "", "window_s": 300,
     "current": {"revision", "short_id", "requests", "errors_5xx", "error_rate",
                 "p50_ms", "p99_ms", "window_s", "text"} | null,
     "previous": the same for the Previous revision | null,
     "runners": {"ready", "busy", "starting", "failing", "scaled_to_zero", "text"} | null,
     "summary": "120 req · 0.8% 5xx · p99 45 ms · 2 ready"}

A runtime that is down makes the answer "unavailable", never an error: on-call must still
see which revision is Current.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from dashboard.controlplane import runtime_client
from dashboard.controlplane.models import App, RevisionStatus, short_id

WINDOW_S = 300  # The runtime's window (runtime/metrics.py), said when it cannot be asked.
MAX_FILTER = 100  # The most revisions the runtime takes by name; beyond, it lists them all.
RUNNER_KINDS = ("ready", "busy", "starting", "failing")
SCALED_TO_ZERO = "scaled to zero — the next request cold-starts it"
SUSPENDED = "suspended — serves nothing until resumed"


def for_apps(apps: Iterable[App]) -> dict[str, dict[str, Any]]:
    """{app name: its health}, from one call to the runtime. The apps' current_revision
    should be loaded (select_related): whether it is Suspended is read from it."""
    apps = list(apps)
    ids = [
        str(rev)
        for app in apps
        for rev in (app.current_revision_id, app.previous_revision_id)
        if rev is not None
    ]
    figures: dict[str, dict] = {}
    error = ""
    if ids:
        try:
            figures = runtime_client.metrics(ids if len(ids) <= MAX_FILTER else None)
        except runtime_client.FAILURES as exc:
            error = runtime_client.error(exc).message
    return {app.name: _app_health(app, figures, error) for app in apps}


def for_app(app: App) -> dict[str, Any]:
    return for_apps([app])[app.name]


def _app_health(app: App, figures: dict[str, dict], error: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "status": "available",
        "message": "",
        "window_s": WINDOW_S,
        "current": None,
        "previous": None,
        "runners": None,
        "summary": "",
    }
    if app.current_revision_id is None:
        return {**answer, "status": "no current revision", "summary": "no Current revision"}
    if error:
        return {**answer, "status": "unavailable", "message": error, "summary": "unavailable"}
    current = _revision(app.current_revision_id, figures)
    suspended = (
        app.current_revision is not None and app.current_revision.status == RevisionStatus.SUSPENDED
    )
    runners = _runners(figures.get(str(app.current_revision_id), {}).get("runners"), suspended)
    return {
        **answer,
        "window_s": current["window_s"],
        "current": current,
        "previous": _revision(app.previous_revision_id, figures)
        if app.previous_revision_id
        else None,
        "runners": runners,
        "summary": summary(current, runners),
    }


def _revision(revision_id: uuid.UUID, figures: dict[str, dict]) -> dict[str, Any]:
    found = figures.get(str(revision_id)) or {}
    entry = {
        "revision": str(revision_id),
        "short_id": short_id(revision_id),
        "requests": int(found.get("requests") or 0),
        "errors_5xx": int(found.get("errors_5xx") or 0),
        "error_rate": float(found.get("error_rate") or 0.0),
        "p50_ms": found.get("p50_ms"),
        "p99_ms": found.get("p99_ms"),
        "window_s": int(found.get("window_s") or WINDOW_S),
    }
    return {**entry, "text": traffic_text(entry)}


def traffic_text(entry: dict[str, Any]) -> str:
    """ "120 req · 1 5xx (0.8%) · p50 3.4 ms · p99 45 ms", or "no requests"."""
    if not entry["requests"]:
        return "no requests"
    return (
        f"{entry['requests']} req · {entry['errors_5xx']} 5xx ({percent(entry['error_rate'])}) · "
        f"p50 {milliseconds(entry['p50_ms'])} · p99 {milliseconds(entry['p99_ms'])}"
    )


def _runners(counts: dict[str, int] | None, suspended: bool) -> dict[str, Any]:
    counts = {kind: int((counts or {}).get(kind) or 0) for kind in RUNNER_KINDS}
    live = [f"{counts[kind]} {kind}" for kind in RUNNER_KINDS if counts[kind]]
    idle_text = SUSPENDED if suspended else SCALED_TO_ZERO
    return {**counts, "scaled_to_zero": not live, "text": " · ".join(live) or idle_text}


def percent(rate: float) -> str:
    """0.0083 → "0.8%", 0.15 → "15%", 0 → "0%"; a few errors in many requests are not 0%."""
    if 0 < rate < 0.001:
        return "<0.1%"
    return f"{rate * 100:.1f}".removesuffix(".0") + "%"


def milliseconds(value: float | None) -> str:
    """45.3 → "45 ms", 0.42 → "0.4 ms"; None → "–"."""
    if value is None:
        return "–"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def summary(current: dict[str, Any], runners: dict[str, Any]) -> str:
    """One line: "120 req · 0.8% 5xx · p99 45 ms · 2 ready" (the CLI's health column)."""
    short = runners["text"].split(" — ")[0]  # "scaled to zero", without the explanation.
    if not current["requests"]:
        return f"0 req · {short}"
    return (
        f"{current['requests']} req · {percent(current['error_rate'])} 5xx · "
        f"p99 {milliseconds(current['p99_ms'])} · {short}"
    )
