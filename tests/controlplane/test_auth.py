from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.controlplane.models import ApiToken, App, Operation
from dashboard.controlplane.tokens import issue_dashboard_token
from tests.controlplane.conftest import ApiClient, app_state, assert_refused

pytestmark = pytest.mark.django_db


def test_a_call_without_a_token_is_refused_with_401_and_says_how_to_authenticate():
    response = ApiClient(None).get("apps")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "unauthenticated"
    assert "Bearer" in error["message"]


def test_an_unknown_token_is_refused_with_401():
    response = ApiClient("sbt_not-a-real-token").get("apps")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid API token"


def test_a_token_of_another_format_is_refused_with_401():
    assert ApiClient("hunter2").get("apps").status_code == 401


def test_a_revoked_token_is_refused(viewer):
    ApiToken.objects.update(revoked_at=timezone.now())
    response = viewer.get("apps")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_a_token_of_an_inactive_user_is_refused(viewer):
    viewer.user.is_active = False
    viewer.user.save()
    assert viewer.get("apps").status_code == 401


def test_me_reports_the_user_role_and_source(deployer):
    response = deployer.get("me")
    assert response.status_code == 200
    assert response.json() == {
        "username": "deployer-user",
        "email": "",
        "role": "deployer",
        "source": "cli",
    }


def test_a_token_never_grants_more_than_its_user_holds(make_user):
    user = make_user("demoted", "viewer")
    _, raw = ApiToken.issue(user, "old admin token", "admin")
    assert ApiClient(raw).get("me").json()["role"] == "viewer"


def test_a_dashboard_token_authenticates_as_its_user(make_user):
    user = make_user("web-user", "deployer")
    response = ApiClient(issue_dashboard_token(user)).get("me")
    assert response.status_code == 200
    assert response.json()["role"] == "deployer"


def test_a_forged_dashboard_token_is_refused():
    assert ApiClient("sbd_forged.value").get("me").status_code == 401


def test_using_a_token_records_when_it_was_last_used(viewer):
    assert ApiToken.objects.get().last_used_at is None
    viewer.get("apps")
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    viewer.get("apps")
    # Within a minute the timestamp is not rewritten, so reads stay reads.
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=5))
    viewer.get("apps")
    assert ApiToken.objects.get().last_used_at > first - timedelta(minutes=5)


def test_a_viewer_may_not_scale_and_nothing_changes(viewer, demo_app):
    before = dict(demo_app.settings)
    response = viewer.post("apps/demo/scale", {"keep_alive": 5})
    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"role": "viewer", "needed": "deployer"}
    assert App.objects.get().settings == before
    assert not Operation.objects.exists()


def test_a_deployer_may_not_suspend_or_delete_a_revision(deployer, demo_app):
    rev = demo_app.current_revision.short_id
    before = app_state()
    needs_admin = "this needs the admin role; your role is deployer"
    assert_refused(deployer.post("apps/demo/suspend"), 403, needs_admin, before)
    assert_refused(deployer.delete(f"apps/demo/revisions/{rev}"), 403, needs_admin, before)
    assert_refused(deployer.post("runners/r-12345678/kill"), 403, needs_admin, before)
    assert not Operation.objects.exists()


def test_the_source_header_is_recorded_on_the_operation(deployer, demo_app):
    deployer.post("apps/demo/scale", {"keep_alive": 5}, **{"X-Switchboard-Source": "api"})
    assert Operation.objects.get().source == "api"
    # `dashboard` is the dashboard's own worker (tests/security/test_api_holes.py).


def test_an_unknown_source_is_refused(deployer, demo_app):
    before = app_state()
    response = deployer.post("apps/demo/scale", {"keep_alive": 5}, **{"X-Switchboard-Source": "x"})
    assert_refused(response, 400, "X-Switchboard-Source", before)
    assert not Operation.objects.exists()


def test_a_wrong_method_is_answered_405_with_the_allowed_ones(viewer):
    response = viewer.post("me")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
