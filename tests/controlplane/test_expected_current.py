"""expected_current (DESIGN section 4): set-rev, delete-rev, suspend and rollout act only on
the Current revision the requester saw; otherwise 409 current_changed says who changed it,
to what and when, and nothing changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.controlplane.api.contract import document
from dashboard.controlplane.models import App, Operation, Revision
from tests.controlplane.conftest import add_revision

pytestmark = pytest.mark.django_db


@pytest.fixture
def switched(demo_app, admin):
    """demo's Current was `seen` when the deployer looked; then an admin set `now`."""
    seen = demo_app.current_revision
    now = add_revision(demo_app, message="colleague's pick")
    answer = admin.post(
        "apps/demo/set-rev",
        {"revision": now.short_id, "strategy": "recreate", "reason": "hotfix"},
    )
    assert answer.status_code == 200, answer.json()
    return seen, now, answer.json()["operation"]


def _state(app: App) -> tuple:
    app.refresh_from_db()
    return (
        app.current_revision_id,
        app.settings,
        sorted((r.pk, r.status) for r in Revision.objects.filter(app=app)),
        Operation.objects.count(),
    )


def assert_current_changed(response, seen, now, move) -> None:
    assert response.status_code == 409, response.json()
    error = response.json()["error"]
    assert error["code"] == "current_changed"
    message = error["message"]
    assert f"you saw {seen.short_id}, it is now {now.short_id}" in message, message
    assert f"set by admin-user (set-rev operation {move['id']})" in message, message
    assert "nothing was changed" in message
    details = error["details"]
    assert details["expected"] == str(seen.id)
    assert details["current"] == str(now.id)
    assert details["changed_by"] == "admin-user"
    assert details["operation"] == move["id"]
    assert details["reason"] == "hotfix"
    # When: the switch's time, in the message to the second.
    assert details["changed_at"][:19] in message, message


def test_a_set_rev_on_a_stale_current_is_refused_saying_who_changed_it_and_changes_nothing(
    deployer, demo_app, switched
):
    seen, now, move = switched
    other = add_revision(demo_app, created_at=timezone.now() - timedelta(days=1))
    before = _state(demo_app)

    response = deployer.post(
        "apps/demo/set-rev",
        {"revision": other.short_id, "strategy": "recreate", "expected_current": seen.short_id},
    )

    assert_current_changed(response, seen, now, move)
    assert _state(demo_app) == before


def test_a_set_rev_on_the_current_it_saw_goes_through(deployer, demo_app, switched):
    _, now, _ = switched
    other = add_revision(demo_app)

    response = deployer.post(
        "apps/demo/set-rev",
        {"revision": other.short_id, "strategy": "recreate", "expected_current": str(now.id)},
    )

    assert response.status_code == 200, response.json()
    demo_app.refresh_from_db()
    assert demo_app.current_revision_id == other.id


@pytest.mark.parametrize("action", ["delete-rev", "suspend", "rollout"])
def test_every_action_on_a_stale_current_is_refused_and_changes_nothing(
    admin, demo_app, switched, action
):
    seen, now, move = switched
    spare = add_revision(demo_app)
    before = _state(demo_app)

    body = {"expected_current": seen.short_id}
    if action == "delete-rev":
        response = admin.delete(f"apps/demo/revisions/{spare.short_id}", body)
    else:
        response = admin.post(f"apps/demo/{action}", body)

    assert_current_changed(response, seen, now, move)
    assert _state(demo_app) == before


def test_suspend_of_the_current_it_saw_goes_through(admin, demo_app, switched):
    _, now, _ = switched
    response = admin.post("apps/demo/suspend", {"expected_current": now.short_id})
    assert response.status_code == 200, response.json()
    assert Revision.objects.get(pk=now.pk).status == "suspended"


def test_a_malformed_expected_current_is_a_400_and_changes_nothing(deployer, demo_app):
    other = add_revision(demo_app)
    before = _state(demo_app)
    for bad, words in ((42, "expected_current must be a string"), ("xyz", "is not a revision id")):
        response = deployer.post(
            "apps/demo/set-rev",
            {"revision": other.short_id, "strategy": "recreate", "expected_current": bad},
        )
        assert response.status_code == 400, response.json()
        assert words in response.json()["error"]["message"]
    assert _state(demo_app) == before


def test_the_rule_is_one_function_the_dashboard_can_call(demo_app, switched):
    from dashboard.controlplane.errors import Conflict
    from dashboard.controlplane.operations import check_expected_current

    seen, now, _ = switched
    demo_app.refresh_from_db()
    check_expected_current(demo_app, now.short_id)  # the Current it saw: no refusal
    check_expected_current(demo_app, None)  # did not say: no check
    with pytest.raises(Conflict) as refused:
        check_expected_current(demo_app, seen.short_id)
    assert refused.value.code == "current_changed"


def test_the_document_describes_expected_current_on_each_action():
    doc = document()
    paths = doc["paths"]
    for path, method in (
        ("/apps/{app}/set-rev", "post"),
        ("/apps/{app}/rollout", "post"),
        ("/apps/{app}/suspend", "post"),
        ("/apps/{app}/revisions/{rev}", "delete"),
    ):
        ref = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        assert "expected_current" in schema["properties"], path
