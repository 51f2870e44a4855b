"""web.submit_action: a real Celery worker runs it against the live control API."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from dashboard.celery import app as celery_app
from dashboard.controlplane import tokens
from dashboard.controlplane.models import App, Operation, OperationState
from dashboard.web import progress
from dashboard.web.tasks import submit_action
from tests.conftest import wait_until
from tests.web.factories import make_app, make_revision, make_user

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_task_is_registered_under_its_explicit_name():
    assert submit_action.name == "web.submit_action"
    assert celery_app.tasks["web.submit_action"].run is submit_action.run


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_a_confirmed_recreate_rollback_moves_the_alias_through_the_worker_and_the_api(system):
    app = make_app("webroll")
    old = make_revision(app, message="the good one")
    make_revision(app, message="the bad one", current=True)
    user = make_user("deployer")
    client = Client()
    client.force_login(user)
    key = str(uuid.uuid4())

    response = client.post(
        f"/apps/webroll/confirm/rollback?rev={old.short_id}",
        {"key": key, "strategy": "recreate", "reason": "bad release"},
        **HTMX,
    )
    assert response.status_code == 200

    wait_until(
        lambda: App.objects.get(pk=app.pk).current_revision_id == old.id,
        what="the alias to move to the rollback target",
    )
    op = Operation.objects.get(requester=user, idempotency_key=key)
    assert (op.kind, op.source, op.reason) == ("set_rev", "dashboard", "bad release")
    final = wait_until(
        lambda: (r := client.get(f"/apps/webroll/actions/{key}", **HTMX)).status_code == 286 and r,
        what="the progress panel to stop polling",
    )
    assert 'data-state="succeeded"' in final.content.decode()


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_an_api_refusal_reaches_the_progress_panel_with_the_apis_message(system):
    app = make_app("webfail")
    failed = make_revision(app, "failed", message="broken")
    make_revision(app, current=True)
    user = make_user("deployer")
    client = Client()
    client.force_login(user)
    key = str(uuid.uuid4())
    # The dashboard itself refuses a Failed target; enqueue directly, as if the revision
    # had failed between the dialog's check and the worker's call.
    params = {"revision": str(failed.id), "strategy": "recreate", "reason": ""}
    progress.remember(key, user.pk, f"Roll back {failed.short_id}")
    submit_action.apply_async(
        args=["rollback", "webfail", params, tokens.issue_dashboard_token(user), key], task_id=key
    )
    final = wait_until(
        lambda: (r := client.get(f"/apps/webfail/actions/{key}", **HTMX)).status_code == 286 and r,
        what="the task's failure to reach the panel",
    )
    html = final.content.decode()
    assert 'data-testid="op-error"' in html
    assert "a Failed revision can never become Current" in html
    assert f"Roll back {failed.short_id}" in html and "Not applied" in html
    # An expected refusal: the worker logs it in one line, not as an unexpected error.
    assert "raised unexpected: ActionFailed" not in system.log("worker")
    assert App.objects.get(pk=app.pk).current_revision_id != failed.id
    assert not Operation.objects.filter(requester=user, state=OperationState.SUCCEEDED).exists()
