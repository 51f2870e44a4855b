from __future__ import annotations

import json
import time

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.controlplane import executors
from dashboard.controlplane.events import apps_channel
from dashboard.controlplane.models import App, Operation
from tests.controlplane.conftest import add_revision

pytestmark = pytest.mark.django_db


@pytest.fixture
def older(demo_app):
    return add_revision(
        demo_app, code={"machine_type": "M", "startup_timeout": 90, "keep_alive": 1}
    )


def test_recreate_moves_the_alias_in_the_request_and_records_the_operation(deployer, older):
    response = deployer.post(
        "apps/demo/set-rev",
        {"revision": older.short_id, "strategy": "recreate", "reason": "bad release"},
    )
    assert response.status_code == 200
    op = response.json()["operation"]
    assert (op["kind"], op["state"], op["reason"]) == ("set_rev", "succeeded", "bad release")
    assert op["revision"] == str(older.id)
    assert op["requester"] == "deployer-user"
    assert App.objects.get().current_revision == older
    # The runtime is down here: the switch stands and a step says the runtime was not told.
    # The runtime is told before "done", as in a rolling switch.
    messages = [s["message"] for s in op["steps"]]
    assert "runtime could not be told" in messages[-2]
    assert messages[-1] == f"done: demo serves {older.short_id}"


def test_recreate_announces_the_apps_new_state_once_committed(
    deployer, demo_app, older, django_capture_on_commit_callbacks
):
    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(apps_channel())
    try:
        with django_capture_on_commit_callbacks(execute=True):
            deployer.post("apps/demo/set-rev", {"revision": older.short_id, "strategy": "recreate"})
        # get_message also answers None for the subscription's own notice, so loop.
        deadline, message = time.monotonic() + 5, None
        while message is None and time.monotonic() < deadline:
            message = subscriber.get_message(timeout=0.1)
    finally:
        subscriber.close()

    # The gateway routes by this state without reading the database; the generation
    # orders it after every earlier switch of the app.
    state = json.loads(message["data"])["state"]
    assert state["revision"]["id"] == str(older.id)
    assert state["revision"]["status"] == "deployed"
    assert state["settings"] == App.objects.get().settings
    assert (state["app_id"], state["generation"]) == (demo_app.pk, demo_app.generation + 1)


def test_recreate_locks_the_app_row_once_and_does_not_reread_it(deployer, older):
    with CaptureQueriesContext(connection) as queries:
        response = deployer.post(
            "apps/demo/set-rev", {"revision": older.short_id, "strategy": "recreate"}
        )
    assert response.status_code == 200
    reads_of_the_app = [
        q["sql"] for q in queries if q["sql"].startswith('SELECT "controlplane_app"')
    ]
    assert len(reads_of_the_app) == 1
    assert reads_of_the_app[0].endswith("FOR UPDATE")


def test_set_rev_keeps_runtime_tunables_and_takes_code_specific_values_from_the_target(
    deployer, demo_app, older
):
    deployer.post("apps/demo/set-rev", {"revision": str(older.id), "strategy": "recreate"})
    settings = App.objects.get().settings
    assert settings["keep_alive"] == 300  # tuned on the alias, kept
    assert settings["max_concurrency"] == 5
    assert settings["machine_type"] == "M"  # from the target's code
    assert settings["startup_timeout"] == 90
    older.refresh_from_db()
    assert older.settings["keep_alive"] == 1  # a revision keeps what it was deployed with


def test_set_rev_resets_code_specific_values_changed_by_scale(deployer, older):
    response = deployer.post("apps/demo/scale", {"max_multiplexing": 8})
    assert "reset" in response.json()["notes"][0]
    deployer.post("apps/demo/set-rev", {"revision": older.short_id, "strategy": "recreate"})
    app = App.objects.get()
    assert app.settings["max_multiplexing"] == 1
    assert app.scale_overrides == []


def test_rolling_answers_202_and_queues_the_operation(deployer, older):
    response = deployer.post("apps/demo/set-rev", {"revision": older.short_id})
    assert response.status_code == 202
    assert response.json()["operation"]["state"] == "queued"
    assert response.json()["operation"]["params"]["strategy"] == "rolling"


def test_a_rolling_switch_whose_target_cannot_start_leaves_the_alias_and_says_why(
    deployer, demo_app, older
):
    response = deployer.post("apps/demo/set-rev", {"revision": older.short_id})
    executors.execute(response.json()["operation"]["id"])
    op = Operation.objects.get()
    assert op.state == "failed"
    assert "runtime unavailable" in op.error
    assert App.objects.get().current_revision_id == demo_app.current_revision_id


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ("failed", "a Failed revision can never become Current"),
        ("suspended", "is Suspended; resume it"),
        ("deploying", "is still Deploying"),
    ],
)
def test_a_target_that_is_not_deployed_is_refused_with_why(deployer, demo_app, status, why):
    target = add_revision(demo_app, status=status)
    response = deployer.post("apps/demo/set-rev", {"revision": target.short_id})
    assert response.status_code == 409
    assert why in response.json()["error"]["message"]
    assert App.objects.get().current_revision_id == demo_app.current_revision_id
    assert not Operation.objects.exists()


def test_a_failed_targets_refusal_is_one_line_with_the_whole_error_in_details(deployer, demo_app):
    target = add_revision(demo_app, status="failed")
    target.error = "runner r-1 failed: setup() raised\nTraceback (most recent call last):\n  ..."
    target.save()
    response = deployer.post("apps/demo/set-rev", {"revision": target.short_id})
    error = response.json()["error"]
    assert "\n" not in error["message"]
    assert "setup() raised" in error["message"]
    assert error["details"]["error"] == target.error


def test_the_current_revision_is_refused_as_a_target(deployer, demo_app):
    response = deployer.post("apps/demo/set-rev", {"revision": demo_app.current_revision.short_id})
    assert response.status_code == 409
    assert "already Current" in response.json()["error"]["message"]


def test_another_apps_revision_is_refused_naming_its_app(deployer, demo_app):
    foreign = add_revision(App.objects.create(name="other"))
    response = deployer.post("apps/demo/set-rev", {"revision": foreign.short_id})
    assert response.status_code == 404
    assert "belongs to app 'other'" in response.json()["error"]["message"]
    assert not Operation.objects.exists()


def test_a_missing_revision_or_bad_strategy_is_refused(deployer, older):
    assert deployer.post("apps/demo/set-rev", {}).status_code == 400
    response = deployer.post("apps/demo/set-rev", {"revision": older.short_id, "strategy": "x"})
    assert response.status_code == 400
    assert not Operation.objects.exists()


def test_a_body_that_is_not_json_is_refused(deployer, older):
    response = deployer.client.post(
        "/api/v1/apps/demo/set-rev",
        "{nope",
        content_type="application/json",
        headers=deployer.headers(),
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
