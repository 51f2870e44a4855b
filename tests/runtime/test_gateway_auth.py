"""Who may call an app through the gateway: its auth mode decides."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from dashboard.controlplane.models import ApiToken, App, Profile, Role
from tests.runtime.conftest import deploy_example

pytestmark = pytest.mark.django_db(transaction=True)


def _token(username: str, role: Role) -> tuple[User, str]:
    user = User.objects.create_user(username)
    Profile.objects.create(user=user, role=role)
    return user, ApiToken.issue(user, "test", role)[1]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def people():
    owner, owner_token = _token("owner", Role.DEPLOYER)
    _, other_token = _token("other", Role.DEPLOYER)
    _, admin_token = _token("boss", Role.ADMIN)
    return owner, {"owner": owner_token, "other": other_token, "admin": admin_token}


def _app(name: str, mode: str, owner: User) -> None:
    app = App.objects.create(name=name, auth_mode=mode, owner=owner)
    deploy_example(app, "demo")


def test_a_public_app_answers_anyone(runtime, people):
    _app("open", "public", people[0])
    assert runtime.gateway("GET", "/open/").status_code == 200


def test_a_shared_app_needs_any_valid_token(runtime, people):
    _app("team", "shared", people[0])
    missing = runtime.gateway("GET", "/team/")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_token"
    invalid = runtime.gateway("GET", "/team/", headers=_bearer("sbt_not-a-real-token"))
    assert invalid.status_code == 401
    assert invalid.json()["error"]["code"] == "invalid_token"
    assert runtime.gateway("GET", "/team/", headers=_bearer(people[1]["other"])).status_code == 200


def test_a_private_app_answers_only_its_owner_and_admins(runtime, people):
    _app("mine", "private", people[0])
    tokens = people[1]
    assert runtime.gateway("GET", "/mine/", headers=_bearer(tokens["owner"])).status_code == 200
    assert runtime.gateway("GET", "/mine/", headers=_bearer(tokens["admin"])).status_code == 200
    refused = runtime.gateway("GET", "/mine/", headers=_bearer(tokens["other"]))
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "app 'mine' is private: only its owner and admins may call it"
    )
    assert runtime.gateway("GET", "/mine/").status_code == 401


def test_a_revoked_token_or_an_inactive_user_is_refused(runtime, people):
    _app("strict", "shared", people[0])
    user, token = _token("leaver", Role.VIEWER)
    user.is_active = False
    user.save()
    assert runtime.gateway("GET", "/strict/", headers=_bearer(token)).status_code == 401
    _, revoked = _token("revoked", Role.VIEWER)
    from django.utils import timezone

    ApiToken.objects.filter(user__username="revoked").update(revoked_at=timezone.now())
    assert runtime.gateway("GET", "/strict/", headers=_bearer(revoked)).status_code == 401
