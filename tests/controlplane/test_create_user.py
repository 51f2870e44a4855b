from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from dashboard.controlplane.models import role_of

pytestmark = pytest.mark.django_db


def test_it_creates_a_user_with_a_role_and_a_password():
    call_command(
        "create_user",
        "carol",
        "--role",
        "deployer",
        "--password",
        "s3cret-pass",
        stdout=io.StringIO(),
    )
    user = get_user_model().objects.get(username="carol")
    assert role_of(user) == "deployer"
    assert user.check_password("s3cret-pass")
    assert not user.is_staff


def test_an_admin_may_use_the_django_admin():
    call_command("create_user", "dave", "--role", "admin", stdout=io.StringIO())
    user = get_user_model().objects.get(username="dave")
    assert role_of(user) == "admin"
    assert user.is_staff
    assert not user.has_usable_password()


def test_running_it_again_changes_the_role():
    call_command("create_user", "erin", "--role", "admin", stdout=io.StringIO())
    call_command("create_user", "erin", "--role", "viewer", stdout=io.StringIO())
    assert role_of(get_user_model().objects.get(username="erin")) == "viewer"


def test_an_unknown_role_is_refused():
    with pytest.raises(CommandError):
        call_command("create_user", "frank", "--role", "root", stdout=io.StringIO())
