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


def test_signed_in_the_login_page_says_who_and_links_to_the_dashboard(staff_admin):
    html = staff_admin.get("/login/").content.decode()
    assert 'data-testid="signed-in-as"' in html and "You are signed in as <strong>admin-" in html
    assert 'href="/" data-testid="continue"' in html
    # The header is the same as on every page, and signing in as someone else still works.
    assert 'data-testid="current-role">Admin<' in html and "Users &amp; tokens" in html
    assert 'name="username"' in html and "Sign in as someone else" in html


def test_signed_in_the_continue_link_goes_where_the_user_was_headed(viewer):
    html = viewer.get("/login/?next=/apps/demo/history").content.decode()
    assert 'href="/apps/demo/history" data-testid="continue"' in html


def test_the_continue_link_never_leads_off_site(viewer):
    html = viewer.get("/login/?next=https://evil.example/").content.decode()
    assert 'href="/" data-testid="continue"' in html


def test_signed_out_the_login_page_says_nothing_about_a_session(db):
    assert b'data-testid="signed-in-as"' not in Client().get("/login/").content
