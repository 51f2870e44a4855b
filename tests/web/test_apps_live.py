"""The Apps page's runner counts against the real runtime: a deployed app with a Current
revision serving from a warm runner, and a newer Failed revision whose runner failed."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from dashboard.api_client import ControlApi
from dashboard.cli import bundle
from dashboard.controlplane.models import ApiToken
from tests.conftest import wait_until
from tests.web.factories import make_user

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def deploy(api: ControlApi, app: str, entrypoint: str) -> dict:
    """A rolling deploy (it starts a runner), waited for; its finished operation."""
    data, entry = bundle.build(str(EXAMPLES / entrypoint))
    op = api.deploy(app, data, entry, message=entrypoint)["operation"]
    return wait_until(
        lambda: (done := api.get_operation(op["id"]))["finished_at"] and done,
        timeout=60,
        what="the deploy to finish",
    )


def counts_cell(html: str, app: str) -> str:
    row = html.split(f'data-app="{app}"', 1)[1].split("</tr>", 1)[0]
    return row.split('data-label="Runners (Current)">', 1)[1].split("</td>", 1)[0]


def test_the_apps_page_counts_the_current_revisions_runners_not_a_failed_ones(system):
    admin = make_user("admin")
    _, token = ApiToken.issue(admin, "apps page test", "admin")
    api = ControlApi(system.api_url, token, source="api", timeout=60)
    assert deploy(api, "counted", "demo/app.py::Demo")["state"] == "succeeded"
    assert deploy(api, "counted", "broken_setup/app.py::BrokenSetup")["state"] == "failed"
    states = {r["state"] for r in api.runners("counted")}
    assert "FAILED" in states and states & {"IDLE", "RUNNING"}

    viewer = Client()
    viewer.force_login(make_user("viewer"))
    counts = counts_cell(viewer.get("/").content.decode(), "counted")
    assert "1 Idle" in counts or "1 Running" in counts
    assert "Failed" not in counts  # The app serves fine on its Current revision.
