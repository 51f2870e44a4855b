from __future__ import annotations

import pytest

from dashboard.controlplane.models import Operation, Revision
from tests.controlplane.conftest import add_revision, app_state, assert_refused

pytestmark = pytest.mark.django_db


def test_suspending_defaults_to_the_current_revision_and_says_the_app_answers_503(admin, demo_app):
    response = admin.post("apps/demo/suspend", {"reason": "incident"})
    assert response.status_code == 200
    body = response.json()
    assert body["revision"]["status"] == "suspended"
    assert body["revision"]["current"] is True
    assert any("503" in s["message"] for s in body["operation"]["steps"])
    assert admin.get("apps/demo").json()["status"] == "suspended"


def test_resuming_brings_a_suspended_revision_back_to_deployed(admin, demo_app):
    admin.post("apps/demo/suspend")
    response = admin.post("apps/demo/resume")
    assert response.status_code == 200
    assert Revision.objects.get(pk=demo_app.current_revision_id).status == "deployed"
    assert [op.kind for op in Operation.objects.order_by("created_at")] == ["suspend", "resume"]


def test_a_named_revision_can_be_suspended(admin, demo_app):
    other = add_revision(demo_app)
    response = admin.post("apps/demo/suspend", {"revision": other.short_id})
    assert response.status_code == 200
    other.refresh_from_db()
    assert other.status == "suspended"
    assert Revision.objects.get(pk=demo_app.current_revision_id).status == "deployed"


def test_only_a_deployed_revision_can_be_suspended(admin, demo_app):
    failed = add_revision(demo_app, status="failed")
    response = admin.post("apps/demo/suspend", {"revision": failed.short_id})
    assert response.status_code == 409
    assert "only a Deployed revision can be suspended" in response.json()["error"]["message"]
    assert not Operation.objects.exists()


def test_only_a_suspended_revision_can_be_resumed(admin, demo_app):
    before = app_state()
    response = admin.post("apps/demo/resume")
    assert_refused(response, 409, "only a Suspended revision can be resumed", before)


def test_suspend_needs_a_revision_when_the_app_has_no_current_one(admin, demo_app):
    demo_app.current_revision = None
    demo_app.save()
    before = app_state()
    response = admin.post("apps/demo/suspend")
    assert_refused(
        response, 409, "app 'demo' has no current revision; name the revision to suspend", before
    )
