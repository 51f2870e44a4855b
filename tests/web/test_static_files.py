"""Static files: hashed names, compressed copies and year-long cache lifetimes once
collected (dashboard/web/staticstorage.py), plain names before collectstatic ran."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_without_collectstatic_pages_name_the_source_files(viewer, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "never-collected"
    html = viewer.get("/").content.decode()
    assert 'href="/static/css/switchboard.css"' in html


def test_collected_files_are_hashed_compressed_and_cached_for_a_year(viewer, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest = json.loads((settings.STATIC_ROOT / "staticfiles.json").read_text())["paths"]
    css = manifest["css/switchboard.css"]
    assert re.fullmatch(r"css/switchboard\.[0-9a-f]{12}\.css", css)
    assert (settings.STATIC_ROOT / f"{css}.gz").exists()
    assert manifest["vendor/idiomorph-0.7.4/idiomorph-ext.min.js"] != (
        "vendor/idiomorph-0.7.4/idiomorph-ext.min.js"
    )

    html = viewer.get("/").content.decode()
    assert f'href="/static/{css}"' in html

    # A new client: WhiteNoise indexes STATIC_ROOT when its middleware starts.
    response = Client().get(f"/static/{css}", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "immutable" in response["Cache-Control"]
    max_age = int(re.search(r"max-age=(\d+)", response["Cache-Control"]).group(1))
    assert max_age >= 365 * 24 * 3600
