"""The Runners page and its Stop and Kill dialogs against the real runtime: a deployed
app's runner is listed with its state, in-flight count and uptime, and the dialogs stop
and kill it through the Celery task, the control API, the worker and the runtime."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from django.test import Client

from dashboard.api_client import ControlApi
from dashboard.cli import bundle
from dashboard.controlplane.models import ApiToken, Role
from dashboard.runner_states import GONE
from tests.conftest import System, wait_until
from tests.web.factories import make_user

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HTMX = {"HTTP_HX_REQUEST": "true"}
APP = "runners-live"


def cells(html: str, runner_id: str) -> list[str]:
    """The text of each cell of the runner's row on the Runners page."""
    row = html.split(f'data-runner="{runner_id}"', 1)[1].split("</tr>", 1)[0]
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


def runner(api: ControlApi, runner_id: str) -> dict | None:
    return next((r for r in api.runners(APP) if r["id"] == runner_id), None)


def one_runner(api: ControlApi, state: str, other_than: set[str] = frozenset()) -> dict:
    return wait_until(
        lambda: next(
            (r for r in api.runners(APP) if r["state"] == state and r["id"] not in other_than),
            None,
        ),
        timeout=60,
        what=f"a {state} runner of {APP}",
    )


def confirm(client: Client, action: str, runner_id: str, **fields) -> str:
    """Open the dialog, check it names the runner, submit it; the answer's HTML."""
    url = f"/apps/{APP}/confirm/{action}?runner={runner_id}"
    dialog = client.get(url, **HTMX)
    assert dialog.status_code == 200 and runner_id in dialog.content.decode()
    submitted = client.post(url, {"key": str(uuid.uuid4()), **fields}, **HTMX)
    assert submitted.status_code == 200, submitted.content.decode()[:500]
    return submitted.content.decode()


def test_the_runners_page_shows_a_live_runner_and_its_dialogs_stop_and_kill_it(
    system: System,
):
    user = make_user(Role.ADMIN)
    _, token = ApiToken.issue(user, "runners page test", "admin")
    api = ControlApi(system.api_url, token, source="api", timeout=60)
    data, entry = bundle.build(str(EXAMPLES / "slow_endpoint/app.py::SlowEndpoint"))
    op = api.deploy(APP, data, entry, auth_mode="public")["operation"]
    done = wait_until(
        lambda: (seen := api.get_operation(op["id"]))["finished_at"] and seen,
        timeout=90,
        what="the rolling deploy",
    )
    assert done["state"] == "succeeded", done
    first = one_runner(api, "IDLE")

    # A request in flight on it: the page shows it RUNNING with 1 in flight.
    answers: list[int] = []
    call = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{system.gateway_url}/{APP}/", json={"seconds": 60}, timeout=90).status_code
        )
    )
    call.start()
    wait_until(
        lambda: (r := runner(api, first["id"])) and r["in_flight"] == 1,
        what="the request to be in flight on the runner",
    )
    admin = Client()
    admin.force_login(user)
    page = admin.get(f"/apps/{APP}/runners").content.decode()
    assert 'data-testid="runtime-unavailable"' not in page
    assert f'data-runner="{first["id"]}"' in page and 'data-state="RUNNING"' in page
    runner_id, state, revision, in_flight, uptime, *_ = cells(page, first["id"])
    assert runner_id == first["id"] and "Running" in state
    assert revision == first["revision"][:8]
    assert in_flight == "1"
    assert re.search(r"\d", uptime), uptime  # How long it has been up, e.g. "3s".

    # Kill: the runner ends at once and its in-flight request is dropped.
    confirm(admin, "runner-kill", first["id"])
    wait_until(
        lambda: (r := runner(api, first["id"])) is None or r["state"] in GONE,
        timeout=60,
        what="the killed runner to be gone",
    )
    call.join(90)
    assert answers and answers[0] >= 500  # Dropped, as a kill drops in-flight requests.
    page = admin.get(f"/apps/{APP}/runners").content.decode()
    if f'data-runner="{first["id"]}"' in page:  # Still listed as ended: no actions left.
        assert (
            "runner-kill"
            not in page.split(f'data-runner="{first["id"]}"', 1)[1].split("</tr>", 1)[0]
        )

    # Stop with a replacement: a new runner becomes ready first, then the old one stops.
    assert httpx.post(f"{system.gateway_url}/{APP}/", json={"seconds": 0}, timeout=90).is_success
    second = one_runner(api, "IDLE", other_than={first["id"]})
    confirm(admin, "runner-stop", second["id"], replace="on")
    wait_until(
        lambda: (r := runner(api, second["id"])) is None or r["state"] in GONE,
        timeout=60,
        what="the stopped runner to be gone",
    )
    replacement = one_runner(api, "IDLE", other_than={first["id"], second["id"]})
    page = admin.get(f"/apps/{APP}/runners").content.decode()
    assert f'data-runner="{replacement["id"]}"' in page
    assert "Idle" in cells(page, replacement["id"])[1]
    # Both came from the dashboard, as its user, and are in the app's History.
    ops = {o["kind"]: o for o in api.history(APP)["operations"]}
    for kind in ("runner_kill", "runner_stop"):
        assert ops[kind]["state"] == "succeeded" and ops[kind]["source"] == "dashboard"
        assert ops[kind]["requester"] == user.get_username()
    assert ops["runner_stop"]["params"]["replace"] is True
