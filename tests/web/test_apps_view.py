from __future__ import annotations

import pytest
from django.test import Client

from dashboard.controlplane.models import OperationKind, OperationState
from tests.web.factories import make_app, make_operation, make_revision

pytestmark = pytest.mark.django_db


def test_it_lists_every_app_with_its_current_revision_and_last_operation(viewer, demo):
    app, _old, current, _failed = demo
    make_operation(app, OperationKind.SET_REV, revision=current, state=OperationState.FAILED)
    make_app("empty")
    response = viewer.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert current.short_id in html
    assert "the current one" in html
    assert "set-rev" in html and "Failed" in html
    assert "No revision yet" in html


def test_it_still_renders_when_the_runtime_is_unreachable(viewer, demo):
    response = viewer.get("/")
    assert response.status_code == 200
    assert b'data-testid="runtime-unavailable"' in response.content
    assert b"runtime unavailable" in response.content


def test_a_suspended_app_stands_out(viewer):
    app = make_app("paused")
    make_revision(app, "suspended", current=True)
    html = viewer.get("/").content.decode()
    assert 'data-suspended="true"' in html
    assert 'data-testid="app-suspended"' in html


def test_anonymous_visitors_are_sent_to_login(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_app_names_and_messages_are_escaped(viewer):
    app = make_app("x")
    make_revision(app, message="<script>alert(1)</script>", current=True)
    html = viewer.get("/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_admins_get_a_link_to_manage_users_and_tokens(db, admin, viewer):
    # The admin fixture's user is not staff, so give staff to a superuser.
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", "r@example.com", "pw-secret-1")
    client = Client()
    client.login(username="root", password="pw-secret-1")
    assert b"Users &amp; tokens" in client.get("/").content
    assert b"Users &amp; tokens" not in viewer.get("/").content
