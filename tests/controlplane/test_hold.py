"""A rollback holds the app (DESIGN sections 1 and 4): Previous, the hold, its release,
deploys that are not made Current while held, --promote, and the per-app opt-out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard import runner_states
from dashboard.api_client import ControlApi
from dashboard.controlplane.models import ApiToken, App, Operation, Profile, Revision
from tests.conftest import wait_until
from tests.controlplane.conftest import add_revision
from tests.invariants.conftest import ENTRYPOINT, finish, runners_of, slow_bundle


def _older(app: App) -> Revision:
    return add_revision(app, created_at=timezone.now() - timedelta(days=1), message="good one")


@pytest.mark.django_db
def test_a_rollback_holds_the_app_and_the_api_says_who_when_why(deployer, viewer, demo_app):
    was = demo_app.current_revision
    good = _older(demo_app)

    op = deployer.post(
        "apps/demo/set-rev",
        {"revision": good.short_id, "strategy": "recreate", "reason": "500s after v7"},
    ).json()["operation"]

    data = viewer.get("apps/demo").json()
    assert data["held"] is True and data["hold_on_rollback"] is True
    assert data["hold"]["by"] == "deployer-user"
    assert data["hold"]["reason"] == "500s after v7"
    assert data["hold"]["operation"] == op["id"]
    assert data["hold"]["revision"]["id"] == str(good.id)
    assert data["previous_revision"] == {"id": str(was.id), "short_id": was.short_id}
    assert data["current_set_by"]["by"] == "deployer-user"
    assert data["current_set_by"]["kind"] == "set_rev"
    assert data["current_since"]
    messages = [s["message"] for s in op["steps"]]
    assert any("demo is held" in m and "switchboard apps release demo" in m for m in messages)
    [listed] = viewer.get("apps").json()["apps"]
    assert listed["held"] is True and listed["previous_revision"]["id"] == str(was.id)


@pytest.mark.django_db
def test_a_roll_forward_does_not_hold_but_keeps_previous(deployer, demo_app):
    was = demo_app.current_revision
    newer = add_revision(demo_app)

    deployer.post("apps/demo/set-rev", {"revision": newer.short_id, "strategy": "recreate"})

    demo_app.refresh_from_db()
    assert demo_app.held is False
    assert demo_app.previous_revision_id == was.id
    # And once more: Previous is always the one Current just before the last move.
    deployer.post("apps/demo/set-rev", {"revision": was.short_id, "strategy": "recreate"})
    demo_app.refresh_from_db()
    assert demo_app.previous_revision_id == newer.id


@pytest.mark.django_db
def test_release_lifts_the_hold_and_is_recorded(deployer, demo_app):
    deployer.post(
        "apps/demo/set-rev", {"revision": _older(demo_app).short_id, "strategy": "recreate"}
    )
    current = App.objects.get().current_revision_id

    response = deployer.post("apps/demo/release", {"reason": "fix is out"})

    assert response.status_code == 200, response.json()
    op = response.json()["operation"]
    assert (op["kind"], op["state"], op["reason"]) == ("release", "succeeded", "fix is out")
    assert "the next deploy of demo becomes Current" in op["steps"][0]["message"]
    app = App.objects.get()
    assert (app.held, app.held_at, app.held_operation_id) == (False, None, None)
    assert app.current_revision_id == current  # Releasing switches nothing.


@pytest.mark.django_db
def test_releasing_an_app_that_is_not_held_is_refused_and_changes_nothing(deployer, demo_app):
    ops = Operation.objects.count()
    response = deployer.post("apps/demo/release")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_held"
    assert (
        response.json()["error"]["message"] == "app 'demo' is not held; there is no hold to release"
    )
    assert Operation.objects.count() == ops


@pytest.mark.django_db
def test_a_viewer_may_neither_release_nor_change_the_policy(viewer, deployer, demo_app):
    deployer.post(
        "apps/demo/set-rev", {"revision": _older(demo_app).short_id, "strategy": "recreate"}
    )
    ops = Operation.objects.count()
    for path, body in (("release", {}), ("hold-policy", {"hold_on_rollback": False})):
        response = viewer.post(f"apps/demo/{path}", body)
        assert response.status_code == 403
        assert (
            response.json()["error"]["message"]
            == "this needs the deployer role; your role is viewer"
        )
    app = App.objects.get()
    assert app.held and app.hold_on_rollback
    assert Operation.objects.count() == ops


@pytest.mark.django_db
def test_with_the_policy_off_a_rollback_does_not_hold(deployer, demo_app):
    response = deployer.post("apps/demo/hold-policy", {"hold_on_rollback": False})
    assert response.status_code == 200, response.json()
    assert response.json()["app"]["hold_on_rollback"] is False
    assert response.json()["operation"]["kind"] == "hold_policy"

    deployer.post(
        "apps/demo/set-rev", {"revision": _older(demo_app).short_id, "strategy": "recreate"}
    )

    app = App.objects.get()
    assert app.held is False and app.hold_on_rollback is False


@pytest.mark.django_db
def test_a_bad_policy_value_is_refused_and_changes_nothing(deployer, demo_app):
    ops = Operation.objects.count()
    for body, words in (
        ({"hold_on_rollback": "maybe"}, "hold_on_rollback must be true or false, got 'maybe'"),
        ({}, "nothing to change: give hold_on_rollback (true or false)"),
        ({"hold": False}, "hold"),
    ):
        response = deployer.post("apps/demo/hold-policy", body)
        assert response.status_code == 400, response.json()
        assert words in response.json()["error"]["message"]
    assert App.objects.get().hold_on_rollback is True
    assert Operation.objects.count() == ops


# -- with the real worker and runtime: deploys while held -------------------------------------


@pytest.fixture
def api(system, django_user_model) -> ControlApi:
    user = django_user_model.objects.create_user("holder")
    Profile.objects.create(user=user, role="admin")
    _, raw = ApiToken.issue(user, "hold", "admin")
    return ControlApi(system.api_url, raw, source="cli", retries=0, timeout=60)


def _deploy(api: ControlApi, name: str, version: str, **kw) -> tuple[dict, dict]:
    answer = api.deploy(name, slow_bundle(0.1, version), ENTRYPOINT, auth_mode="public", **kw)
    return finish(api, answer["operation"]["id"]), answer["revision"]


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_a_held_app_deploys_without_going_live_until_released_or_promoted(system, api):
    name = "held"
    _, v1 = _deploy(api, name, "v1")
    _, v2 = _deploy(api, name, "v2")
    api.set_rev(name, v1["id"], strategy="recreate", reason="v2 is broken")

    op, v3 = _deploy(api, name, "v3")

    assert op["state"] == "succeeded", op["error"]
    assert op["result"]["promoted"] is False
    note = [s["message"] for s in op["steps"] if s["message"].startswith("deployed; not made")]
    assert note and f"{name} is held since" in note[0] and "by holder's rollback" in note[0]
    assert "switchboard apps release held" in note[0] and "--promote" in note[0]
    assert Revision.objects.get(pk=v3["id"]).status == "deployed"
    assert str(App.objects.get(name=name).current_revision_id) == v1["id"]
    # The runner that proved v3 healthy does not linger: the gateway will not route to it.
    wait_until(
        lambda: not [r for r in runners_of(v3["id"]) if r["state"] in runner_states.READY],
        what="v3's proving runner to stop",
    )

    api.release(name, reason="v3 fixes it")
    op, v4 = _deploy(api, name, "v4")
    assert op["result"]["promoted"] is True
    assert str(App.objects.get(name=name).current_revision_id) == v4["id"]
    assert App.objects.get(name=name).previous_revision_id.hex == v1["id"].replace("-", "")


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_a_promoted_deploy_goes_live_on_a_held_app_and_releases_the_hold(system, api):
    name = "promoted"
    _, v1 = _deploy(api, name, "v1")
    _deploy(api, name, "v2")
    api.set_rev(name, v1["id"], strategy="recreate")

    op, v3 = _deploy(api, name, "v3", promote=True)

    assert op["result"]["promoted"] is True
    assert any(s["message"] == f"promoted: the hold on {name} is released" for s in op["steps"])
    app = App.objects.get(name=name)
    assert str(app.current_revision_id) == v3["id"] and app.held is False
    assert str(app.previous_revision_id) == v1["id"]
