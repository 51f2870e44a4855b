from __future__ import annotations

import pytest

from dashboard.controlplane.models import App, Operation, Revision
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


def test_deleting_the_alias_keeps_revisions_and_history_and_is_recorded(admin, demo_app):
    current = demo_app.current_revision_id
    response = admin.delete("apps/demo", {"reason": "retire"})
    assert response.status_code == 200
    op = response.json()["operation"]
    assert op["kind"] == "delete_alias"
    assert op["state"] == "succeeded"
    assert op["reason"] == "retire"
    assert op["revision"] == str(current)
    app = App.objects.get()
    assert app.current_revision_id is None
    assert Revision.objects.filter(pk=current).exists()
    assert admin.get("apps/demo").json()["status"] == "no current revision"


def test_deleting_an_alias_that_points_nowhere_is_refused(admin, demo_app):
    App.objects.update(current_revision=None)
    response = admin.delete("apps/demo")
    assert response.status_code == 409
    assert not Operation.objects.exists()
