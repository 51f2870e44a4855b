"""Revisions that are not Current never keep runners alive past their own keep_alive
(issue 13; Knative's trap: old revisions with a minimum scale running forever)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dashboard import runner_states
from dashboard.controlplane.models import App
from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example

pytestmark = pytest.mark.django_db(transaction=True)


def _idle_window(runner: dict) -> timedelta:
    return datetime.fromisoformat(runner["idle_shutdown_at"]) - datetime.fromisoformat(
        runner["idle_since"]
    )


def _idle_with_deadline(runtime, runner_id: str) -> dict:
    return wait_until(
        lambda: (r := runtime.runner(runner_id))["state"] == "IDLE" and r["idle_shutdown_at"] and r,
        what=f"runner {runner_id} to idle with a shutdown time",
    )


def test_an_old_revision_called_by_its_url_stops_after_its_own_keep_alive(runtime):
    app = App.objects.create(name="demo", auth_mode="public")
    # min_concurrency 2 on the old revision: it must not hold a runner of a non-Current one.
    old = deploy_example(app, "demo", keep_alive=1, min_concurrency=2, max_concurrency=2)
    new = deploy_example(app, "demo", keep_alive=300)
    # The runtime routes the app to the new revision first: only then is the old one
    # "not Current" there (before, its URL would name the app's Current revision).
    wait_until(
        lambda: (
            runtime.gateway("GET", "/demo/version").headers.get("X-Switchboard-Revision")
            == str(new.id)
        ),
        what="the runtime to route the app to its new Current revision",
    )

    response = runtime.gateway("GET", f"/demo@{old.id.hex[:8]}/version")
    assert response.status_code == 200, response.text
    runner_id = response.headers["X-Switchboard-Runner"]

    idle = _idle_with_deadline(runtime, runner_id)
    assert _idle_window(idle) == timedelta(seconds=1)  # Not max(keep_alive, 60 s).
    gone = runtime.wait_state(runner_id, "TERMINATED")
    assert gone["revision"] == str(old.id)
    # Nothing started it again: min_concurrency applies to the Current revision only.
    assert not [
        r
        for r in runtime.runners("demo")
        if r["revision"] == str(old.id) and r["state"] not in runner_states.GONE
    ]


def test_a_rolling_switchs_target_keeps_a_grace_until_the_alias_moves(runtime):
    app = App.objects.create(name="demo", auth_mode="public")
    target = deploy_example(app, "demo", current=False, keep_alive=1)
    deploy_example(app, "demo", keep_alive=300)

    # What a rolling set-rev does: start a runner keyed by its operation, then wait for it.
    body = {"count": 1, "key": "op-1:start", "settings": None}
    started = runtime.admin("POST", f"/revisions/{target.id}/runners", json=body)
    assert started.status_code == 201, started.text
    runner_id = started.json()["runners"][0]["id"]

    idle = _idle_with_deadline(runtime, runner_id)
    assert _idle_window(idle) == timedelta(seconds=60)
