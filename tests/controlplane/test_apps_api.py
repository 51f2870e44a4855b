from __future__ import annotations

import pytest

from dashboard.controlplane.models import App, Operation
from tests.controlplane.conftest import add_revision

pytestmark = pytest.mark.django_db


def test_it_lists_every_app_with_its_current_revision_and_last_operation(
    viewer, deployer, demo_app
):
    deployer.post("apps/demo/scale", {"keep_alive": 20})
    response = viewer.get("apps")
    assert response.status_code == 200
    [app] = response.json()["apps"]
    assert app["name"] == "demo"
    assert app["status"] == "serving"
    assert app["current_revision"]["id"] == str(demo_app.current_revision_id)
    assert app["current_revision"]["current"] is True
    assert app["last_operation"]["kind"] == "scale"
    assert app["last_operation"]["state"] == "succeeded"


def test_the_detail_shows_settings_revision_count_and_the_parameter_catalogue(viewer, demo_app):
    add_revision(demo_app)
    data = viewer.get("apps/demo").json()
    assert data["settings"]["keep_alive"] == 300
    assert data["revision_count"] == 2
    names = [p["name"] for p in data["parameters"]]
    assert "machine_type" in names and "keep_alive" in names


def test_an_unknown_app_is_a_404_naming_it(viewer):
    response = viewer.get("apps/nope")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "no app named 'nope'"


def test_an_unknown_api_path_answers_json_404(viewer):
    response = viewer.get("nothing/here")
    assert response.status_code == 404
    assert "openapi.json" in response.json()["error"]["message"]


def test_an_app_cannot_lose_its_current_revision_through_the_api(admin, demo_app):
    # DESIGN.md §1: exactly one Current revision once an app was deployed; to take an app
    # offline, suspend it.
    response = admin.delete("apps/demo")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert App.objects.get().current_revision_id == demo_app.current_revision_id
    assert not Operation.objects.exists()
