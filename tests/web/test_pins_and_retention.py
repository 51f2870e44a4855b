"""The Versions page's Pinned badge, its Pin/Unpin action and the Retention settings
dialog: each dialog validates, then enqueues web.submit_action on the real broker; the
live test follows a Pin through the worker and the control API."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.controlplane.models import App, Operation, Revision, Role
from tests.conftest import wait_until
from tests.controlplane.conftest import app_state
from tests.web.conftest import queued_task_ids, task_reached_redis
from tests.web.factories import make_app, make_revision, make_user

HTMX = {"HTTP_HX_REQUEST": "true"}


def _pin(revision: Revision, username: str = "pinner") -> None:
    Revision.objects.filter(pk=revision.pk).update(
        pinned=True, pinned_by=make_user(Role.DEPLOYER, username), pinned_at=timezone.now()
    )


def _row(html: str, revision: Revision) -> str:
    start = html.index(f'data-revision="{revision.short_id}"')
    return html[start : html.index("</tr>", start)]


@pytest.mark.django_db
def test_a_pinned_revision_has_a_pinned_badge_saying_who_pinned_it(viewer, demo):
    _app, old, current, _failed = demo
    _pin(old)

    html = viewer.get("/apps/demo/versions").content.decode()

    row = _row(html, old)
    assert 'data-testid="pinned-badge"' in row
    assert 'title="pinned by pinner at ' in row
    assert 'data-testid="pinned-badge"' not in _row(html, current)


@pytest.mark.django_db
def test_the_pin_action_is_offered_to_deployers_and_unpin_on_pinned_revisions(deployer, demo):
    _app, old, current, _failed = demo
    _pin(old)

    html = deployer.get("/apps/demo/versions").content.decode()

    assert 'data-testid="unpin-button"' in _row(html, old)
    assert f"/apps/demo/confirm/pin?rev={current.short_id}" in _row(html, current)


@pytest.mark.django_db
def test_the_delete_button_of_a_pinned_revision_is_disabled_and_says_why(admin, demo):
    _app, old, _current, _failed = demo
    _pin(old)

    row = _row(admin.get("/apps/demo/versions").content.decode(), old)

    assert 'aria-disabled="true"' in row
    assert f"revision {old.short_id} is pinned (pinned by" in row
    assert "unpin it first — a pinned revision is never deleted" in row


@pytest.mark.django_db
def test_the_pin_dialog_enqueues_the_action(deployer, demo, empty_queue):
    _app, old, _current, _failed = demo
    dialog = deployer.get(f"/apps/demo/confirm/pin?rev={old.short_id}", **HTMX).content.decode()
    assert "Retention never deletes a pinned revision" in dialog
    key = str(uuid.uuid4())

    response = deployer.post(
        f"/apps/demo/confirm/pin?rev={old.short_id}", {"key": key, "reason": "good"}, **HTMX
    )

    assert response.status_code == 200
    assert task_reached_redis(empty_queue, key)
    queued = queued_task_ids(empty_queue).get(key)
    if queued is not None:  # Not yet taken by a worker of the live system.
        assert queued["args"][:3] == ["pin", "demo", {"reason": "good", "revision": str(old.id)}]


@pytest.mark.django_db
def test_pinning_a_pinned_revision_is_refused_and_nothing_is_enqueued(deployer, demo, empty_queue):
    _app, old, _current, _failed = demo
    _pin(old)

    response = deployer.post(f"/apps/demo/confirm/pin?rev={old.short_id}", {"key": uuid.uuid4()})

    assert response.status_code == 409
    assert f"revision {old.short_id} is already pinned by" in response.content.decode()
    assert queued_task_ids(empty_queue) == {}


@pytest.mark.django_db
def test_a_viewer_may_not_pin(viewer, demo, empty_queue):
    _app, old, _current, _failed = demo
    before = app_state()
    response = viewer.post(f"/apps/demo/confirm/pin?rev={old.short_id}", {"key": uuid.uuid4()})
    assert response.status_code == 403
    assert "This needs the Deployer role; you have Viewer." in response.content.decode()
    assert queued_task_ids(empty_queue) == {}
    assert app_state() == before


@pytest.mark.django_db
def test_the_retention_dialog_shows_the_settings_and_what_they_would_delete(admin, demo):
    app, *_ = demo
    App.objects.filter(pk=app.pk).update(retention_keep=1)
    ancient = [make_revision(app, age=timedelta(days=d)) for d in (1, 2, 3)]
    assert 'data-testid="retention-button"' in admin.get("/apps/demo/versions").content.decode()

    html = admin.get("/apps/demo/confirm/retention", **HTMX).content.decode()

    assert 'name="keep" value="1"' in html
    assert 'name="enabled"' in html and "checked" in html
    # Kept: the newest (the Failed one), and the last 3 Deployed (Current, old, ancient[0]).
    assert "2 revision(s) would be deleted" in html
    for gone in ancient[1:]:
        assert f"<code>{gone.short_id}</code> older than the newest 1, not protected" in html
    assert ancient[0].short_id not in html


@pytest.mark.django_db
def test_a_retention_value_out_of_range_is_refused_in_the_dialog(admin, demo, empty_queue):
    response = admin.post(
        "/apps/demo/confirm/retention", {"key": uuid.uuid4(), "keep": 0, "enabled": "on"}, **HTMX
    )

    assert response.status_code == 200  # The dialog again, with the error.
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    assert queued_task_ids(empty_queue) == {}
    assert App.objects.get(name="demo").retention_keep == 20


@pytest.mark.django_db
def test_retention_is_an_admin_action(deployer, demo, empty_queue):
    assert (
        'data-testid="retention-button"' not in deployer.get("/apps/demo/versions").content.decode()
    )
    before = app_state()
    response = deployer.post("/apps/demo/confirm/retention", {"key": uuid.uuid4(), "keep": 5})
    assert response.status_code == 403
    assert "This needs the Admin role; you have Deployer." in response.content.decode()
    assert queued_task_ids(empty_queue) == {}
    assert app_state() == before


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_a_confirmed_pin_goes_through_the_worker_and_the_api(system):
    app = make_app("webpin")
    old = make_revision(app, message="keep me")
    make_revision(app, message="current", current=True)
    user = make_user(Role.DEPLOYER, "pinning-deployer")
    client = Client()
    client.force_login(user)
    key = str(uuid.uuid4())

    response = client.post(
        f"/apps/webpin/confirm/pin?rev={old.short_id}",
        {"key": key, "reason": "rollback target"},
        **HTMX,
    )
    assert response.status_code == 200

    wait_until(lambda: Revision.objects.get(pk=old.pk).pinned, what="the revision to be pinned")
    op = Operation.objects.get(requester=user, idempotency_key=key)
    assert (op.kind, op.source, op.reason, op.state) == (
        "pin",
        "dashboard",
        "rollback target",
        "succeeded",
    )
    assert Revision.objects.get(pk=old.pk).pinned_by == user
    html = client.get("/apps/webpin/versions").content.decode()
    assert 'data-testid="pinned-badge"' in _row(html, old)
