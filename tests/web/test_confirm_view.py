"""The confirmation dialogs (GET) and their submission (POST), which validates and then
enqueues web.submit_action on the real Redis broker."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from dashboard.celery import app as celery_app
from dashboard.controlplane.models import Revision
from tests.conftest import free_port
from tests.controlplane.conftest import app_state
from tests.web.conftest import queued_task_ids, task_reached_redis
from tests.web.factories import make_app, make_revision, make_user

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


# Every field of the Scale dialog, as it shows the demo app's settings.
SCALE_FORM = {
    "keep_alive": 60,
    "min_concurrency": 0,
    "max_concurrency": 2,
    "concurrency_buffer": 0,
    "concurrency_buffer_perc": 0,
    "scaling_delay": 0,
    "request_timeout": 3600,
    "max_multiplexing": 1,
    "startup_timeout": 600,
    "machine_type": "XS",
}


def post(client: Client, url: str, **data):
    return client.post(url, {"key": str(uuid.uuid4()), **data}, **HTMX)


# -- the dialogs ----------------------------------------------------------------------


def test_the_rollback_dialog_shows_current_and_target_and_the_settings_that_change(deployer, demo):
    _app, old, current, _failed = demo
    response = deployer.get(f"/apps/demo/confirm/rollback?rev={old.short_id}", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'data-testid="rollback-current"' in html and current.short_id in html
    assert 'data-testid="rollback-target"' in html and old.short_id in html
    # The target's code asks for machine type S: a code-specific value that changes.
    assert html.count('data-testid="changed-setting"') == 1
    assert "machine_type" in html
    assert 'value="rolling"' in html and 'value="recreate"' in html
    assert "checked" in html.split('value="rolling"', 1)[1].split(">", 1)[0]
    assert 'name="csrfmiddlewaretoken"' in html


def test_the_rollback_dialog_keeps_runtime_tunable_values_from_the_alias(deployer):
    app = make_app("demo")
    app.settings = {**app.settings, "keep_alive": 300, "max_concurrency": 7}
    app.save()
    target = make_revision(app, code_settings={"keep_alive": 5, "max_concurrency": 1})
    make_revision(app, current=True)
    html = deployer.get(
        f"/apps/demo/confirm/rollback?rev={target.short_id}", **HTMX
    ).content.decode()
    assert 'data-testid="changed-setting"' not in html
    # Unchanged settings fold into one line, with the values they keep.
    unchanged = html.split('data-testid="unchanged-settings"', 1)[1].split("</details>", 1)[0]
    assert '<span class="k">keep_alive</span> 300' in unchanged
    assert '<span class="k">max_concurrency</span> 7' in unchanged


def test_the_rollback_settings_label_their_values_so_a_phone_can_stack_them(deployer, demo):
    _app, old, _current, _failed = demo
    html = deployer.get(f"/apps/demo/confirm/rollback?rev={old.short_id}", **HTMX).content.decode()
    table = html.split('data-testid="settings-diff"', 1)[1].split("</table>", 1)[0]
    rows = table.count("<tr") - 1  # Less the header row.
    assert rows == table.count('<td class="kind">')
    assert rows == table.count('data-label="Now"') == table.count('data-label="After"')


def test_the_delete_dialog_names_the_revision_and_says_it_cannot_be_undone(admin, demo):
    _app, old, _current, _failed = demo
    html = admin.get(f"/apps/demo/confirm/delete?rev={old.short_id}", **HTMX).content.decode()
    assert old.short_id in html
    assert "cannot be undone" in html


def test_the_rollout_dialog_warns_that_force_drops_requests_in_flight(deployer, demo):
    html = deployer.get("/apps/demo/confirm/rollout", **HTMX).content.decode()
    assert 'data-testid="force-warning"' in html
    assert "in flight are dropped" in html


def test_the_scale_dialog_shows_current_values_and_allowed_ranges(deployer, demo):
    html = deployer.get("/apps/demo/confirm/scale", **HTMX).content.decode()
    assert "now 2; most runners at once; allowed 1–1000" in html
    assert "allowed one of XS, S, M, L" in html
    # DESIGN.md §3: scaling a code-specific value lasts until the next deploy or set-rev.
    assert "A code-specific value changed here is reset by the next deploy or rollback." in html


def test_a_dialog_opened_without_htmx_is_a_full_page(deployer, demo):
    html = deployer.get("/apps/demo/confirm/rollout").content.decode()
    assert "<html" in html and 'data-testid="confirm-rollout"' in html
    assert '<a class="btn" href="/apps/demo/versions">Cancel</a>' in html  # Not a dialog's.


def test_an_error_shown_as_a_full_page_links_back(deployer, demo):
    html = deployer.get("/apps/demo/confirm/explode").content.decode()
    assert "Unknown action" in html
    assert '<a class="btn" href="/">Back to Apps</a>' in html
    assert "data-close-dialog" not in html


# -- roles ------------------------------------------------------------------------------


def test_a_viewer_gets_403_for_every_action_whatever_the_browser_sends(viewer, demo, empty_queue):
    _app, old, _current, _failed = demo
    before = app_state()
    for action in ("rollback", "delete", "suspend", "rollout", "scale"):
        needed = "Admin" if action in ("delete", "suspend") else "Deployer"
        why = f"This needs the {needed} role; you have Viewer."
        dialog = viewer.get(f"/apps/demo/confirm/{action}?rev={old.short_id}")
        assert dialog.status_code == 403 and why in dialog.content.decode()
        response = post(
            viewer, f"/apps/demo/confirm/{action}?rev={old.short_id}", strategy="rolling"
        )
        assert response.status_code == 403 and why in response.content.decode()
    assert queued_task_ids(empty_queue) == {}
    assert app_state() == before


def test_a_deployer_gets_403_for_admin_actions(deployer, demo, empty_queue):
    _app, old, _current, _failed = demo
    before = app_state()
    for action in ("delete", "suspend", "runner-kill"):
        response = post(deployer, f"/apps/demo/confirm/{action}?rev={old.short_id}")
        assert response.status_code == 403
        assert "This needs the Admin role; you have Deployer." in response.content.decode()
    assert queued_task_ids(empty_queue) == {}
    assert app_state() == before


def test_anonymous_visitors_are_sent_to_login(demo):
    assert Client().get("/apps/demo/confirm/rollout").status_code == 302


def test_a_csrf_less_post_is_refused(db, demo, empty_queue):
    _app, old, _current, _failed = demo
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("admin"))
    response = client.post(
        f"/apps/demo/confirm/delete?rev={old.short_id}", {"key": str(uuid.uuid4())}
    )
    assert response.status_code == 403
    assert "security token is missing or out of date" in response.content.decode()
    assert queued_task_ids(empty_queue) == {}


def test_a_refused_request_is_one_line_in_the_log_without_a_traceback(viewer, demo, caplog):
    assert viewer.get("/apps/demo/confirm/rollout").status_code == 403
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage() == "Forbidden (Permission denied): /apps/demo/confirm/rollout"
    assert record.exc_info is None


# -- bad input: a clear message and nothing enqueued ------------------------------------


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/apps/nope/confirm/rollout", 404, "There is no app named &#x27;nope&#x27;"),
        ("/apps/demo/confirm/rollback?rev=deadbeef", 404, "has no revision"),
        ("/apps/demo/confirm/rollback?rev=xyz", 400, "is not a revision id"),
        ("/apps/demo/confirm/explode", 404, "Unknown action"),
    ],
)
def test_bad_references_get_a_clear_error_and_nothing_is_enqueued(
    admin, demo, empty_queue, url, status, message
):
    response = post(admin, url)
    assert response.status_code == status
    assert message in response.content.decode()
    assert response["HX-Retarget"] == "#dialog-content"
    assert queued_task_ids(empty_queue) == {}


def test_another_apps_revision_is_refused(admin, demo, empty_queue):
    other = make_revision(make_app("other"))
    response = post(admin, f"/apps/demo/confirm/rollback?rev={other.short_id}", strategy="rolling")
    assert response.status_code == 404
    assert "belongs to app &#x27;other&#x27;, not &#x27;demo&#x27;" in response.content.decode()
    assert queued_task_ids(empty_queue) == {}


def test_deleting_the_current_revision_is_refused(admin, demo, empty_queue):
    _app, _old, current, _failed = demo
    response = post(admin, f"/apps/demo/confirm/delete?rev={current.short_id}")
    assert response.status_code == 409
    assert (
        f"revision {current.short_id} is Current for demo; set another revision first (set-rev)"
        " — the Current revision is never deleted"
    ) in response.content.decode()
    assert Revision.objects.filter(pk=current.pk).exists()
    assert queued_task_ids(empty_queue) == {}


@pytest.mark.parametrize("which", ["current", "failed"])
def test_rolling_back_to_the_current_or_a_failed_revision_is_refused(
    deployer, demo, empty_queue, which
):
    _app, _old, current, failed = demo
    rev = current if which == "current" else failed
    before = app_state()
    response = post(deployer, f"/apps/demo/confirm/rollback?rev={rev.short_id}", strategy="rolling")
    assert response.status_code == 409
    # The API's words: the dashboard and the API refuse by the same rule.
    why = {
        "current": f"revision {rev.short_id} is already Current for demo",
        "failed": f"revision {rev.short_id} is Failed",
    }[which]
    html = response.content.decode()
    assert why in html and "Nothing was changed." in html
    assert queued_task_ids(empty_queue) == {}
    assert app_state() == before


def test_an_out_of_range_scale_value_gets_a_precise_error_and_nothing_is_enqueued(
    deployer, demo, empty_queue
):
    values = {**SCALE_FORM, "keep_alive": 10, "min_concurrency": 5}
    response = post(deployer, "/apps/demo/confirm/scale", **values)
    html = response.content.decode()
    assert response.status_code == 200
    assert "min_concurrency=5 exceeds max_concurrency=2; allowed: 0–2" in html
    assert response["HX-Retarget"] == "#dialog-content"
    response = post(
        deployer,
        "/apps/demo/confirm/scale",
        **{**values, "min_concurrency": 0, "keep_alive": 99999},
    )
    assert "Ensure this value is less than or equal to 86400." in response.content.decode()
    assert queued_task_ids(empty_queue) == {}


def test_scale_sends_only_the_values_edited_in_the_dialog(deployer, demo, empty_queue):
    # The dialog showed keep_alive 60; someone set it to 300 before this was confirmed.
    app, *_ = demo
    app.settings = {**app.settings, "keep_alive": 300}
    app.save()
    shown = {**SCALE_FORM, "keep_alive": 60}
    key = str(uuid.uuid4())
    response = deployer.post(
        "/apps/demo/confirm/scale",
        {
            "key": key,
            **{f"initial-{name}": value for name, value in shown.items()},
            **shown,
            "max_concurrency": 3,
        },
        **HTMX,
    )
    assert response.status_code == 200
    assert task_reached_redis(empty_queue, key)
    queued = queued_task_ids(empty_queue).get(key)
    if queued is not None:  # Not yet taken by a worker of the live system.
        assert queued["args"][2]["values"] == {"max_concurrency": 3}


def test_the_scale_dialog_carries_the_values_it_shows(deployer, demo):
    html = deployer.get("/apps/demo/confirm/scale", **HTMX).content.decode()
    assert 'type="hidden" name="initial-keep_alive"' in html


def test_an_unknown_strategy_is_refused(deployer, demo, empty_queue):
    _app, old, _current, _failed = demo
    response = post(deployer, f"/apps/demo/confirm/rollback?rev={old.short_id}", strategy="yolo")
    assert "Select a valid choice" in response.content.decode()
    assert queued_task_ids(empty_queue) == {}


def test_a_runner_action_without_a_runner_asks_which(admin, demo, empty_queue):
    response = admin.get("/apps/demo/confirm/runner-kill", **HTMX)
    assert response.status_code == 400
    assert "Which runner? Give its id as ?runner=RUNNER_ID." in response.content.decode()


def test_runner_actions_say_the_runtime_is_unavailable(admin, demo, empty_queue):
    response = post(admin, "/apps/demo/confirm/runner-kill?runner=r-1")
    assert response.status_code == 503
    assert "runtime unavailable" in response.content.decode()
    assert queued_task_ids(empty_queue) == {}


# -- confirming enqueues the task ---------------------------------------------------------


def test_confirming_a_rollback_enqueues_the_task_on_redis_and_answers_a_progress_panel(
    deployer, demo, empty_queue
):
    _app, old, _current, _failed = demo
    key = str(uuid.uuid4())
    response = deployer.post(
        f"/apps/demo/confirm/rollback?rev={old.short_id}",
        {
            "key": key,
            "strategy": "recreate",
            "reason": "bad release",
            "expected_current": _current.short_id,
        },
        **HTMX,
    )
    assert response.status_code == 200
    assert "sb-dialog-close" in json.loads(response["HX-Trigger"])
    html = response.content.decode()
    assert 'data-testid="action-panel"' in html
    assert f'hx-get="/apps/demo/actions/{key}"' in html
    assert task_reached_redis(empty_queue, key)
    queued = queued_task_ids(empty_queue).get(key)
    if queued is not None:  # Not yet taken by a worker of the live system.
        assert queued["name"] == "web.submit_action"
        action, app, params, token, idempotency_key = queued["args"]
        assert (action, app, idempotency_key) == ("rollback", "demo", key)
        assert params == {
            "revision": str(old.id),
            "strategy": "recreate",
            "reason": "bad release",
            # The Current the dialog showed: the API refuses if it has moved since.
            "expected_current": _current.short_id,
        }
        assert token.startswith("sbd_")


def test_without_htmx_confirming_redirects_to_the_versions_page_with_the_panel(
    admin, demo, empty_queue
):
    _app, old, _current, _failed = demo
    key = str(uuid.uuid4())
    response = admin.post(f"/apps/demo/confirm/delete?rev={old.short_id}", {"key": key})
    assert response.status_code == 302
    assert response["Location"] == f"/apps/demo/versions?panel={key}"
    assert task_reached_redis(empty_queue, key)
    html = admin.get(response["Location"]).content.decode()
    assert f'id="panel-{key}"' in html


def test_when_redis_is_down_the_user_is_told_and_nothing_is_enqueued(
    deployer, demo, settings, empty_queue
):
    _app, old, _current, _failed = demo
    closed = f"redis://127.0.0.1:{free_port()}/0"
    # Read the live value first: Celery loads its configuration lazily from Django
    # settings, so reading it after the override would "restore" the closed port.
    previous = celery_app.conf.broker_url
    settings.CELERY_BROKER_URL = closed
    celery_app.conf.broker_url = closed
    try:
        response = post(
            deployer, f"/apps/demo/confirm/rollback?rev={old.short_id}", strategy="rolling"
        )
    finally:
        celery_app.conf.broker_url = previous
    assert response.status_code == 503
    assert "task queue unavailable — nothing was changed" in response.content.decode().lower()
    assert queued_task_ids(empty_queue) == {}
