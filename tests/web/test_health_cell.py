"""The Apps page's Health column and the Versions page's health panel: Current's traffic
over the last five minutes and its runners, from a live runtime, and "unavailable" when
the runtime is down."""

from __future__ import annotations

import pytest
from django.test import Client

from dashboard.controlplane.health import SCALED_TO_ZERO
from dashboard.controlplane.models import App
from tests.runtime.conftest import deploy_example, runtime, runtime_factory  # noqa: F401
from tests.runtime.test_health import BOOM
from tests.web.factories import make_user


def health_cell(html: str, app: str) -> str:
    row = html.split(f'data-app="{app}"', 1)[1].split("</tr>", 1)[0]
    return row.split('data-label="Health (5 min)">', 1)[1].split("</td>", 1)[0]


def test_with_the_runtime_down_the_apps_page_says_health_is_unavailable(viewer, demo):
    response = viewer.get("/")
    assert response.status_code == 200
    cell = health_cell(response.content.decode(), "demo")
    assert 'data-health="unavailable"' in cell
    assert "health unavailable" in cell


def test_with_the_runtime_down_the_versions_page_says_so_too(viewer, demo):
    response = viewer.get("/apps/demo/versions")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="health-unavailable"' in html
    assert "runtime unavailable" in html


@pytest.mark.django_db(transaction=True)
def test_the_pages_show_current_and_previous_figures_from_real_traffic(runtime, settings):  # noqa: F811
    settings.RUNTIME_URL = runtime.admin_url
    previous = deploy_example("shown", "fast", replace=BOOM)
    app = App.objects.get(name="shown")
    current = deploy_example(app, "fast", replace={**BOOM, '"fast v1"': '"fast v2"'})
    app.refresh_from_db()
    app.previous_revision = previous
    app.save()
    client = Client()
    client.force_login(make_user("viewer"))

    cell = health_cell(client.get("/").content.decode(), "shown")
    assert 'data-requests="0"' in cell
    assert "no requests" in cell
    assert SCALED_TO_ZERO in cell

    for _ in range(3):
        assert runtime.gateway("POST", "/shown/", json={}).status_code == 200
    assert runtime.gateway("GET", "/shown/boom").status_code == 500

    cell = health_cell(client.get("/").content.decode(), "shown")
    assert 'data-requests="4" data-errors="1"' in cell
    assert "4 req · 1 5xx (25%) · p50 " in cell
    assert "1 ready" in cell

    html = client.get("/apps/shown/versions").content.decode()
    panel = html.split('data-testid="health-panel"', 1)[1].split("</section>", 1)[0]
    assert f"Current <code>{current.short_id}</code>: 4 req · 1 5xx (25%)" in panel
    assert f"Previous <code>{previous.short_id}</code>: no requests" in panel
