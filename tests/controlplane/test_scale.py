from __future__ import annotations

import pytest

from dashboard.controlplane.models import App, Operation
from tests.controlplane.conftest import app_state, assert_refused

pytestmark = pytest.mark.django_db


def test_scale_changes_runtime_tunables_at_once_and_records_what_changed(deployer, demo_app):
    response = deployer.post("apps/demo/scale", {"keep_alive": 60, "min_concurrency": 1})
    assert response.status_code == 200
    body = response.json()
    assert body["settings"]["keep_alive"] == 60
    assert body["notes"] == []
    op = body["operation"]
    assert (op["kind"], op["state"]) == ("scale", "succeeded")
    assert op["result"]["changed"] == {"keep_alive": [300, 60], "min_concurrency": [0, 1]}
    assert App.objects.get().settings["min_concurrency"] == 1
    assert App.objects.get().scale_overrides == []


def test_a_number_sent_as_text_is_recorded_as_the_number_that_took_effect(deployer, demo_app):
    op = deployer.post("apps/demo/scale", {"keep_alive": "45"}).json()["operation"]
    assert op["params"] == {"keep_alive": 45}
    assert App.objects.get().settings["keep_alive"] == 45


def test_scaling_a_code_specific_value_says_the_next_deploy_or_set_rev_resets_it(
    deployer, demo_app
):
    response = deployer.post("apps/demo/scale", {"machine_type": "L"})
    notes = response.json()["notes"]
    assert notes == [
        "machine_type is code-specific: the next deploy or set-rev resets it to the "
        "revision's value"
    ]
    assert response.json()["operation"]["result"]["notes"] == notes
    app = App.objects.get()
    assert app.settings["machine_type"] == "L"
    assert app.scale_overrides == ["machine_type"]


def test_out_of_range_values_are_refused_listing_each_with_its_range_and_nothing_changes(
    deployer, demo_app
):
    before = dict(App.objects.get().settings)
    response = deployer.post(
        "apps/demo/scale", {"keep_alive": -1, "max_concurrency": 5000, "machine_type": "XXL"}
    )
    assert response.status_code == 400
    errors = response.json()["error"]["details"]["errors"]
    assert errors["keep_alive"] == "keep_alive=-1 is out of range; allowed: 0–86400"
    assert errors["max_concurrency"] == "max_concurrency=5000 is out of range; allowed: 1–1000"
    assert "allowed: one of XS, S, M, L" in errors["machine_type"]
    assert App.objects.get().settings == before
    assert not Operation.objects.exists()


def test_a_floor_above_the_ceiling_is_refused(deployer, demo_app):
    before = app_state()
    response = deployer.post("apps/demo/scale", {"min_concurrency": 6})
    assert_refused(response, 400, "exceeds max_concurrency=5", before)


def test_an_unknown_parameter_is_refused(deployer, demo_app):
    before = app_state()
    response = deployer.post("apps/demo/scale", {"keepalive": 5})
    error = assert_refused(response, 400, "unknown field 'keepalive'", before)
    assert error["code"] == "unknown_field"
    assert "unknown field 'keepalive'" in error["message"] and "keep_alive" in error["message"]


def test_an_empty_scale_is_refused(deployer, demo_app):
    before = app_state()
    response = deployer.post("apps/demo/scale", {"reason": "x"})
    assert_refused(response, 400, "nothing to change: give at least one of keep_alive", before)


def test_scaling_an_unknown_app_is_a_404(deployer):
    before = app_state("ghost")
    response = deployer.post("apps/ghost/scale", {"keep_alive": 1})
    assert_refused(response, 404, "no app named 'ghost'", before, app="ghost")
    assert not App.objects.filter(name="ghost").exists()
