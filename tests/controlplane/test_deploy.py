"""Deploy: the upload's checks (nothing is created on bad input) and the executor's
parameter rules, run for real with the import check in a child process. Strategy
recreate needs no runner, so the whole deploy runs here without the runtime."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from dashboard.controlplane import executors
from dashboard.controlplane.models import App, Operation, Revision
from tests.controlplane.conftest import add_revision, app_source, make_bundle

pytestmark = pytest.mark.django_db


def deploy_and_run(client, app="demo", source=None, **fields):
    bundle = make_bundle({"app.py": source or app_source()})
    response = client.deploy(app, bundle, strategy=fields.pop("strategy", "recreate"), **fields)
    assert response.status_code == 202, response.json()
    op_id = response.json()["operation"]["id"]
    executors.execute(op_id)
    op = Operation.objects.get(pk=op_id)
    return response, op, Revision.objects.get(pk=response.json()["revision"]["id"])


def nothing_created():
    return (
        not App.objects.exists()
        and not Revision.objects.exists()
        and not Operation.objects.exists()
    )


def test_the_first_deploy_creates_the_app_owned_by_the_requester(deployer):
    bundle = make_bundle({"app.py": app_source()})
    response = deployer.deploy(
        "fresh",
        bundle,
        message="first",
        annotations=json.dumps({"ticket": "OPS-1"}),
        auth_mode="public",
    )
    assert response.status_code == 202
    body = response.json()
    assert body["operation"]["kind"] == "deploy"
    assert body["operation"]["state"] == "queued"
    assert body["operation"]["source"] == "cli"
    assert body["revision"]["status"] == "deploying"
    assert body["revision"]["annotations"] == {"ticket": "OPS-1"}
    app = App.objects.get(name="fresh")
    assert app.owner == deployer.user
    assert app.auth_mode == "public"
    revision = Revision.objects.get()
    assert (revision.bundle_dir / "app.py").is_file()


def test_a_recreate_deploy_becomes_deployed_and_current_after_the_import_check(deployer):
    _, op, revision = deploy_and_run(deployer, "fresh")
    assert op.state == "succeeded", op.error
    assert revision.status == "deployed"
    assert revision.endpoints == ["/"]
    assert App.objects.get().current_revision == revision
    messages = [s.message for s in op.steps.all()]
    assert any("import check passed" in m for m in messages)
    assert any("alias fresh now points to" in m for m in messages)


def test_the_first_deploy_uses_the_codes_values(deployer):
    _, _, revision = deploy_and_run(deployer, "fresh", source=app_source(keep_alive=42))
    assert revision.settings["keep_alive"] == 42
    assert App.objects.get().settings["keep_alive"] == 42


def test_a_deploy_inherits_runtime_tunables_from_the_alias_and_code_specific_from_the_code(
    deployer, demo_app
):
    source = app_source(keep_alive=1, max_concurrency=9, machine_type="M", startup_timeout=77)
    _, op, revision = deploy_and_run(deployer, source=source)
    assert op.state == "succeeded", op.error
    # keep_alive and max_concurrency were tuned on the alias (300, 5): they are kept.
    assert revision.settings["keep_alive"] == 300
    assert revision.settings["max_concurrency"] == 5
    # Code-specific values come from the new code.
    assert revision.settings["machine_type"] == "M"
    assert revision.settings["startup_timeout"] == 77
    assert revision.code_settings["keep_alive"] == 1
    assert App.objects.get().settings == revision.settings


def test_reset_scale_applies_the_codes_runtime_tunables(deployer, demo_app):
    source = app_source(keep_alive=1, max_concurrency=9)
    _, _, revision = deploy_and_run(deployer, source=source, reset_scale="true")
    assert revision.settings["keep_alive"] == 1
    assert revision.settings["max_concurrency"] == 9


def test_a_deploy_resets_code_specific_values_changed_by_scale(deployer, demo_app):
    deployer.post("apps/demo/scale", {"machine_type": "L"})
    assert App.objects.get().scale_overrides == ["machine_type"]
    _, _, revision = deploy_and_run(deployer, source=app_source(machine_type="S"))
    app = App.objects.get()
    assert app.settings["machine_type"] == "S"
    assert app.scale_overrides == []


def test_an_import_error_fails_the_revision_with_its_error_and_log_tail(deployer, demo_app):
    current = demo_app.current_revision_id
    _, op, revision = deploy_and_run(deployer, source="import no_such_module\n")
    assert op.state == "failed"
    assert revision.status == "failed"
    assert "ModuleNotFoundError" in revision.error
    assert "no_such_module" in revision.log_tail
    assert App.objects.get().current_revision_id == current


def test_code_declaring_out_of_range_values_fails_with_the_precise_message(deployer, demo_app):
    _, op, revision = deploy_and_run(deployer, source=app_source(startup_timeout=99999))
    assert op.state == "failed"
    assert revision.status == "failed"
    assert "startup_timeout=99999 is out of range; allowed: 1–3600" in revision.error
    assert App.objects.get().current_revision_id == demo_app.current_revision_id


def test_a_rolling_deploy_with_the_runtime_down_fails_and_leaves_the_alias(deployer, demo_app):
    _, op, revision = deploy_and_run(deployer, strategy="rolling")
    assert op.state == "failed"
    assert "runtime unavailable" in op.error
    assert revision.status == "failed"
    assert App.objects.get().current_revision_id == demo_app.current_revision_id


def test_a_viewer_may_not_deploy(viewer):
    response = viewer.deploy("fresh", make_bundle({"app.py": app_source()}))
    assert response.status_code == 403
    assert nothing_created()


def test_an_oversized_bundle_is_refused_with_413(deployer, settings):
    settings.MAX_BUNDLE_BYTES = 100
    response = deployer.deploy("fresh", make_bundle({"app.py": app_source() * 20}))
    assert response.status_code == 413
    assert "the most allowed is 100" in response.json()["error"]["message"]
    assert nothing_created()


def test_a_bundle_that_unpacks_too_large_is_refused_with_413(deployer, settings):
    settings.MAX_BUNDLE_UNPACKED_BYTES = 1000
    response = deployer.deploy("fresh", make_bundle({"app.py": app_source(), "big": "x" * 5000}))
    assert response.status_code == 413
    assert nothing_created()


def test_a_bundle_that_is_not_a_tar_gz_is_refused(deployer):
    response = deployer.deploy("fresh", b"PK\x03\x04 this is a zip, not a tar.gz")
    assert response.status_code == 400
    assert "not a valid tar.gz" in response.json()["error"]["message"]
    assert nothing_created()


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        source = app_source().encode()
        info = tarfile.TarInfo("app.py")
        info.size = len(source)
        tar.addfile(info, io.BytesIO(source))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/evil.py", "'../../etc/evil.py' escapes the bundle directory"),
        ("/etc/evil.py", "'/etc/evil.py' is an absolute path"),
        ("lib/../../evil.py", "'lib/../../evil.py' escapes the bundle directory"),
    ],
)
def test_an_entry_escaping_the_bundle_is_refused_by_name(deployer, name, expected):
    response = deployer.deploy("fresh", _tar_with(tarfile.TarInfo(name), b"x = 1\n"))
    assert response.status_code == 400
    assert expected in response.json()["error"]["message"]
    assert nothing_created()


def test_a_symlink_in_the_bundle_is_refused_by_name(deployer):
    link = tarfile.TarInfo("passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    response = deployer.deploy("fresh", _tar_with(link))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "'passwd' is a symbolic link" in message
    assert "only regular files and directories" in message
    assert nothing_created()


def test_a_hard_link_in_the_bundle_is_refused(deployer):
    link = tarfile.TarInfo("copy")
    link.type = tarfile.LNKTYPE
    link.linkname = "app.py"
    response = deployer.deploy("fresh", _tar_with(link))
    assert response.status_code == 400
    assert "hard link" in response.json()["error"]["message"]


def test_an_entrypoint_missing_from_the_bundle_is_refused(deployer):
    response = deployer.deploy("fresh", make_bundle({"other.py": "x = 1"}))
    assert response.status_code == 400
    assert "'app.py' is not in the bundle" in response.json()["error"]["message"]
    assert nothing_created()


def test_a_malformed_entrypoint_is_refused(deployer):
    response = deployer.deploy("fresh", make_bundle({"app.py": app_source()}), entrypoint="app")
    assert response.status_code == 400
    assert "path/to/file.py::ClassName" in response.json()["error"]["message"]


def test_annotations_must_map_strings_to_strings(deployer):
    bundle = make_bundle({"app.py": app_source()})
    response = deployer.deploy("fresh", bundle, annotations=json.dumps({"n": 1}))
    assert response.status_code == 400
    assert nothing_created()


def test_an_invalid_app_name_is_refused(deployer):
    response = deployer.deploy("Bad_Name", make_bundle({"app.py": app_source()}))
    assert response.status_code == 400
    assert "not a valid app name" in response.json()["error"]["message"]
    assert nothing_created()


def test_a_missing_bundle_field_is_refused(deployer):
    response = deployer.client.post(
        "/api/v1/apps/fresh/revisions", {"entrypoint": "app.py::Fast"}, headers=deployer.headers()
    )
    assert response.status_code == 400
    assert nothing_created()


def test_a_bad_strategy_is_refused(deployer):
    response = deployer.deploy("fresh", make_bundle({"app.py": app_source()}), strategy="yolo")
    assert response.status_code == 400


def test_a_deploy_while_another_operation_runs_is_refused_and_leaves_no_revision(
    deployer, demo_app
):
    add_revision(demo_app)
    deployer.post("apps/demo/rollout")
    response = deployer.deploy("demo", make_bundle({"app.py": app_source()}))
    assert response.status_code == 409
    assert "rollout operation" in response.json()["error"]["message"]
    assert Revision.objects.count() == 2
