from __future__ import annotations

import pytest

from dashboard.controlplane import executors
from dashboard.controlplane.models import Operation, Revision
from tests.controlplane.conftest import add_revision, app_state, assert_refused

pytestmark = pytest.mark.django_db


def test_deleting_the_current_revision_is_refused_and_nothing_changes(admin, demo_app):
    current = demo_app.current_revision
    before = app_state()
    response = admin.delete(f"apps/demo/revisions/{current.short_id}")
    error = assert_refused(response, 409, f"revision {current.short_id} is Current", before)
    assert error["code"] == "revision_is_current"
    assert "is Current for demo" in error["message"]
    assert Revision.objects.filter(pk=current.pk).exists()
    assert not Operation.objects.exists()


def test_deleting_the_target_of_an_operation_in_progress_is_refused(admin, demo_app):
    target = add_revision(demo_app)
    # rolling: with no worker here it stays queued, the operation in progress.
    set_rev = admin.post("apps/demo/set-rev", {"revision": target.short_id})
    assert (set_rev.status_code, set_rev.json()["operation"]["state"]) == (202, "queued")
    before = app_state()
    response = admin.delete(f"apps/demo/revisions/{target.short_id}")
    assert_refused(response, 409, "is the target of set-rev operation", before)
    assert Revision.objects.filter(pk=target.pk).exists()


def test_deleting_an_old_revision_is_accepted_with_202_and_records_which(admin, demo_app):
    old = add_revision(demo_app, message="old one")
    response = admin.delete(f"apps/demo/revisions/{old.short_id}", {"reason": "cleanup"})
    assert response.status_code == 202
    op = response.json()["operation"]
    assert op["kind"] == "delete_rev"
    assert op["params"]["revision"] == str(old.id)
    assert op["params"]["short_id"] == old.short_id
    assert op["requester"] == "admin-user"


def test_with_the_runtime_down_the_deletion_fails_and_keeps_the_revision(admin, demo_app):
    old = add_revision(demo_app)
    response = admin.delete(f"apps/demo/revisions/{old.short_id}")
    executors.execute(response.json()["operation"]["id"])
    op = Operation.objects.get()
    assert op.state == "failed"
    assert op.error.startswith("runtime unavailable")
    assert Revision.objects.filter(pk=old.pk).exists()


def test_deleting_an_unknown_revision_is_a_404(admin, demo_app):
    before = app_state()
    response = admin.delete("apps/demo/revisions/deadbeef")
    assert_refused(response, 404, "app 'demo' has no revision 'deadbeef'", before)
