"""The site icon: linked from every dashboard page, and /favicon.ico (which the admin's
pages make browsers ask for) answers instead of logging a 404."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.test import Client

pytestmark = pytest.mark.django_db


def test_favicon_ico_redirects_to_the_svg_icon():
    response = Client().get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == static("favicon.svg")


def test_the_svg_icon_is_a_static_file():
    path = finders.find("favicon.svg")
    assert path is not None
    assert Path(path).read_text().startswith("<svg")


def test_every_page_links_the_icon():
    html = Client().get("/login/").content.decode()
    assert f'<link rel="icon" href="{static("favicon.svg")}" type="image/svg+xml">' in html
