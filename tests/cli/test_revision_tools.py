"""`switchboard apps diff` and `switchboard deploy --check` against the real system, and
an old revision called through its own URL while another is Current."""

from __future__ import annotations

import json

import httpx
import pytest

from dashboard.controlplane.models import App, Operation, Revision

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def test_apps_diff_shows_what_changed_between_two_revisions(sb):
    sb.deploy("compared", "v1")
    sb.deploy("compared", "v2")
    v2, v1 = sb.revisions("compared")

    shown = sb("apps", "diff", "compared", v1["id"][:8], v2["id"][:8]).stdout
    assert shown.splitlines()[0] == (
        f"compared: a = {v1['id'][:8]} (Deployed), b = {v2['id'][:8]} (Deployed, Current)"
    )
    assert "message: 'v1' → 'v2'" in shown
    assert "entrypoint: unchanged (app.py::Demo)" in shown
    assert "files: 0 added, 0 removed, 1 changed" in shown
    assert '-VERSION = "v1"\n+VERSION = "v2"\n' in shown
    assert "KIND" in shown and "runtime-tunable" in shown and "code-specific" in shown

    stat = sb("apps", "diff", "compared", v1["id"], v2["id"], "--stat").stdout
    assert "changed  app.py" in stat and '+VERSION = "v2"' not in stat

    as_json = json.loads(sb("apps", "diff", "compared", v1["id"], v2["id"], "--json").stdout)
    assert as_json["a"]["id"] == v1["id"] and as_json["b"]["current"] is True
    assert [e["path"] for e in as_json["files"]["entries"]] == ["app.py"]


def test_apps_diff_refuses_bad_and_unknown_revisions_with_one_line(sb):
    sb.deploy("refusing", "v1")
    [v1] = sb.revisions("refusing")

    short = sb("apps", "diff", "refusing", "abc", v1["id"], ok=False)
    assert short.returncode == 2
    assert "revision prefix 'abc' is too short: give at least 8 hex characters" in short.stderr
    unknown = sb("apps", "diff", "refusing", "0123456789", v1["id"], ok=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: app 'refusing' has no revision '0123456789'"


def test_deploy_check_previews_the_revision_and_changes_nothing(sb):
    sb.deploy("previewed", "v1")
    sb("apps", "scale", "previewed", "--keep-alive", "77")
    counts = (Revision.objects.count(), Operation.objects.count())

    result = sb("deploy", sb.source("v2"), "--app-name", "previewed", "-m", "v2", "--check")
    out = result.stdout
    assert out.splitlines()[0] == (
        "deploy preview of app previewed: nothing was deployed or changed"
    )
    assert "entrypoint  app.py::Demo" in out
    assert "endpoints   /, /version" in out
    keep_alive = next(line for line in out.splitlines() if line.startswith("keep_alive"))
    assert keep_alive.split()[1:] == ["runtime-tunable", "77", "previous", "Current"]
    mux = next(line for line in out.splitlines() if line.startswith("max_multiplexing"))
    assert mux.split()[1:] == ["code-specific", "4", "the", "code"]
    assert "message: 'v1' → 'v2'" in out
    assert '-VERSION = "v1"\n+VERSION = "v2"\n' in out
    assert "uploading" not in out
    # Nothing was created, and the app still serves v1.
    assert (Revision.objects.count(), Operation.objects.count()) == counts
    assert sb.served_version("previewed") == "v1"

    reset = json.loads(
        sb(
            "deploy",
            sb.source("v3"),
            "--app-name",
            "previewed",
            "--reset-scale",
            "--check",
            "--json",
        ).stdout
    )
    rows = {r["name"]: r for r in reset["settings"]}
    assert rows["keep_alive"]["value"] == 60 and rows["keep_alive"]["source"] == "code"


def test_deploy_check_of_a_new_app_says_it_would_be_created(sb):
    out = sb("deploy", sb.source("v1"), "--app-name", "brand-new", "--check").stdout
    assert "(the first deploy creates app brand-new)" in out
    assert "no Current revision to compare with" in out
    assert not App.objects.filter(name="brand-new").exists()


def test_deploy_check_of_code_that_does_not_import_fails_with_the_reason(sb):
    source = sb.source("v1")
    app_py = source.split("::")[0]
    with open(app_py, "a") as f:
        f.write("\nimport not_a_module_anywhere\n")
    result = sb("deploy", source, "--app-name", "broken-check", "--check", ok=False)
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr
    assert result.stderr.strip().endswith("; the deploy would fail")
    assert not App.objects.filter(name="broken-check").exists()


def test_an_old_revision_answers_through_its_own_url(sb):
    sb.deploy("urls", "v1")
    sb.deploy("urls", "v2")
    v2, v1 = sb.revisions("urls")
    response = httpx.get(f"{sb.gateway_url}/urls@{v1['id'][:8]}/version", timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"version": "v1"}
    assert response.headers["X-Switchboard-Revision"] == v1["id"]
    assert sb.served_version("urls") == "v2"
