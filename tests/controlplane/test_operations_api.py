"""Operation records: detail with steps, history, serialisation per app, idempotency."""

from __future__ import annotations

import uuid

import pytest

from dashboard.controlplane.models import App, Operation
from tests.controlplane.conftest import (
    add_revision,
    app_source,
    app_state,
    assert_refused,
    make_bundle,
)

pytestmark = pytest.mark.django_db


def test_an_operation_is_shown_with_its_timestamped_steps(viewer, deployer, demo_app):
    op_id = deployer.post("apps/demo/scale", {"keep_alive": 7}).json()["operation"]["id"]
    data = viewer.get(f"operations/{op_id}").json()
    assert set(data) == {
        "id",
        "app",
        "kind",
        "state",
        "requester",
        "source",
        "reason",
        "params",
        "revision",
        "created_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "error",
        "result",
        "cancel",
        "steps",
    }
    assert data["app"] == "demo"
    assert data["params"] == {"keep_alive": 7}
    assert data["duration_ms"] >= 0
    assert data["steps"][0]["message"] == "scaled: keep_alive 300 → 7"
    assert data["steps"][0]["at"]


def test_an_unknown_or_malformed_operation_id_is_refused(viewer):
    unknown = uuid.uuid4()
    missing = viewer.get(f"operations/{unknown}")
    assert missing.status_code == 404
    assert str(unknown) in missing.json()["error"]["message"]
    malformed = viewer.get("operations/not-a-uuid")
    assert malformed.status_code == 400
    assert "'not-a-uuid'" in malformed.json()["error"]["message"]


def test_the_history_lists_every_operation_newest_first(viewer, deployer, demo_app):
    deployer.post("apps/demo/scale", {"keep_alive": 7})
    deployer.post("apps/demo/scale", {"keep_alive": 8})
    data = viewer.get("apps/demo/operations").json()
    assert data["count"] == 2
    assert [op["params"]["keep_alive"] for op in data["operations"]] == [8, 7]


def test_a_second_mutation_while_one_is_in_progress_is_refused_naming_it(deployer, demo_app):
    older = add_revision(demo_app)
    first = deployer.post("apps/demo/set-rev", {"revision": older.short_id}).json()["operation"]
    assert first["state"] == "queued"  # rolling, and no worker runs here: still in progress
    before = app_state()
    response = deployer.post("apps/demo/scale", {"keep_alive": 1})
    error = assert_refused(response, 409, f"set-rev operation {first['id']} is in progress", before)
    assert error["code"] == "operation_in_progress"
    assert error["details"] == {"operation": first["id"], "kind": "set_rev", "state": "queued"}
    assert App.objects.get().settings["keep_alive"] == 300


def test_operations_on_different_apps_do_not_block_each_other(deployer, demo_app):
    other = App.objects.create(name="other", settings=demo_app.settings)
    other.current_revision = add_revision(other)
    other.save()
    rollout = deployer.post("apps/demo/rollout")
    # The precondition: demo is busy (its rollout queued, no worker here), so demo is refused...
    assert (rollout.status_code, rollout.json()["operation"]["state"]) == (202, "queued")
    busy = deployer.post("apps/demo/scale", {"keep_alive": 1})
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "operation_in_progress"
    # ...while other, not busy, is not.
    scaled = deployer.post("apps/other/scale", {"keep_alive": 1})
    assert scaled.status_code == 200, scaled.json()
    assert App.objects.get(name="other").settings["keep_alive"] == 1


def test_the_same_idempotency_key_returns_the_original_operation_and_applies_nothing_again(
    deployer, demo_app
):
    first = deployer.post("apps/demo/scale", {"keep_alive": 7}, **{"Idempotency-Key": "k-1"})
    App.objects.update(settings={**demo_app.settings, "keep_alive": 99})
    again = deployer.post("apps/demo/scale", {"keep_alive": 7}, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["operation"]["id"] == first.json()["operation"]["id"]
    assert App.objects.get().settings["keep_alive"] == 99
    assert Operation.objects.count() == 1


def test_a_retried_deploy_with_the_same_key_creates_one_revision(deployer):
    bundle = make_bundle({"app.py": app_source()})
    key = {"headers": {"Idempotency-Key": "deploy-1"}}
    first = deployer.deploy("fresh", bundle, **key)
    again = deployer.deploy("fresh", bundle, **key)
    assert again.json()["operation"]["id"] == first.json()["operation"]["id"]
    assert again.json()["revision"]["id"] == first.json()["revision"]["id"]
    assert App.objects.get().revisions.count() == 1


def test_another_requester_with_the_same_key_gets_its_own_operation(api_as, demo_app):
    one, two = api_as("deployer"), api_as("admin")
    a = one.post("apps/demo/scale", {"keep_alive": 7}, **{"Idempotency-Key": "same"})
    b = two.post("apps/demo/scale", {"keep_alive": 8}, **{"Idempotency-Key": "same"})
    assert a.json()["operation"]["id"] != b.json()["operation"]["id"]
    assert App.objects.get().settings["keep_alive"] == 8


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("scale", {"keep_alive": 7}),
        ("hold-policy", {"hold_on_rollback": False}),
        ("network", {"network": "outbound"}),
        ("retention", {"keep": 5}),
        ("suspend", {}),
        ("set-rev", {"revision": "OLDER", "strategy": "recreate"}),
        ("revisions/OLDER/pin", {}),
        ("rollout", {}),
    ],
)
def test_every_mutation_replays_a_repeated_key_and_applies_nothing_again(
    admin, demo_app, path, body
):
    older = add_revision(demo_app)
    path = path.replace("OLDER", older.short_id)
    body = {k: (older.short_id if v == "OLDER" else v) for k, v in body.items()}
    first = admin.post(f"apps/demo/{path}", body, **{"Idempotency-Key": f"once-{path}"})
    assert first.status_code in (200, 202), first.json()
    before = (App.objects.values().get(), list(Operation.objects.values("id", "state")))
    again = admin.post(f"apps/demo/{path}", body, **{"Idempotency-Key": f"once-{path}"})
    assert again.status_code in (200, 202)
    assert again.json()["replayed"] is True
    assert again.json()["operation"]["id"] == first.json()["operation"]["id"]
    assert (App.objects.values().get(), list(Operation.objects.values("id", "state"))) == before
