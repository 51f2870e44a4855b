"""Pins (DESIGN section 1): a pinned revision is kept from retention and refused by
delete-rev; pin and unpin are operations in History."""

from __future__ import annotations

import pytest

from dashboard.controlplane.api.contract import document
from dashboard.controlplane.models import Operation, Revision
from tests.controlplane.conftest import add_revision

pytestmark = pytest.mark.django_db


def test_pinning_marks_the_revision_and_is_recorded_as_an_operation(deployer, demo_app):
    old = add_revision(demo_app)

    response = deployer.post(f"apps/demo/revisions/{old.short_id}/pin", {"reason": "known good"})

    assert response.status_code == 200, response.json()
    body = response.json()
    op = body["operation"]
    assert (op["kind"], op["state"], op["reason"], op["source"]) == (
        "pin",
        "succeeded",
        "known good",
        "cli",
    )
    assert op["requester"] == "deployer-user"
    assert f"revision {old.short_id} is pinned" in op["steps"][0]["message"]
    assert body["revision"]["pinned"] is True
    assert body["revision"]["pinned_by"] == "deployer-user"
    assert set(body["revision"]) == set(
        document()["components"]["schemas"]["Revision"]["properties"]
    )
    old.refresh_from_db()
    assert old.pinned and old.pinned_by.username == "deployer-user" and old.pinned_at


def test_unpinning_clears_the_mark_and_is_recorded(deployer, demo_app):
    old = add_revision(demo_app)
    deployer.post(f"apps/demo/revisions/{old.short_id}/pin")

    response = deployer.post(f"apps/demo/revisions/{old.short_id}/unpin", {"reason": "done"})

    assert response.status_code == 200, response.json()
    op = response.json()["operation"]
    assert (op["kind"], op["state"]) == ("unpin", "succeeded")
    assert "no longer pinned (was pinned by deployer-user at" in op["steps"][0]["message"]
    old.refresh_from_db()
    assert (old.pinned, old.pinned_by, old.pinned_at) == (False, None, None)


def test_pinning_a_pinned_revision_is_refused_and_changes_nothing(deployer, demo_app):
    old = add_revision(demo_app)
    deployer.post(f"apps/demo/revisions/{old.short_id}/pin")
    before = Operation.objects.count()

    response = deployer.post(f"apps/demo/revisions/{old.short_id}/pin")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "already_pinned"
    assert error["message"].startswith(
        f"revision {old.short_id} is already pinned by deployer-user"
    )
    assert error["message"].endswith("; nothing changed")
    assert Operation.objects.count() == before


def test_unpinning_a_revision_that_is_not_pinned_is_refused(deployer, demo_app):
    old = add_revision(demo_app)

    response = deployer.post(f"apps/demo/revisions/{old.short_id}/unpin")

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "not_pinned",
        "message": f"revision {old.short_id} is not pinned; nothing changed",
        "details": {"revision": str(old.id), "pinned": False},
    }
    assert not Operation.objects.exists()


def test_a_viewer_may_not_pin(viewer, demo_app):
    old = add_revision(demo_app)

    response = viewer.post(f"apps/demo/revisions/{old.short_id}/pin")

    assert response.status_code == 403
    assert not Revision.objects.get(pk=old.pk).pinned
    assert not Operation.objects.exists()


def test_pinning_an_unknown_revision_or_with_unknown_fields_is_refused(deployer, demo_app):
    assert deployer.post("apps/demo/revisions/deadbeef/pin").status_code == 404
    old = add_revision(demo_app)
    response = deployer.post(f"apps/demo/revisions/{old.short_id}/pin", {"force": True})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_field"
    assert not Revision.objects.get(pk=old.pk).pinned
    assert not Operation.objects.exists()


def test_deleting_a_pinned_revision_is_refused_with_who_pinned_it(admin, deployer, demo_app):
    old = add_revision(demo_app)
    deployer.post(f"apps/demo/revisions/{old.short_id}/pin")
    before = Operation.objects.count()

    response = admin.delete(f"apps/demo/revisions/{old.short_id}")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "revision_is_pinned"
    assert error["message"].startswith(
        f"revision {old.short_id} is pinned (pinned by deployer-user at "
    )
    assert error["message"].endswith("unpin it first — a pinned revision is never deleted")
    assert error["details"]["pinned_by"] == "deployer-user"
    assert Revision.objects.filter(pk=old.pk, pinned=True).exists()
    assert Operation.objects.count() == before


def test_a_pinned_revision_shows_as_pinned_in_the_listing(deployer, viewer, demo_app):
    old = add_revision(demo_app)
    deployer.post(f"apps/demo/revisions/{old.short_id}/pin")

    listed = {r["id"]: r for r in viewer.get("apps/demo/revisions").json()["revisions"]}

    assert listed[str(old.id)]["pinned"] is True
    assert listed[str(demo_app.current_revision_id)]["pinned"] is False
