"""The 404, 403 and 500 pages: styled like the rest of the dashboard, saying precisely
what went wrong, with a way back to the Apps list."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import Client

from dashboard.controlplane.models import Role
from tests.web.factories import make_app, make_user

pytestmark = pytest.mark.django_db


def error_page(response, status: int) -> str:
    """The page's HTML, once it is the dashboard's own error page with a way back."""
    html = response.content.decode()
    assert response.status_code == status
    assert 'data-testid="error-page"' in html
    assert 'href="/" data-testid="back-to-apps"' in html
    return html


@pytest.mark.parametrize("tab", ["versions", "runners", "history"])
def test_an_unknown_app_gets_a_styled_404_naming_it(viewer, tab):
    html = error_page(viewer.get(f"/apps/nope/{tab}"), 404)
    assert "no app named &#x27;nope&#x27;" in html
    assert "switchboard.css" in html  # The site's own page, not Django's bare one.


def test_an_address_that_matches_no_page_says_which_address(viewer):
    response = viewer.get("/no/such/page")
    html = response.content.decode()
    assert response.status_code == 404
    assert "There is no page at <code>/no/such/page</code>" in html
    assert "Resolver404" not in html


def test_the_404_page_works_for_visitors_who_are_not_signed_in():
    response = Client().get("/no/such/page")
    assert response.status_code == 404
    assert 'data-testid="back-to-apps"' in response.content.decode()


def test_a_403_page_says_which_role_is_needed(viewer, demo):
    _app, old, _current, _failed = demo
    html = error_page(viewer.get(f"/apps/demo/confirm/rollback?rev={old.short_id}"), 403)
    assert "This needs the Deployer role; you have Viewer." in html


def test_the_500_page_renders_without_any_context():
    # Django's server_error view renders 500.html with an empty context and no request.
    html = render_to_string("500.html")
    assert 'data-testid="error-page"' in html
    assert "Something went wrong" in html
    assert 'href="/" data-testid="back-to-apps"' in html


def test_the_404_page_has_the_same_header_as_every_page(staff_admin):
    html = staff_admin.get("/no/such/page").content.decode()
    assert 'data-testid="current-role">Admin<' in html
    assert "Users &amp; tokens" in html


def test_the_403_page_has_the_same_header_as_every_page(db):
    client = Client()
    client.force_login(make_user(Role.VIEWER, "vic"))
    make_app("demo")
    html = client.get("/apps/demo/confirm/rollout").content.decode()
    assert 'data-testid="current-role">Viewer<' in html
