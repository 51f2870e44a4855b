"""The dashboard and the control API answer a refusal alike: the same status and the same
message, from the control plane's one function, and nothing changes.

Each case asks both, as one admin: the dashboard's confirmation dialog (which refuses
before anything is enqueued) and the API call the dialog's task would make.
"""

from __future__ import annotations

import html
import json
import uuid
from urllib.parse import urlencode

import pytest
from django.test import Client

from dashboard.controlplane.models import ApiToken, App, Operation, Revision, Role
from tests.web.conftest import queued_task_ids
from tests.web.factories import make_app, make_revision, make_user

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


class Both:
    """One admin, signed in to the dashboard and holding an API token."""

    def __init__(self):
        user = make_user(Role.ADMIN)
        self.page = Client()
        self.page.force_login(user)
        _, self.token = ApiToken.issue(user, "test", Role.ADMIN)

    def confirm(self, action: str, query: dict, **data):
        url = f"/apps/demo/confirm/{action}?{urlencode(query)}"
        return self.page.post(url, {"key": str(uuid.uuid4()), **data}, **HTMX)

    def api(self, method: str, path: str, body: dict | None = None):
        return Client().generic(
            method,
            "/api/v1/" + path,
            data=json.dumps(body or {}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.token}", "X-Switchboard-Source": "cli"},
        )


@pytest.fixture
def both(db) -> Both:
    return Both()


def snapshot() -> tuple:
    app = App.objects.get(name="demo")
    revisions = sorted(Revision.objects.values_list("id", "status", "pinned"))
    return app.current_revision_id, app.previous_revision_id, revisions


def assert_alike(page, api, status: int) -> str:
    """Both answered `status` with the API's message, which the page shows; returns it."""
    message = api.json()["error"]["message"]
    assert (page.status_code, api.status_code) == (status, status)
    assert html.escape(message) in page.content.decode(), message
    return message


def _another_apps(demo) -> str:
    return make_revision(make_app("other")).short_id


def _ambiguous(demo) -> str:
    app = demo[0]
    for n in (1, 2):
        make_revision(app, id=uuid.UUID(f"abcdef12{n:024x}"))
    return "abcdef12"


@pytest.mark.parametrize(
    ("make_ref", "status", "words"),
    [
        (_another_apps, 404, "belongs to app 'other', not 'demo'"),
        (lambda demo: "0123456789", 404, "app 'demo' has no revision '0123456789'"),
        (_ambiguous, 400, "is ambiguous in app 'demo'"),
        (lambda demo: "abc123", 400, "is too short"),
        (lambda demo: "xyz!", 400, "is not a revision id"),
    ],
    ids=["another-app", "unknown", "ambiguous", "too-short", "not-hex"],
)
def test_a_revision_reference_is_resolved_alike(both, demo, empty_queue, make_ref, status, words):
    ref = make_ref(demo)
    before = snapshot()
    page = both.confirm("rollback", {"rev": ref}, strategy="rolling")
    api = both.api("POST", "apps/demo/set-rev", {"revision": ref, "strategy": "rolling"})
    assert words in assert_alike(page, api, status)
    assert snapshot() == before
    assert not Operation.objects.exists()
    assert queued_task_ids(empty_queue) == {}


# -- refusals: the control plane's one rule (controlplane/refusals.py) --------------------


def _pinned(rev: Revision) -> Revision:
    rev.pinned, rev.pinned_at = True, rev.created_at
    rev.save(update_fields=["pinned", "pinned_at"])
    return rev


@pytest.mark.parametrize(
    ("action", "api_call", "which", "words"),
    [
        (
            "delete",
            ("DELETE", "apps/demo/revisions/{rev}", {}),
            "current",
            "the Current revision is never deleted",
        ),
        (
            "rollback",
            ("POST", "apps/demo/set-rev", {"revision": "{rev}", "strategy": "rolling"}),
            "failed",
            "a Failed revision can never become Current",
        ),
        (
            "rollback",
            ("POST", "apps/demo/set-rev", {"revision": "{rev}", "strategy": "recreate"}),
            "current",
            "is already Current for demo",
        ),
        (
            "suspend",
            ("POST", "apps/demo/suspend", {"revision": "{rev}"}),
            "failed",
            "only a Deployed revision can be suspended",
        ),
        (
            "resume",
            ("POST", "apps/demo/resume", {"revision": "{rev}"}),
            "old",
            "only a Suspended revision can be resumed",
        ),
        ("pin", ("POST", "apps/demo/revisions/{rev}/pin", {}), "pinned", "is already pinned by"),
        (
            "delete",
            ("DELETE", "apps/demo/revisions/{rev}", {}),
            "pinned",
            "a pinned revision is never deleted",
        ),
    ],
    ids=[
        "delete-current",
        "set-rev-failed",
        "set-rev-current",
        "suspend-failed",
        "resume-deployed",
        "pin-pinned",
        "delete-pinned",
    ],
)
def test_a_refused_revision_action_says_the_same_and_changes_nothing(
    both, demo, empty_queue, action, api_call, which, words
):
    _app, old, current, failed = demo
    rev = (
        _pinned(old)
        if which == "pinned"
        else {"current": current, "failed": failed}.get(which, old)
    )
    method, path, body = api_call
    body = {k: v.format(rev=rev.short_id) for k, v in body.items()}
    before = snapshot()

    page = both.confirm(action, {"rev": rev.short_id}, strategy="rolling")
    api = both.api(method, path.format(rev=rev.short_id), body)

    assert words in assert_alike(page, api, 409)
    assert snapshot() == before
    assert not Operation.objects.exists()
    assert queued_task_ids(empty_queue) == {}


def test_releasing_an_app_that_is_not_held_is_refused_alike(both, demo, empty_queue):
    before = snapshot()
    page = both.confirm("release", {})
    api = both.api("POST", "apps/demo/release")
    assert "is not held; there is no hold to release" in assert_alike(page, api, 409)
    assert snapshot() == before and not Operation.objects.exists()
    assert queued_task_ids(empty_queue) == {}


def test_rolling_out_a_suspended_current_is_refused_alike(both, demo, empty_queue):
    _app, _old, current, _failed = demo
    Revision.objects.filter(pk=current.pk).update(status="suspended")
    before = snapshot()
    page = both.confirm("rollout", {}, mode="graceful")
    api = both.api("POST", "apps/demo/rollout", {"force": False})
    assert "resume it before rolling out" in assert_alike(page, api, 409)
    assert snapshot() == before and not Operation.objects.exists()
    assert queued_task_ids(empty_queue) == {}


def test_a_runner_action_with_the_runtime_down_says_the_same_and_changes_nothing(
    both, demo, empty_queue
):
    page = both.confirm("runner-kill", {"runner": "r-1a2b3c4d"})
    api = both.api("POST", "runners/r-1a2b3c4d/kill")
    message = assert_alike(page, api, 503)
    assert message.startswith("runtime unavailable: cannot connect to")
    assert api.json()["error"]["code"] == "runtime_unavailable"
    assert not Operation.objects.exists()
    assert queued_task_ids(empty_queue) == {}
