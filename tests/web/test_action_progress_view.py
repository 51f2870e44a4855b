"""The progress panel of one submitted action, polled by htmx every second."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from dashboard.celery import app as celery_app
from dashboard.controlplane.models import OperationKind, OperationState, Source
from dashboard.web import progress
from dashboard.web.actions import ActionFailed
from tests.web.factories import make_operation, make_user

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def deployer_user(db):
    return make_user("deployer")


@pytest.fixture
def client_of(deployer_user) -> Client:
    client = Client()
    client.force_login(deployer_user)
    return client


def test_a_running_operation_shows_its_timestamped_steps_and_keeps_polling(
    client_of, deployer_user, demo
):
    app, old, _current, _failed = demo
    key = str(uuid.uuid4())
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.RUNNING,
        requester=deployer_user,
        source=Source.DASHBOARD,
        idempotency_key=key,
        steps=("starting a runner on the target", "waiting for health"),
    )
    response = client_of.get(f"/apps/demo/actions/{key}", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert f'hx-get="/apps/demo/actions/{key}"' in html and 'data-poll="1000"' in html
    assert "starting a runner on the target" in html and "waiting for health" in html
    assert html.count("<time datetime=") == 2


def test_an_operation_without_steps_yet_is_shown_queued_and_keeps_polling(
    client_of, deployer_user, demo
):
    app, old, _current, _failed = demo
    key = str(uuid.uuid4())
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.QUEUED,
        requester=deployer_user,
        idempotency_key=key,
    )
    response = client_of.get(f"/apps/demo/actions/{key}", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-state="queued"' in html and f'hx-get="/apps/demo/actions/{key}"' in html
    assert "Waiting for the first step" in html and "<time datetime=" not in html


def test_a_panel_shows_only_its_requesters_operation(client_of, demo):
    # Another user's key finds nothing, steps or none: the key is the requester's own.
    app, old, _current, _failed = demo
    key = str(uuid.uuid4())
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.RUNNING,
        requester=make_user("deployer"),
        idempotency_key=key,
        steps=("their step",),
    )
    response = client_of.get(f"/apps/demo/actions/{key}")
    assert response.status_code == 404
    html = response.content.decode()
    assert "You submitted no action with this key" in html and "their step" not in html


def test_a_finished_operation_answers_286_to_stop_polling(client_of, deployer_user, demo):
    app, old, _current, _failed = demo
    key = str(uuid.uuid4())
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.FAILED,
        requester=deployer_user,
        idempotency_key=key,
        error="the target failed its health check",
    )
    response = client_of.get(f"/apps/demo/actions/{key}", **HTMX)
    assert response.status_code == 286
    html = response.content.decode()
    assert "hx-get" not in html
    assert "the target failed its health check" in html
    # The page's tables refresh at once rather than at their next poll.
    assert "sb-refresh" in json.loads(response.headers["HX-Trigger"])


def test_before_the_operation_exists_it_shows_the_tasks_failure_message(
    client_of, deployer_user, demo
):
    key = str(uuid.uuid4())
    # What a worker stores when the control API refused: written to the real Redis backend.
    celery_app.backend.store_result(key, ActionFailed("Revision 1234abcd is Failed"), "FAILURE")
    progress.remember(key, deployer_user.pk, "Roll back 1234abcd")
    response = client_of.get(f"/apps/demo/actions/{key}", **HTMX)
    assert response.status_code == 286
    html = response.content.decode()
    assert "Revision 1234abcd is Failed" in html
    assert "Roll back 1234abcd" in html and "Not applied" in html


def test_once_the_task_reports_its_operation_the_panel_follows_that_operation(
    client_of, deployer_user, demo
):
    # The API answered with an operation under another key (e.g. one it already had).
    app, old, _current, _failed = demo
    op = make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.SUCCEEDED,
        requester=deployer_user,
        idempotency_key=str(uuid.uuid4()),
        steps=("alias moved",),
    )
    key = str(uuid.uuid4())
    celery_app.backend.store_result(key, str(op.id), "SUCCESS")
    response = client_of.get(f"/apps/demo/actions/{key}", **HTMX)
    assert response.status_code == 286
    html = response.content.decode()
    assert "alias moved" in html and old.id.hex[:8] in html


def test_a_queued_task_keeps_polling_under_the_actions_title(client_of, deployer_user, demo):
    key = str(uuid.uuid4())
    progress.remember(key, deployer_user.pk, "Roll back 1234abcd")  # As confirming does.
    response = client_of.get(f"/apps/demo/actions/{key}", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Queued" in html and "Roll back 1234abcd" in html and "hx-get" in html


def test_a_key_nobody_submitted_stops_polling_at_once(client_of, demo):
    # Celery says PENDING for unknown task ids too; the panel must not say Queued for ever.
    key = str(uuid.uuid4())
    response = client_of.get(f"/apps/demo/actions/{key}", **HTMX)
    assert response.status_code == 286
    html = response.content.decode()
    assert "no action with this key" in html and "hx-get" not in html
    page = client_of.get(f"/apps/demo/actions/{key}")
    assert page.status_code == 404
    assert "no action with this key" in page.content.decode()


def test_another_users_submission_is_unknown_to_this_user(client_of, demo):
    key = str(uuid.uuid4())
    progress.remember(key, make_user("admin").pk, "Delete revision 1234abcd")
    html = client_of.get(f"/apps/demo/actions/{key}", **HTMX).content.decode()
    assert "no action with this key" in html and "1234abcd" not in html


def test_the_panel_names_what_the_operation_acts_on(client_of, deployer_user, demo):
    app, old, _current, _failed = demo
    deleted = uuid.uuid4()  # Its revision row is gone once the delete succeeded.
    for kind, params, shown in (
        (
            OperationKind.DELETE_REV,
            {"revision": str(deleted)},
            f"Delete revision {deleted.hex[:8]}",
        ),
        (
            OperationKind.RUNNER_KILL,
            {"runner": "r-7f3a", "revision": str(old.id)},
            "Kill runner r-7f3a",
        ),
    ):
        key = str(uuid.uuid4())
        make_operation(app, kind, params=params, requester=deployer_user, idempotency_key=key)
        html = client_of.get(f"/apps/demo/actions/{key}", **HTMX).content.decode()
        assert f"<strong>{shown}</strong>" in html  # As its dialog was titled.


def test_another_users_operation_is_not_shown(client_of, demo):
    app, old, _current, _failed = demo
    key = str(uuid.uuid4())
    make_operation(
        app,
        OperationKind.ROLLOUT,
        requester=make_user("admin"),
        idempotency_key=key,
        steps=("secret step",),
    )
    assert "secret step" not in client_of.get(f"/apps/demo/actions/{key}", **HTMX).content.decode()


def test_a_malformed_key_is_a_400(client_of, demo):
    response = client_of.get("/apps/demo/actions/not-a-key", **HTMX)
    assert response.status_code == 400
    assert "is not an action key" in response.content.decode()


def test_anonymous_visitors_are_sent_to_login(demo):
    assert Client().get(f"/apps/demo/actions/{uuid.uuid4()}").status_code == 302


def test_the_poll_costs_a_handful_of_queries(
    client_of, deployer_user, demo, django_assert_num_queries
):
    app, old, _current, _failed = demo
    key = str(uuid.uuid4())
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.RUNNING,
        requester=deployer_user,
        idempotency_key=key,
        steps=("a", "b", "c"),
    )
    # The user, and the operation with its steps (dashboard/web/progress.py): however many
    # steps; the session comes from Redis (dashboard/web/sessions.py), not from a query.
    with django_assert_num_queries(2):
        client_of.get(f"/apps/demo/actions/{key}", **HTMX)
