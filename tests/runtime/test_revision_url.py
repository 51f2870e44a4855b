"""`http://GATEWAY/<app>@<revision prefix>/<path>`: one revision called directly,
whatever is Current, under the app's auth rules."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User

from dashboard.controlplane.models import ApiToken, App, Profile, Revision, RevisionStatus, Role
from tests.conftest import wait_until
from tests.runtime.conftest import deploy_example

pytestmark = pytest.mark.django_db(transaction=True)


def _token(username: str, role: Role) -> tuple[User, str]:
    user = User.objects.create_user(username)
    Profile.objects.create(user=user, role=role)
    return user, ApiToken.issue(user, "test", role)[1]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _two_versions(name: str, mode: str = "public", owner: User | None = None):
    """An app whose Current revision says version 2, with an older one saying version 1."""
    app = App.objects.create(name=name, auth_mode=mode, owner=owner)
    old = deploy_example(app, "demo", replace={'VERSION = "1"': 'VERSION = "old"'})
    new = deploy_example(app, "demo", replace={'VERSION = "1"': 'VERSION = "new"'})
    return app, old, new


def test_an_old_revision_answers_by_its_prefix_while_another_is_current(runtime):
    _, old, new = _two_versions("demo")
    response = runtime.gateway("GET", f"/demo@{old.id.hex[:8]}/version")
    assert response.status_code == 200, response.text
    assert response.json() == {"version": "old"}
    assert response.headers["X-Switchboard-Revision"] == str(old.id)
    # The alias did not move: the app's own URL still answers from Current.
    current = runtime.gateway("GET", "/demo/version")
    assert current.json() == {"version": "new"}
    assert current.headers["X-Switchboard-Revision"] == str(new.id)
    assert App.objects.get(name="demo").current_revision_id == new.id
    # The old revision was cold-started with a runner of its own.
    assert {r["revision"] for r in runtime.runners("demo")} == {str(old.id), str(new.id)}


def test_a_full_id_with_dashes_and_a_post_body_reach_the_revision(runtime):
    _, old, _ = _two_versions("demo")
    response = runtime.gateway("POST", f"/demo@{old.id}/", json={"name": "Ada"})
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Hello, Ada!", "version": "old"}
    assert response.headers["X-Switchboard-Revision"] == str(old.id)


def test_the_current_revisions_prefix_is_served_by_the_apps_runners(runtime):
    _, _, new = _two_versions("demo")
    assert runtime.gateway("GET", "/demo/version").status_code == 200
    response = runtime.gateway("GET", f"/demo@{new.id.hex[:10]}/version")
    assert response.json() == {"version": "new"}
    assert response.headers["X-Switchboard-Revision"] == str(new.id)
    assert {r["revision"] for r in runtime.runners("demo")} == {str(new.id)}


def test_a_private_apps_revision_answers_only_its_owner_and_admins(runtime):
    owner, owner_token = _token("owner", Role.DEPLOYER)
    _, other_token = _token("other", Role.DEPLOYER)
    _, admin_token = _token("boss", Role.ADMIN)
    _, old, _ = _two_versions("mine", "private", owner)
    path = f"/mine@{old.id.hex[:8]}/version"
    assert runtime.gateway("GET", path, headers=_bearer(owner_token)).json() == {"version": "old"}
    assert runtime.gateway("GET", path, headers=_bearer(admin_token)).status_code == 200
    refused = runtime.gateway("GET", path, headers=_bearer(other_token))
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "app 'mine' is private: only its owner and admins may call it"
    )
    missing = runtime.gateway("GET", path)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_token"
    # Auth comes first: an unknown prefix tells a stranger nothing about the revisions.
    assert runtime.gateway("GET", "/mine@ffffffff/version").status_code == 401


def test_a_shared_apps_revision_needs_any_valid_token(runtime):
    owner, _ = _token("owner", Role.DEPLOYER)
    _, viewer_token = _token("looker", Role.VIEWER)
    _, old, _ = _two_versions("team", "shared", owner)
    path = f"/team@{old.id.hex[:8]}/version"
    assert runtime.gateway("GET", path, headers=_bearer(viewer_token)).json() == {"version": "old"}
    invalid = runtime.gateway("GET", path, headers=_bearer("sbt_not-a-real-token"))
    assert invalid.status_code == 401
    assert invalid.json()["error"]["code"] == "invalid_token"


def test_a_public_apps_revision_answers_anyone(runtime):
    _, old, _ = _two_versions("open")
    response = runtime.gateway("GET", f"/open@{old.id.hex[:8]}/version")
    assert response.status_code == 200
    assert response.headers["X-Switchboard-Revision"] == str(old.id)


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (RevisionStatus.SUSPENDED, "revision_suspended", "is Suspended: resume it to call it"),
        (RevisionStatus.FAILED, "revision_failed", "is Failed and never serves"),
        (RevisionStatus.DEPLOYING, "revision_deploying", "is still Deploying"),
    ],
)
def test_a_revision_that_is_not_deployed_refuses_and_starts_nothing(runtime, status, code, says):
    _, old, _ = _two_versions("demo")
    Revision.objects.filter(pk=old.pk).update(status=status)
    response = runtime.gateway("GET", f"/demo@{old.id.hex[:8]}/version")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] == f"revision {old.id.hex[:8]} of app 'demo' {says}" or (
        says in error["message"] and old.id.hex[:8] in error["message"]
    )
    assert response.headers["X-Switchboard-Revision"] == str(old.id)
    assert runtime.runners("demo") == []


def test_unknown_ambiguous_short_and_foreign_prefixes_are_refused_precisely(runtime):
    app, _, new = _two_versions("demo")
    other = App.objects.create(name="other", auth_mode="public")
    foreign = deploy_example(other, "demo")
    for suffix in ("1", "2"):
        Revision.objects.create(
            id=uuid.UUID("abcdef12" + "0" * 23 + suffix),
            app=app,
            status=RevisionStatus.DEPLOYED,
            entrypoint="app.py::Demo",
            bundle_sha256="0" * 64,
            bundle_size=0,
        )
    unknown = runtime.gateway("GET", "/demo@0123456789/version")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "app 'demo' has no revision '0123456789'"
    ambiguous = runtime.gateway("GET", "/demo@abcdef12/version")
    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"]["code"] == "ambiguous_revision"
    assert "is ambiguous in app 'demo'" in ambiguous.json()["error"]["message"]
    short = runtime.gateway("GET", "/demo@abc/version")
    assert short.status_code == 400
    assert "too short" in short.json()["error"]["message"]
    junk = runtime.gateway("GET", "/demo@not-hex!/version")
    assert junk.status_code == 400
    assert "is not a revision id" in junk.json()["error"]["message"]
    elsewhere = runtime.gateway("GET", f"/demo@{foreign.id.hex[:8]}/version")
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"]["code"] == "revision_of_another_app"
    assert "belongs to app 'other'" in elsewhere.json()["error"]["message"]
    # Nothing was started for any refusal, and the Current revision still serves.
    assert runtime.runners("demo") == []
    assert runtime.gateway("GET", "/demo/version").headers["X-Switchboard-Revision"] == str(new.id)


def test_a_revision_whose_setup_fails_answers_503_with_the_reason(runtime):
    app = App.objects.create(name="demo", auth_mode="public")
    broken = deploy_example(app, "broken_setup", current=False)
    deploy_example(app, "demo")
    response = runtime.gateway("GET", f"/demo@{broken.id.hex[:8]}/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "runner_start_failed"
    wait_until(
        lambda: all(
            r["state"] == "FAILED"
            for r in runtime.runners("demo")
            if r["revision"] == str(broken.id)
        ),
        what="the broken revision's runner to be FAILED",
    )
