from __future__ import annotations

import pytest
from django.test import Client

from tests.web.factories import make_user

pytestmark = pytest.mark.django_db


def test_the_login_page_renders_a_form_with_csrf():
    response = Client().get("/login/")
    assert response.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in response.content
    assert b'name="username"' in response.content


def test_a_user_signs_in_and_lands_on_the_apps_page():
    make_user("viewer", "alice")
    response = Client().post("/login/", {"username": "alice", "password": "pw-secret-1"})
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_a_wrong_password_is_refused_with_a_message():
    make_user("viewer", "alice")
    response = Client().post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_signing_out_needs_a_post_and_ends_the_session(viewer):
    assert viewer.get("/").status_code == 200
    response = viewer.post("/logout/")
    assert response.status_code == 302
    assert viewer.get("/").status_code == 302


def test_a_csrf_less_sign_out_is_refused(db):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("viewer"))
    assert client.post("/logout/").status_code == 403


def test_a_user_deactivated_after_signing_in_is_signed_out_on_the_next_request(db):
    user = make_user("viewer", "alice")
    client = Client()
    assert (
        client.post("/login/", {"username": "alice", "password": "pw-secret-1"}).status_code == 302
    )
    assert client.get("/").status_code == 200
    user.is_active = False
    user.save()
    assert client.get("/").status_code == 302


def test_a_signed_out_htmx_poll_sends_the_page_to_sign_in(viewer):
    # Signed out in another tab while the Versions page polls its table: the browser
    # goes to the sign-in page instead of htmx swapping it into the table.
    viewer.post("/logout/")
    response = viewer.get(
        "/apps/demo/versions?page=2",
        headers={
            "HX-Request": "true",
            "HX-Current-URL": "http://testserver/apps/demo/versions?page=2",
        },
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/?next=%2Fapps%2Fdemo%2Fversions%3Fpage%3D2"
    assert not response.content
