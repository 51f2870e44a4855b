"""Deploy preview (POST /api/v1/apps/APP/revisions/preview): the revision a deploy would
create, from the same staging and import check, with nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings

from dashboard.controlplane.models import ApiToken, App, Operation, OperationStep, Revision
from tests.controlplane.conftest import ApiClient, app_source, make_bundle
from tests.controlplane.test_deploy import deploy_and_run

pytestmark = pytest.mark.django_db


def state() -> tuple[dict[str, int], set[Path]]:
    """Every row count a deploy would change, and every file under the var dir."""
    counts = {
        model.__name__: model.objects.count() for model in (App, Revision, Operation, OperationStep)
    }
    files = {p for p in Path(settings.VAR_DIR).rglob("*") if p.is_file()}
    return counts, files


def preview(client, app: str, source: str | None = None, **fields):
    data = {
        "entrypoint": fields.pop("entrypoint", "app.py::Fast"),
        "bundle": _upload(
            make_bundle(fields.pop("files", None) or {"app.py": source or app_source()})
        ),
        **fields,
    }
    return client.client.post(
        f"/api/v1/apps/{app}/revisions/preview", data, headers=client.headers()
    )


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("bundle.tar.gz", data, content_type="application/gzip")


def test_a_first_deploy_preview_shows_the_codes_values_and_creates_nothing(deployer):
    before = state()
    response = preview(deployer, "fresh", app_source(keep_alive=30, machine_type="M"))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["app_exists"] is False
    assert body["entrypoint"] == "app.py::Fast"
    assert body["endpoints"] == ["/"]
    assert body["diff"] is None and body["current"] is None
    rows = {r["name"]: r for r in body["settings"]}
    assert rows["keep_alive"]["value"] == 30 and rows["keep_alive"]["source"] == "code"
    assert rows["machine_type"]["value"] == "M" and rows["machine_type"]["source"] == "code"
    assert rows["max_concurrency"]["source"] == "default"
    assert state() == before
    assert not list((Path(settings.VAR_DIR) / "incoming").iterdir())


def test_a_preview_inherits_tunables_from_current_and_diffs_against_it(deployer):
    deploy_and_run(deployer, source=app_source(keep_alive=30, machine_type="S"))
    App.objects.filter(name="demo").update(
        settings={**App.objects.get(name="demo").settings, "max_concurrency": 7}
    )
    before = state()
    response = preview(
        deployer,
        "demo",
        app_source("there", keep_alive=99, machine_type="M"),
        message="try",
        annotations=json.dumps({"ticket": "OPS-2"}),
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    rows = {r["name"]: r for r in body["settings"]}
    # Runtime-tunables come from the alias (the previous Current), code-specific from the code.
    assert rows["keep_alive"] == {
        "name": "keep_alive",
        "kind": "runtime-tunable",
        "unit": "s",
        "value": 30,
        "code": 99,
        "current": 30,
        "source": "previous_current",
    }
    assert rows["max_concurrency"]["value"] == 7
    assert rows["machine_type"]["value"] == "M" and rows["machine_type"]["source"] == "code"
    current = App.objects.get(name="demo").current_revision
    assert body["current"] == str(current.id)
    changes = body["diff"]
    assert changes["a"]["id"] == str(current.id) and changes["b"]["status"] == "preview"
    (entry,) = changes["files"]["entries"]
    assert entry["path"] == "app.py" and entry["change"] == "changed"
    assert '+        return {"hello": "there"}' in entry["diff"]
    settings_rows = {r["name"]: r for r in changes["settings"]}
    assert settings_rows["machine_type"]["changed"] is True
    assert settings_rows["keep_alive"]["changed"] is False
    assert {f["name"]: f["b"] for f in changes["fields"]}["message"] == "try"
    assert state() == before


def test_reset_scale_takes_the_tunables_from_the_code(deployer):
    deploy_and_run(deployer, source=app_source(keep_alive=30))
    response = preview(deployer, "demo", app_source(keep_alive=99), reset_scale="true")
    rows = {r["name"]: r for r in response.json()["settings"]}
    assert rows["keep_alive"]["value"] == 99 and rows["keep_alive"]["source"] == "code"


def test_a_failing_import_check_is_422_with_the_error_and_leaves_nothing(deployer):
    deploy_and_run(deployer)
    before = state()
    response = preview(deployer, "demo", "import not_a_module_anywhere\n")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "import_check_failed"
    assert "ModuleNotFoundError" in error["message"]
    assert error["message"].endswith("; the deploy would fail")
    assert state() == before


def test_out_of_range_code_values_are_422(deployer):
    response = preview(deployer, "fresh", app_source(max_concurrency=5000))
    assert response.status_code == 422
    assert "max_concurrency=5000 is out of range" in response.json()["error"]["message"]
    assert not App.objects.exists()


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"entrypoint": "app.py::"}, 400, ""),
        (
            {"entrypoint": "missing.py::Fast"},
            400,
            "entrypoint file 'missing.py' is not in the bundle",
        ),
        ({"strategy": "sideways"}, 400, "strategy must be rolling or recreate, got 'sideways'"),
        ({"reset_scale": "maybe"}, 400, "reset_scale must be true or false, got 'maybe'"),
        ({"annotations": "[1]"}, 400, "annotations must be a JSON object mapping strings"),
        ({"auth_mode": "open"}, 400, "auth_mode must be one of private, shared, public"),
        ({"colour": "blue"}, 400, "colour"),
    ],
)
def test_bad_input_is_refused_precisely_and_changes_nothing(deployer, fields, status, says):
    before = state()
    response = preview(deployer, "fresh", **fields)
    assert response.status_code == status, response.json()
    assert says in response.json()["error"]["message"]
    assert state() == before


def test_a_bad_app_name_a_missing_bundle_and_a_viewer_are_refused(deployer, viewer):
    assert preview(deployer, "Bad_Name").status_code == 400
    no_bundle = deployer.client.post(
        "/api/v1/apps/demo/revisions/preview",
        {"entrypoint": "app.py::Fast"},
        headers=deployer.headers(),
    )
    assert no_bundle.status_code == 400
    assert no_bundle.json()["error"]["message"].startswith("no bundle")
    refused = preview(viewer, "demo")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "this needs the deployer role; your role is viewer"


def test_widening_another_users_apps_auth_mode_is_refused_as_the_deploy_would_be(
    deployer, admin, make_user
):
    deploy_and_run(deployer)
    someone = make_user("someone", "deployer")
    stranger = ApiClient(ApiToken.issue(someone, "t", "deployer")[1], someone)
    before = state()
    refused = preview(stranger, "demo", auth_mode="public")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "auth_mode_widening_forbidden"
    assert refused.json()["error"]["message"].endswith("; the deploy would be refused")
    # An admin may widen it: the preview says what the deploy would create, and changes nothing.
    assert preview(admin, "demo", auth_mode="public").status_code == 200
    assert App.objects.get(name="demo").auth_mode == "private"
    assert state() == before
