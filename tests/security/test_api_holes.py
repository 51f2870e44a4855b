"""Issue 9, item 8: the control API's smaller holes, each refused with a precise 4xx that
changes nothing. Every test re-reads the rows it could have changed.

(The gateway's holes of item 8, tracebacks and chunked trailers, are tested with the
gateway.)
"""

# Fixtures are imported from their conftest modules by name, and requested by name.
# ruff: noqa: F811
from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard.controlplane import rules, tokens
from dashboard.controlplane.models import App, Operation, Revision
from tests.controlplane.conftest import (  # noqa: F401 - fixtures used by name
    _isolated,
    admin,
    api_as,
    app_source,
    demo_app,
    deployer,
    make_bundle,
    make_user,
)
from tests.runtime.conftest import deploy_example, runtime, runtime_factory  # noqa: F401

pytestmark = pytest.mark.django_db


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:200]
    return response.json()["error"]


def snapshot(app: App) -> tuple:
    """What a refused call on `app` must leave as it was."""
    app = App.objects.get(pk=app.pk)
    return (
        app.current_revision_id,
        app.auth_mode,
        app.settings,
        app.generation,
        sorted(str(r) for r in Revision.objects.filter(app=app).values_list("id", flat=True)),
        Operation.objects.count(),
    )


# -- full-match name patterns -------------------------------------------------------------


def test_an_app_name_with_a_trailing_newline_is_refused(deployer):
    bundle = make_bundle({"app.py": app_source()})

    response = deployer.deploy("demo%0A", bundle)

    assert response.status_code == 400
    error = error_of(response)
    assert error["message"].startswith("'demo\\n' is not a valid app name")
    assert not App.objects.exists() and not Revision.objects.exists()
    assert not Operation.objects.exists()


def test_every_name_pattern_refuses_a_trailing_newline():
    # `$` matches before a final newline; the patterns anchor with \Z instead.
    from dashboard.controlplane.models import app_name_validator
    from dashboard.controlplane.rules import HEX_RE
    from dashboard.runtime.admin_api import RUNNER_ID_RE, UUID_RE

    assert rules.app_name_error("demo\n") is not None
    with pytest.raises(Exception, match="App names are"):
        app_name_validator("demo\n")
    for pattern, good in (
        (HEX_RE, "abcdef12"),
        (RUNNER_ID_RE, "r-abcdef12"),
        (UUID_RE, "0" * 32),
    ):
        assert pattern.match(good) and not pattern.match(good + "\n"), pattern.pattern


# -- Idempotency-Key bound to the request --------------------------------------------------


def test_an_idempotency_key_reused_for_a_different_request_is_refused(deployer, demo_app):
    first = deployer.post("apps/demo/scale", {"keep_alive": 7}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 200
    before = snapshot(demo_app)

    other_body = deployer.post("apps/demo/scale", {"keep_alive": 8}, **{"Idempotency-Key": "k-1"})
    other_path = deployer.post("apps/demo/rollout", {}, **{"Idempotency-Key": "k-1"})

    for response in (other_body, other_path):
        assert response.status_code == 422
        error = error_of(response)
        assert error["code"] == "idempotency_key_reused"
        assert "Idempotency-Key 'k-1' was already used for a different request" in error["message"]
        assert error["details"]["operation"] == first.json()["operation"]["id"]
    assert snapshot(demo_app) == before
    assert App.objects.get().settings["keep_alive"] == 7
    # The same request with the same key still replays, whatever the JSON's spacing.
    again = deployer.client.post(
        "/api/v1/apps/demo/scale",
        '{ "keep_alive" :7 }',
        content_type="application/json",
        headers=deployer.headers({"Idempotency-Key": "k-1"}),
    )
    assert again.status_code == 200 and again.json()["replayed"] is True


def test_a_deploy_key_reused_with_another_bundle_is_refused(deployer):
    key = {"headers": {"Idempotency-Key": "deploy-1"}}
    first = deployer.deploy("fresh", make_bundle({"app.py": app_source("one")}), **key)
    assert first.status_code == 202, first.json()

    response = deployer.deploy("fresh", make_bundle({"app.py": app_source("two")}), **key)

    assert response.status_code == 422
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert Revision.objects.count() == 1 and Operation.objects.count() == 1


# -- unknown body fields -----------------------------------------------------------------


def test_an_unknown_field_in_a_rollout_is_refused(deployer, demo_app):
    before = snapshot(demo_app)

    response = deployer.post("apps/demo/rollout", {"forse": True})

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unknown_field"
    assert error["message"] == (
        "unknown field 'forse' in the request body; allowed: force, reason, expected_current"
    )
    assert error["details"] == {
        "unknown": ["forse"],
        "allowed": ["force", "reason", "expected_current"],
    }
    assert snapshot(demo_app) == before


def test_unknown_fields_are_refused_on_every_mutating_endpoint(api_as, admin, demo_app):
    rev = demo_app.current_revision.short_id
    before = snapshot(demo_app)
    calls = [
        ("post", "apps/demo/set-rev", {"revision": rev, "strategie": "recreate"}),
        ("post", "apps/demo/scale", {"keep_alive": 5, "why": "x"}),
        ("post", "apps/demo/suspend", {"rev": rev}),
        ("post", "apps/demo/resume", {"rev": rev}),
        ("delete", f"apps/demo/revisions/{rev}", {"force": True}),
        ("post", "runners/r-12345678/stop", {"replce": True}),
        ("post", "runners/r-12345678/kill", {"replace": True}),
    ]
    for method, path, body in calls:
        response = getattr(admin, method)(path, body)
        assert response.status_code == 400, (path, response.content)
        assert error_of(response)["code"] == "unknown_field", path
    # A deploy's form fields too.
    response = admin.deploy("demo", make_bundle({"app.py": app_source()}), promot="true")
    assert response.status_code == 400
    assert "unknown field 'promot'" in error_of(response)["message"]
    assert snapshot(demo_app) == before


# -- the source --------------------------------------------------------------------------


def test_an_api_token_claiming_the_dashboard_as_source_is_refused(deployer, demo_app):
    before = snapshot(demo_app)

    response = deployer.post(
        "apps/demo/scale", {"keep_alive": 5}, **{"X-Switchboard-Source": "dashboard"}
    )

    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "source_not_allowed"
    assert "reserved for the dashboard's own worker" in error["message"]
    assert snapshot(demo_app) == before


def test_the_dashboards_worker_token_is_recorded_as_the_dashboard(deployer, demo_app):
    from tests.controlplane.conftest import ApiClient

    worker = ApiClient(tokens.issue_dashboard_token(deployer.user), deployer.user)

    # Whatever it claims: the credential says where the call comes from.
    response = worker.post("apps/demo/scale", {"keep_alive": 5}, **{"X-Switchboard-Source": "cli"})

    assert response.status_code == 200, response.content
    assert Operation.objects.get().source == "dashboard"


# -- JSON depth --------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_json_is_refused(deployer, demo_app, depth):
    before = snapshot(demo_app)
    body = '{"reason": ' + "[" * depth + "]" * depth + "}"

    response = deployer.client.post(
        "/api/v1/apps/demo/rollout",
        body,
        content_type="application/json",
        headers=deployer.headers(),
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "json_too_deep"
    assert error["message"] == "the request body is nested more than 32 levels deep"
    assert snapshot(demo_app) == before


# -- JSON 404 and 405 under /api/ -----------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [("post", "/api/v1/nope"), ("get", "/api/v2/apps"), ("post", "/api/"), ("get", "/api")],
)
def test_unknown_api_paths_answer_a_json_404_even_without_csrf(method, path):
    response = getattr(Client(enforce_csrf_checks=True), method)(path)

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert error["message"] == f"no API endpoint at {path}; see /api/v1/openapi.json"


def test_a_wrong_method_on_a_public_api_page_is_a_json_405():
    response = Client(enforce_csrf_checks=True).post("/api/v1/openapi.json")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "GET"


# -- sign-in throttling ---------------------------------------------------------------------


def test_failed_sign_ins_are_throttled(settings):
    user = get_user_model().objects.create_user("alice", password="pw-secret-1")
    browser = Client()
    limit = settings.AXES_FAILURE_LIMIT

    answers = [
        browser.post("/login/", {"username": "alice", "password": f"wrong-{i}"})
        for i in range(limit)
    ]

    assert [a.status_code for a in answers[:-1]] == [200] * (limit - 1)
    assert answers[-1].status_code == 429
    # Now even the right password is refused, and no session starts.
    locked = browser.post("/login/", {"username": "alice", "password": "pw-secret-1"})
    assert locked.status_code == 429
    assert "Too many failed sign-ins for this username from your address" in locked.text
    assert "_auth_user_id" not in browser.session
    user.refresh_from_db()
    assert user.last_login is None
    # Another username from the same address is not locked out.
    get_user_model().objects.create_user("bob", password="pw-secret-2")
    assert (
        Client().post("/login/", {"username": "bob", "password": "pw-secret-2"}).status_code == 302
    )


def test_failed_api_token_checks_are_throttled_but_a_valid_token_still_works(
    settings, deployer, demo_app
):
    from tests.controlplane.conftest import ApiClient

    forger = ApiClient("sbt_guessed")
    answers = [forger.get("me") for _ in range(settings.AXES_FAILURE_LIMIT + 1)]

    assert [a.status_code for a in answers[:-1]] == [401] * settings.AXES_FAILURE_LIMIT
    assert answers[-1].status_code == 429
    error = error_of(answers[-1])
    assert error["code"] == "too_many_failed_attempts"
    assert error["message"].startswith("invalid API token; too many failed token checks")
    # The CLI and the dashboard's worker share the address: a valid token is not refused.
    assert deployer.get("me").status_code == 200


# -- widening an app's auth mode -------------------------------------------------------------


def test_a_deployer_may_not_make_someone_elses_private_app_public(deployer, demo_app):
    assert demo_app.owner != deployer.user
    before = snapshot(demo_app)

    response = deployer.deploy("demo", make_bundle({"app.py": app_source()}), auth_mode="public")

    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "auth_mode_widening_forbidden"
    assert error["message"] == (
        "only the app's owner or an admin may widen its auth mode from private to public; "
        "nothing was deployed"
    )
    assert snapshot(demo_app) == before
    assert App.objects.get().auth_mode == "private"


def test_widening_is_the_owners_or_an_admins_and_narrowing_anyones():
    assert rules.auth_mode_refusal("private", "shared", owner=False, role="deployer")
    assert rules.auth_mode_refusal("shared", "public", owner=False, role="deployer")
    assert rules.auth_mode_refusal("private", "public", owner=True, role="deployer") is None
    assert rules.auth_mode_refusal("private", "public", owner=False, role="admin") is None
    assert rules.auth_mode_refusal("public", "private", owner=False, role="deployer") is None


def test_the_owner_may_widen_their_apps_auth_mode(api_as, demo_app):
    from dashboard.controlplane.models import ApiToken
    from tests.controlplane.conftest import ApiClient

    _, raw = ApiToken.issue(demo_app.owner, "owner", "deployer")
    owner = ApiClient(raw, demo_app.owner)

    response = owner.deploy("demo", make_bundle({"app.py": app_source()}), auth_mode="shared")

    assert response.status_code == 202, response.content
    assert App.objects.get().auth_mode == "shared"


# -- the runtime admin API checks the control API's parameter rules --------------------------


@pytest.mark.django_db(transaction=True)
def test_the_runtime_admin_api_refuses_values_the_control_api_refuses(runtime):
    revision = deploy_example("svc", "fast", current=False)
    path = f"/revisions/{revision.id}/runners"

    for settings_, message in (
        ({"max_concurrency": 0}, "max_concurrency=0 is out of range; allowed: 1–1000"),
        ({"keep_alive": -1}, "keep_alive=-1 is out of range; allowed: 0–86400"),
        ({"machine_type": "XXL"}, "machine_type 'XXL' is not in the catalogue"),
        ({"keepalive": 5}, "unknown parameter 'keepalive'"),
        ({"min_concurrency": 5}, "min_concurrency=5 exceeds max_concurrency=2"),
    ):
        response = runtime.admin("POST", path, json={"count": 1, "settings": settings_})
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]["message"]
    deep = runtime.admin("POST", path, content=("[" * 50 + "]" * 50).encode())
    assert deep.status_code == 400
    assert deep.json()["error"]["message"] == "the request body is nested more than 32 levels deep"
    assert runtime.runners("svc") == []

    app = App.objects.get(name="svc")
    from dashboard.controlplane.events import app_state

    state = app_state(app)
    state["settings"] = {**state["settings"], "request_timeout": 10**9}
    refused = runtime.admin("POST", "/apps/svc/sync", json={"state": state})
    assert refused.status_code == 400
    assert "request_timeout=1000000000 is out of range" in refused.json()["error"]["message"]
    assert runtime.runners("svc") == []
    # The app's network too: only the control API's values (an admin's choice) are taken.
    state = {**app_state(app), "network": "everywhere"}
    refused = runtime.admin("POST", "/apps/svc/sync", json={"state": state})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        "state's network must be one of off, outbound, got 'everywhere'"
    )


# -- form bodies: read only when they can be accepted ---------------------------------------


def test_a_malformed_deploy_form_is_a_400_not_a_500(deployer):
    response = deployer.client.post(
        "/api/v1/apps/fresh/revisions",
        b"--x\r\nnot a part",
        content_type="multipart/form-data; boundary=",
        headers=deployer.headers(),
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_form"
    assert error["message"].startswith("the form body is malformed: Invalid boundary")
    assert not App.objects.exists() and not Operation.objects.exists()


def test_a_form_declared_too_large_is_refused_before_it_is_read(deployer, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    bundle = make_bundle({"app.py": app_source(), "pad.bin": os.urandom(5000)})

    response = deployer.deploy("fresh", bundle)

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "too_large"
    assert error["message"].endswith("bytes; the most allowed is 1000")
    assert not App.objects.exists() and not Operation.objects.exists()
