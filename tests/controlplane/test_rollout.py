from __future__ import annotations

import pytest

from dashboard.controlplane import executors
from dashboard.controlplane.models import App, Operation
from tests.controlplane.conftest import app_state, assert_refused

pytestmark = pytest.mark.django_db


def test_a_rollout_answers_202_with_the_operation(deployer, demo_app):
    response = deployer.post("apps/demo/rollout", {"force": True, "reason": "leak"})
    assert response.status_code == 202
    op = response.json()["operation"]
    assert (op["kind"], op["params"], op["reason"]) == ("rollout", {"force": True}, "leak")
    assert op["revision"] == str(demo_app.current_revision_id)


def test_a_rollout_of_an_app_without_a_current_revision_is_refused(deployer, demo_app):
    App.objects.update(current_revision=None)
    before = app_state()
    response = deployer.post("apps/demo/rollout")
    assert_refused(response, 409, "app 'demo' has no current revision to roll out", before)


def test_force_must_be_a_boolean(deployer, demo_app):
    before = app_state()
    response = deployer.post("apps/demo/rollout", {"force": "maybe"})
    assert_refused(response, 400, "force must be true or false, got 'maybe'", before)


def test_with_the_runtime_down_the_rollout_fails_with_the_reason(deployer, demo_app):
    response = deployer.post("apps/demo/rollout")
    executors.execute(response.json()["operation"]["id"])
    op = Operation.objects.get()
    assert op.state == "failed"
    assert op.error.startswith("runtime unavailable")
