from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.controlplane.models import App
from tests.controlplane.conftest import add_revision

pytestmark = pytest.mark.django_db


def test_revisions_are_listed_newest_first_in_pages(viewer, demo_app):
    now = timezone.now()
    for i in range(5):
        add_revision(demo_app, message=f"r{i}", created_at=now + timedelta(seconds=i + 1))
    first = viewer.get("apps/demo/revisions", {"page_size": 2}).json()
    assert [r["message"] for r in first["revisions"]] == ["r4", "r3"]
    assert (first["count"], first["page"], first["page_size"], first["next"]) == (6, 1, 2, 2)
    last = viewer.get("apps/demo/revisions", {"page_size": 2, "page": 3}).json()
    assert last["next"] is None
    assert last["revisions"][-1]["current"] is True


def test_revisions_can_be_filtered_by_status(viewer, demo_app):
    add_revision(demo_app, status="failed")
    data = viewer.get("apps/demo/revisions", {"status": "failed"}).json()
    assert data["count"] == 1
    assert data["revisions"][0]["status"] == "failed"


def test_an_unknown_status_filter_is_refused_with_the_allowed_ones(viewer, demo_app):
    response = viewer.get("apps/demo/revisions", {"status": "green"})
    assert response.status_code == 400
    assert "deploying, deployed, failed, suspended" in response.json()["error"]["message"]


def test_a_page_size_out_of_range_is_refused(viewer, demo_app):
    assert viewer.get("apps/demo/revisions", {"page_size": 0}).status_code == 400
    assert viewer.get("apps/demo/revisions", {"page": "x"}).status_code == 400


def test_a_revision_is_found_by_its_full_id_or_a_prefix_with_or_without_dashes(viewer, demo_app):
    rev = demo_app.current_revision
    for ref in (str(rev.id), rev.id.hex, rev.id.hex[:8], str(rev.id)[:13]):
        data = viewer.get(f"apps/demo/revisions/{ref}").json()
        assert data["id"] == str(rev.id), ref
    data = viewer.get(f"apps/demo/revisions/{rev.short_id}").json()
    assert set(data) == {
        "id",
        "short_id",
        "app",
        "status",
        "current",
        "created_at",
        "deployed_at",
        "message",
        "annotations",
        "deployed_by",
        "machine_type",
        "settings",
        "code_settings",
        "entrypoint",
        "error",
        "log_tail",
        "endpoints",
        "pinned",
        "pinned_by",
        "pinned_at",
    }
    assert data["machine_type"] == "S"


def test_a_prefix_shorter_than_8_characters_is_refused(viewer, demo_app):
    response = viewer.get("apps/demo/revisions/abc123")
    assert response.status_code == 400
    assert "at least 8" in response.json()["error"]["message"]


def test_a_reference_that_is_not_hex_is_refused(viewer, demo_app):
    assert viewer.get("apps/demo/revisions/zzzzzzzzzz").status_code == 400


def test_an_ambiguous_prefix_names_the_candidates(viewer, demo_app):
    a = add_revision(demo_app, rev_id=uuid.UUID("abcdef01" + "1" * 24))
    b = add_revision(demo_app, rev_id=uuid.UUID("abcdef01" + "2" * 24))
    response = viewer.get("apps/demo/revisions/abcdef01")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "ambiguous_revision"
    assert "ambiguous" in error["message"]
    assert set(error["details"]["candidates"]) == {str(a.id), str(b.id)}


def test_another_apps_revision_is_a_404_saying_which_app_it_belongs_to(viewer, demo_app):
    other = App.objects.create(name="other")
    rev = add_revision(other)
    response = viewer.get(f"apps/demo/revisions/{rev.short_id}")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        f"revision {rev.short_id!r} belongs to app 'other', not 'demo'"
    )


def test_an_unknown_revision_is_a_404(viewer, demo_app):
    response = viewer.get("apps/demo/revisions/00000000")
    assert response.status_code == 404
    assert "has no revision" in response.json()["error"]["message"]
