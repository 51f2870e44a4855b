"""`switchboard apps list` shows each app's health: Current's requests, 5xx share and p99
over the last five minutes and its runners, as counted by the real gateway."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def health_column(listing: str, app: str) -> str:
    header, *rows = listing.splitlines()
    start = header.index("HEALTH (5 MIN)")
    (row,) = [r for r in rows if r.split()[0] == app]
    return row[start:].strip()


def test_apps_list_shows_the_current_revisions_traffic_and_runners(sb, viewer):
    sb.deploy("glance", "v1")  # A rolling deploy: one runner of Current is warm.
    for _ in range(4):
        response = httpx.post(f"{sb.gateway_url}/glance/", json={"name": "Ada"}, timeout=60)
        assert response.status_code == 200

    # On-call reads it with a viewer's token.
    column = health_column(viewer("apps", "list").stdout, "glance")
    assert column.startswith("4 req · 0% 5xx · p99 ")
    assert column.endswith(" ms · 1 ready")

    listed = json.loads(sb("apps", "list", "--json").stdout)["apps"]
    (app,) = [a for a in listed if a["name"] == "glance"]
    assert app["health"]["summary"] == column
    assert app["health"]["current"]["requests"] == 4
