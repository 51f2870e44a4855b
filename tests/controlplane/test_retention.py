"""Retention (issue 13, DESIGN section 6 invariant 7): per app, the newest N revisions
stay and older ones go, each as a delete-rev operation with the source `retention`, never
Current, Previous, a pinned revision, the target of an operation in progress or one of
the last 3 Deployed. Settings and dry runs through the API; deletions by the real worker
and runtime."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboard.api_client import ApiError, ControlApi
from dashboard.controlplane.api.contract import document
from dashboard.controlplane.models import (
    ApiToken,
    App,
    Operation,
    OperationState,
    Profile,
    Revision,
    RevisionStatus,
)
from tests.conftest import wait_until
from tests.controlplane.conftest import add_revision

SCHEMAS = document()["components"]["schemas"]


def _history(app: App, count: int, failed: tuple[int, ...] = ()) -> list[Revision]:
    """`count` revisions of `app`, oldest first, a minute apart; those in `failed` Failed."""
    start = timezone.now() - timedelta(days=1)
    return [
        add_revision(
            app,
            status=RevisionStatus.FAILED if i in failed else RevisionStatus.DEPLOYED,
            created_at=start + timedelta(minutes=i),
            message=f"r{i}",
        )
        for i in range(count)
    ]


def _shape(app: App, revs: list[Revision], *, current: int, previous: int, pinned: int, by):
    app.current_revision, app.previous_revision = revs[current], revs[previous]
    app.save()
    Revision.objects.filter(pk=revs[pinned].pk).update(
        pinned=True, pinned_by=by, pinned_at=timezone.now()
    )


def _winding_down(app: App, revision: Revision, who) -> Operation:
    """A deploy of `revision` that was cancelled and is still winding down: in progress
    (not finished), yet no longer blocking other operations on the app."""
    Revision.objects.filter(pk=revision.pk).update(status=RevisionStatus.DEPLOYING)
    return Operation.objects.create(
        app=app,
        kind="deploy",
        state=OperationState.RUNNING,
        requester=who,
        requester_name=who.username,
        revision=revision,
        started_at=timezone.now(),
        cancel_requested_at=timezone.now(),
        cancel_reason="superseded by a rollback",
    )


# -- settings and dry runs (no worker needed) ----------------------------------------------


@pytest.mark.django_db
def test_retention_defaults_to_keeping_20_and_is_on(viewer, demo_app):
    response = viewer.get("apps/demo/retention")
    assert response.status_code == 200
    assert response.json() == {"keep": 20, "enabled": True}
    assert viewer.get("apps/demo").json()["retention"] == {"keep": 20, "enabled": True}


@pytest.mark.django_db
def test_changing_retention_is_an_operation_in_history(admin, demo_app):
    response = admin.post("apps/demo/retention", {"keep": 5, "enabled": False, "reason": "disk"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["retention"] == {"keep": 5, "enabled": False}
    op = body["operation"]
    assert (op["kind"], op["state"], op["reason"]) == ("retention", "succeeded", "disk")
    assert op["params"] == {"keep": 5, "enabled": False}
    assert "keep 20 → 5, enabled True → False" in op["steps"][0]["message"]
    app = App.objects.get()
    assert (app.retention_keep, app.retention_enabled) == (5, False)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"keep": 0}, "keep must be from 1 to 1000 (revisions kept per app), got 0"),
        ({"keep": 1001}, "keep must be from 1 to 1000 (revisions kept per app), got 1001"),
        ({"keep": "many"}, "keep must be a whole number from 1 to 1000, got 'many'"),
        ({"keep": True}, "keep must be a whole number from 1 to 1000, got True"),
        ({"keep": 2.5}, "keep must be a whole number from 1 to 1000, got 2.5"),
        ({"enabled": "sometimes"}, "enabled must be true or false, got 'sometimes'"),
        ({}, "nothing to change: give keep (1 to 1000) and/or enabled (true or false)"),
    ],
)
def test_bad_retention_values_are_refused_and_change_nothing(admin, demo_app, body, message):
    response = admin.post("apps/demo/retention", body)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    app = App.objects.get()
    assert (app.retention_keep, app.retention_enabled) == (20, True)
    assert not Operation.objects.exists()


@pytest.mark.django_db
def test_a_deployer_may_read_retention_but_not_change_it(deployer, demo_app):
    assert deployer.get("apps/demo/retention").status_code == 200
    response = deployer.post("apps/demo/retention", {"keep": 3})
    assert response.status_code == 403
    assert App.objects.get().retention_keep == 20
    assert not Operation.objects.exists()


@pytest.mark.django_db
def test_a_dry_run_lists_what_would_go_and_why_the_others_stay(admin, viewer):
    by = get_user_model().objects.create_user("pinner")
    app = App.objects.create(name="demo")
    revs = _history(app, 30, failed=(25, 26, 27, 28, 29))
    _shape(app, revs, current=10, previous=15, pinned=4, by=by)
    _winding_down(app, revs[6], by)
    counts = (Revision.objects.count(), Operation.objects.count())

    plan = admin.post("apps/demo/retention", {"keep": 5, "dry_run": True}).json()

    short = {r.short_id: i for i, r in enumerate(revs)}
    gone = [short[r["short_id"]] for r in plan["would_delete"]]
    assert gone == [0, 1, 2, 3, 5, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21]  # Oldest first.
    why = {short[r["short_id"]]: r["why"] for r in plan["kept"] if r["short_id"] in short}
    assert why[10] == "Current"
    assert why[15] == "Previous: the one-click way back"
    assert why[4].startswith("pinned by pinner at ")
    assert why[6].startswith("target of deploy operation ") and why[6].endswith("in progress")
    assert {why[i] for i in (22, 23, 24)} == {"one of the last 3 Deployed revisions"}
    assert {why[i] for i in range(25, 30)} == {"one of the newest 5"}
    assert plan["would_delete"][0]["why"] == "older than the newest 5, not protected"
    assert set(plan) == set(SCHEMAS["RetentionPlan"]["properties"])
    assert set(plan["kept"][0]) == set(SCHEMAS["RetentionVerdict"]["properties"])
    # A dry run changes nothing, and any viewer may ask for one of the settings in effect.
    assert (Revision.objects.count(), Operation.objects.count()) == counts
    assert App.objects.get().retention_keep == 20
    in_effect = viewer.get("apps/demo/retention", {"dry_run": "1"}).json()
    assert [short[r["short_id"]] for r in in_effect["would_delete"]] == [0, 1, 2, 3, 5, 7, 8, 9]


@pytest.mark.django_db
def test_a_dry_run_with_an_unknown_query_parameter_is_refused(viewer, demo_app):
    response = viewer.get("apps/demo/retention", {"dryrun": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "unknown query parameter 'dryrun'; allowed: dry_run"
    )


@pytest.mark.django_db
def test_a_client_may_not_claim_the_retention_source(admin, demo_app):
    response = admin.post(
        "apps/demo/retention", {"keep": 5}, **{"X-Switchboard-Source": "retention"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["message"].startswith(
        "X-Switchboard-Source 'retention' is reserved for retention"
    )
    assert App.objects.get().retention_keep == 20


# -- with the real worker and runtime ------------------------------------------------------


@pytest.fixture
def api(system, django_user_model) -> ControlApi:
    user = django_user_model.objects.create_user("keeper")
    Profile.objects.create(user=user, role="admin")
    _, raw = ApiToken.issue(user, "retention", "admin")
    return ControlApi(system.api_url, raw, source="cli", retries=0, timeout=60)


def _settled(app: App) -> bool:
    """No retention deletion in progress on the app."""
    return not Operation.objects.filter(
        app=app, source="retention", finished_at__isnull=True
    ).exists()


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_retention_deletes_exactly_the_unprotected_old_revisions(system, api):
    by = get_user_model().objects.create_user("pinner")
    app = App.objects.create(name="long-history", auth_mode="public")
    revs = _history(app, 30, failed=(25, 26, 27, 28, 29))
    _shape(app, revs, current=10, previous=15, pinned=4, by=by)
    _winding_down(app, revs[6], by)
    expected_gone = [0, 1, 2, 3, 5, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21]
    expected_kept = sorted(set(range(30)) - set(expected_gone))

    answer = api.set_retention(app.name, keep=5, reason="a long history")
    assert answer["operation"]["state"] == "succeeded"

    def done() -> bool:
        left = set(Revision.objects.filter(app=app).values_list("pk", flat=True))
        return left == {revs[i].pk for i in expected_kept} and _settled(app)

    wait_until(done, timeout=90, what="retention to delete the 18 unprotected old revisions")
    deletions = Operation.objects.filter(app=app, kind="delete_rev").order_by("created_at")
    assert [d.params["short_id"] for d in deletions] == [revs[i].short_id for i in expected_gone]
    for op in deletions:
        assert (op.state, op.source, op.requester_name) == ("succeeded", "retention", "retention")
        assert op.reason == (
            "retention: older than the newest 5 revisions of long-history and not protected"
        )
    history = api.history(app.name, page_size=50)["operations"]
    assert sum(1 for o in history if o["source"] == "retention") == 18
    app.refresh_from_db()
    assert (app.current_revision_id, app.previous_revision_id) == (revs[10].id, revs[15].id)
    # Nothing is left to delete: a second run finds nothing.
    assert api.retention(app.name, dry_run=True)["would_delete"] == []


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_a_deploy_runs_retention_after_it_succeeds(system, api):
    from tests.invariants.conftest import deploy, slow_bundle

    app = App.objects.create(name="trimmed", auth_mode="public", retention_keep=3)
    old = _history(app, 5)
    operation, revision = deploy(api, app.name, slow_bundle(0.1, "new"))
    assert operation["state"] == "succeeded", operation["error"]

    # The new revision (Current) and the two newest old ones stay: the newest 3, which
    # are also the last 3 Deployed. The first switch leaves no Previous.
    keep = {revision["id"], str(old[4].id), str(old[3].id)}
    wait_until(
        lambda: (
            {str(pk) for pk in Revision.objects.filter(app=app).values_list("pk", flat=True)}
            == keep
            and _settled(app)
        ),
        timeout=60,
        what="retention to run after the deploy",
    )


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_current_previous_and_pinned_survive_retention_under_concurrent_set_rev(system, api):
    by = get_user_model().objects.get(username="keeper")
    app = App.objects.create(name="contested", auth_mode="public")
    revs = _history(app, 30)
    _shape(app, revs, current=29, previous=28, pinned=3, by=by)
    pinned = {revs[3].pk}
    targets = [revs[i] for i in (1, 5, 2, 7, 9, 4, 11, 6, 13, 8, 15, 10)]
    outcomes: list[str] = []

    def roll_back_and_forth() -> None:
        for target in targets:
            try:
                api.set_rev(app.name, target.short_id, strategy="recreate", reason="contest")
                outcomes.append("switched")
            except ApiError as exc:
                # Deleted already, or being deleted: refused, changing nothing.
                assert exc.status in (404, 409), exc.message
                outcomes.append(exc.code)
            except httpx.HTTPError as exc:  # pragma: no cover - shown if it happens
                outcomes.append(f"transport: {exc}")

    switcher = threading.Thread(target=roll_back_and_forth)
    api.set_retention(app.name, keep=1, reason="contest")
    switcher.start()
    switcher.join(120)
    assert not switcher.is_alive()
    assert all(not o.startswith("transport") for o in outcomes), outcomes

    # A superseded deletion stops a run; another run finishes the job. Done means: no
    # deletion in progress before and after a dry run that finds nothing to delete (a
    # run between two deletions has none in progress, but its next victim is listed).
    def finished() -> bool:
        if not _settled(app):
            return False
        if api.retention(app.name, dry_run=True)["would_delete"]:
            try:
                api.set_retention(app.name, keep=1, reason="again")
            except ApiError as exc:  # A retention run just started its next deletion.
                assert exc.code == "operation_in_progress", exc.message
            return False
        return _settled(app)

    wait_until(
        finished, timeout=120, interval=1.0, what="retention to delete every unprotected revision"
    )
    app.refresh_from_db()
    assert app.current_revision_id is not None
    assert app.previous_revision_id is not None  # SET_NULL would have cleared it.
    left = set(Revision.objects.filter(app=app).values_list("pk", flat=True))
    assert {app.current_revision_id, app.previous_revision_id} | pinned <= left
    deleted = {
        op.params["revision"]
        for op in Operation.objects.filter(app=app, kind="delete_rev", state="succeeded")
    }
    assert str(app.current_revision_id) not in deleted
    assert str(app.previous_revision_id) not in deleted
    assert str(revs[3].id) not in deleted
    # Every retention deletion that failed did so on a protection, not on an error.
    for op in Operation.objects.filter(app=app, kind="delete_rev", state="failed"):
        assert "Current" in op.error or "Previous" in op.error, op.error
