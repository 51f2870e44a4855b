"""Cancel and supersede (DESIGN section 4): POST /apps/APP/operations/ID/cancel, and a
set-rev that supersedes whatever runs on its app so a rollback never waits."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard import runner_states
from dashboard.api_client import ControlApi
from dashboard.controlplane.models import ApiToken, App, Operation, Profile, Revision
from tests.conftest import wait_until
from tests.controlplane.conftest import add_revision, app_source, make_bundle
from tests.invariants.conftest import ENTRYPOINT, finish, runners_of, slow_bundle


def _queued_deploy(deployer) -> tuple[dict, dict]:
    # No worker runs in these tests: the deploy stays queued, as with a stopped worker.
    answer = deployer.deploy("demo", make_bundle({"app.py": app_source()})).json()
    assert answer["operation"]["state"] == "queued"
    return answer["operation"], answer["revision"]


@pytest.mark.django_db
def test_cancelling_a_queued_deploy_ends_it_cancelled_and_fails_its_revision(deployer, demo_app):
    op, revision = _queued_deploy(deployer)

    response = deployer.post(f"apps/demo/operations/{op['id']}/cancel", {"reason": "wrong branch"})

    assert response.status_code == 200, response.json()
    done = response.json()["operation"]
    reason = "cancelled: cancelled by deployer-user: wrong branch"
    assert (done["state"], done["error"]) == ("cancelled", reason)
    assert done["cancel"]["reason"] == "cancelled by deployer-user: wrong branch"
    assert done["steps"][-1]["message"] == reason
    failed = Revision.objects.get(pk=revision["id"])
    assert (failed.status, failed.error) == ("failed", reason)
    assert App.objects.get().current_revision_id == demo_app.current_revision_id
    # The app is free again.
    assert deployer.post("apps/demo/scale", {"keep_alive": 9}).status_code == 200


@pytest.mark.django_db
def test_cancelling_a_finished_operation_is_refused_and_changes_nothing(deployer, demo_app):
    op = deployer.post("apps/demo/scale", {"keep_alive": 9}).json()["operation"]

    response = deployer.post(f"apps/demo/operations/{op['id']}/cancel")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "operation_finished"
    assert error["message"].startswith(f"scale operation {op['id']} already ended Succeeded at ")
    assert error["message"].endswith("; there is nothing to cancel")
    after = Operation.objects.get(pk=op["id"])
    assert (after.state, after.cancel_requested_at, after.cancel_reason) == ("succeeded", None, "")


@pytest.mark.django_db
def test_a_viewer_may_not_cancel(viewer, deployer, demo_app):
    op, _ = _queued_deploy(deployer)
    response = viewer.post(f"apps/demo/operations/{op['id']}/cancel")
    assert response.status_code == 403
    assert (
        response.json()["error"]["message"] == "this needs the deployer role; your role is viewer"
    )
    assert Operation.objects.get(pk=op["id"]).cancel_requested_at is None


@pytest.mark.django_db
def test_an_unknown_or_foreign_operation_is_a_404_and_a_malformed_id_a_400(deployer, demo_app):
    op, _ = _queued_deploy(deployer)
    App.objects.create(name="other")
    unknown = uuid.uuid4()
    cases = (
        ("demo", str(unknown), 404, f"app 'demo' has no operation {unknown}"),
        ("other", op["id"], 404, f"app 'other' has no operation {op['id']}"),
        ("demo", "nope", 400, "'nope' is not an operation id (a UUID)"),
        ("ghost", op["id"], 404, "no app named 'ghost'"),
    )
    for app, op_id, status, message in cases:
        response = deployer.post(f"apps/{app}/operations/{op_id}/cancel")
        assert response.status_code == status, (app, op_id)
        assert response.json()["error"]["message"] == message
    assert Operation.objects.get(pk=op["id"]).state == "queued"


@pytest.mark.django_db
def test_a_set_rev_supersedes_a_queued_deploy_at_once(deployer, demo_app):
    op, revision = _queued_deploy(deployer)
    good = add_revision(demo_app, created_at=timezone.now() - timedelta(days=1))

    response = deployer.post(
        "apps/demo/set-rev", {"revision": good.short_id, "strategy": "recreate"}
    )

    assert response.status_code == 200, response.json()
    switch = response.json()["operation"]
    assert switch["state"] == "succeeded"
    assert switch["params"]["superseded"] == op["id"]
    assert any(f"superseded deploy operation {op['id']}" in s["message"] for s in switch["steps"])
    deploy = Operation.objects.get(pk=op["id"])
    reason = f"cancelled: superseded by deployer-user's rollback to {good.short_id}"
    assert (deploy.state, deploy.error) == ("cancelled", reason)
    assert Revision.objects.get(pk=revision["id"]).error == reason
    assert App.objects.get().current_revision_id == good.id


@pytest.mark.django_db
def test_the_same_set_rev_asked_twice_is_refused_naming_the_one_in_progress(deployer, demo_app):
    good = add_revision(demo_app, created_at=timezone.now() - timedelta(days=1))
    first = deployer.post("apps/demo/set-rev", {"revision": good.short_id}).json()["operation"]
    assert first["state"] == "queued"  # rolling, and no worker runs here

    response = deployer.post("apps/demo/set-rev", {"revision": good.short_id})

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "operation_in_progress"
    assert error["message"] == (
        f"set-rev operation {first['id']} to {good.short_id} is already in progress on app "
        "'demo' (requested by deployer-user); follow it instead of starting it again"
    )
    assert list(Operation.objects.values_list("id", "cancel_requested_at")) == [
        (uuid.UUID(first["id"]), None)
    ]


@pytest.mark.django_db
def test_a_set_rev_to_a_revision_being_deleted_is_refused(admin, demo_app):
    doomed = add_revision(demo_app)
    delete = admin.delete(f"apps/demo/revisions/{doomed.short_id}").json()["operation"]

    response = admin.post("apps/demo/set-rev", {"revision": doomed.short_id})

    assert response.status_code == 409
    assert (
        f"is being deleted by delete-rev operation {delete['id']}, still in progress"
        in (response.json()["error"]["message"])
    )
    assert Operation.objects.get(pk=delete["id"]).cancel_requested_at is None
    assert App.objects.get().current_revision_id == demo_app.current_revision_id


# -- with the real worker and runtime ------------------------------------------------------


@pytest.fixture
def api(system, django_user_model) -> ControlApi:
    user = django_user_model.objects.create_user("oncall")
    Profile.objects.create(user=user, role="deployer")
    _, raw = ApiToken.issue(user, "cancel", "deployer")
    return ControlApi(system.api_url, raw, source="cli", retries=0, timeout=60)


def _deploy(api: ControlApi, name: str, bundle: bytes) -> tuple[dict, dict]:
    answer = api.deploy(name, bundle, ENTRYPOINT, auth_mode="public")
    return finish(api, answer["operation"]["id"]), answer["revision"]


def _active(revision_id: str) -> list[dict]:
    return [r for r in runners_of(revision_id) if r["state"] not in runner_states.GONE]


# A setup() far longer than any test runs: the deploy can only end through cancellation.
ENDLESS = {"seconds": 3000.0, "startup_timeout": 3600}


def _slow_deploy(api: ControlApi, name: str) -> tuple[dict, str]:
    answer = api.deploy(
        name,
        slow_bundle(ENDLESS["seconds"], "slow", startup_timeout=ENDLESS["startup_timeout"]),
        ENTRYPOINT,
    )
    revision = answer["revision"]["id"]
    wait_until(
        lambda: any(r["state"] == "SETUP" for r in runners_of(revision)),
        timeout=60,
        what="the slow deploy's runner to be in setup()",
    )
    return answer["operation"], revision


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_a_rollback_during_a_slow_deploy_supersedes_it_and_goes_through(system, api):
    name = "superseded"
    _, v1 = _deploy(api, name, slow_bundle(0.1, "v1"))
    _, v2 = _deploy(api, name, slow_bundle(0.1, "v2"))
    deploy, slow = _slow_deploy(api, name)

    switch = api.set_rev(name, v1["id"], strategy="rolling", reason="v2 errors")["operation"]

    done = finish(api, switch["id"])
    assert done["state"] == "succeeded", done["error"]
    assert str(App.objects.get(name=name).current_revision_id) == v1["id"]
    ended = finish(api, deploy["id"])
    reason = f"cancelled: superseded by oncall's rollback to {v1['id'][:8]}"
    assert (ended["state"], ended["error"]) == ("cancelled", reason)
    assert ended["cancel"]["reason"] == reason.removeprefix("cancelled: ")
    revision = Revision.objects.get(pk=slow)
    assert (revision.status, revision.error) == ("failed", reason)
    wait_until(lambda: not _active(slow), what="the cancelled deploy's runner to stop")
    # It never moved the alias: no step of it says so.
    assert not any("now points to" in s["message"] for s in ended["steps"])
    assert App.objects.get(name=name).previous_revision_id.hex == v2["id"].replace("-", "")


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_deploy_stops_its_runner_and_the_alias_stays(system, api):
    name = "cancelled"
    _, v1 = _deploy(api, name, slow_bundle(0.1, "v1"))
    deploy, slow = _slow_deploy(api, name)

    answer = api.cancel_operation(name, deploy["id"], reason="wrong build")

    assert answer["operation"]["cancel"]["reason"] == "cancelled by oncall: wrong build"
    ended = finish(api, deploy["id"])
    assert (ended["state"], ended["error"]) == (
        "cancelled",
        "cancelled: cancelled by oncall: wrong build",
    )
    assert Revision.objects.get(pk=slow).status == "failed"
    wait_until(lambda: not _active(slow), what="the cancelled deploy's runner to stop")
    assert str(App.objects.get(name=name).current_revision_id) == v1["id"]
