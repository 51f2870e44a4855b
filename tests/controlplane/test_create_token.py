from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from dashboard.controlplane.models import ApiToken, hash_token
from tests.controlplane.conftest import ApiClient

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("create_token", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_it_prints_a_working_token_once_and_stores_only_its_hash(make_user):
    make_user("alice", "deployer")
    raw = run("alice", "--name", "laptop")
    assert raw.startswith("sbt_")
    token = ApiToken.objects.get()
    assert (token.name, token.role) == ("laptop", "deployer")
    assert token.token_hash == hash_token(raw)
    assert raw not in token.hint
    assert ApiClient(raw).get("me").json()["role"] == "deployer"


def test_it_may_issue_a_lower_role_than_the_users(make_user):
    make_user("alice", "admin")
    run("alice", "--role", "viewer")
    assert ApiToken.objects.get().role == "viewer"


def test_it_refuses_a_role_above_the_users(make_user):
    make_user("bob", "viewer")
    with pytest.raises(CommandError, match="cannot have a higher role"):
        run("bob", "--role", "admin")
    assert not ApiToken.objects.exists()


def test_it_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run("nobody")
