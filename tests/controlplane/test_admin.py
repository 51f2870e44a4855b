from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard.controlplane.models import ApiToken, App, Operation, Revision, hash_token
from tests.controlplane.conftest import ApiClient, add_revision

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(make_user):
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", None)
    client = Client()
    client.force_login(superuser)
    return client


def test_creating_a_token_in_the_admin_shows_the_raw_token_once(staff_client, make_user):
    owner = make_user("owner", "deployer")
    response = staff_client.post(
        "/admin/controlplane/apitoken/add/",
        {"user": owner.pk, "name": "ci", "role": "deployer"},
        follow=True,
    )
    assert response.status_code == 200
    token = ApiToken.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    raw = next(m.split(": ")[-1] for m in shown if "shown only this once" in m)
    assert hash_token(raw) == token.token_hash
    assert ApiClient(raw).get("me").json()["username"] == "owner"


def test_the_role_is_edited_inline_on_the_user(staff_client, make_user):
    user = make_user("someone", "viewer")
    response = staff_client.get(f"/admin/auth/user/{user.pk}/change/")
    assert b"Switchboard role" in response.content


def test_operations_are_read_only_in_the_admin(staff_client):
    assert staff_client.get("/admin/controlplane/operation/add/").status_code == 403
    assert staff_client.get("/admin/controlplane/operation/").status_code == 200


def test_apps_and_revisions_are_read_only_in_the_admin(staff_client, demo_app):
    # Which revision is Current changes only through the control API, which checks the
    # rules, tells the runtime and records History; the admin would skip all three.
    failed = add_revision(demo_app, status="failed")
    current = demo_app.current_revision
    app_url = f"/admin/controlplane/app/{demo_app.pk}/"
    assert staff_client.get(app_url + "change/").status_code == 200  # Viewable...
    refused = staff_client.post(app_url + "change/", {"current_revision": str(failed.pk)})
    assert refused.status_code == 403  # ...not editable.
    assert staff_client.post(app_url + "delete/", {"post": "yes"}).status_code == 403
    assert staff_client.get("/admin/controlplane/app/add/").status_code == 403
    revision_url = f"/admin/controlplane/revision/{failed.pk}/"
    assert staff_client.post(revision_url + "delete/", {"post": "yes"}).status_code == 403
    listing = staff_client.post(
        "/admin/controlplane/revision/",
        {"action": "delete_selected", "_selected_action": [str(current.pk)], "post": "yes"},
    )
    assert listing.status_code in (200, 302)  # The bulk delete action isn't offered.
    demo_app.refresh_from_db()
    assert demo_app.current_revision == current
    assert Revision.objects.filter(app=demo_app).count() == 2
    assert App.objects.count() == 1 and not Operation.objects.exists()
