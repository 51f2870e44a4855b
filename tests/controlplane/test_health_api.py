"""GET /api/v1/apps/APP/health and the `health` object on every app: its shape against the
OpenAPI document, its figures under real gateway traffic, and its answer while the runtime
is down ("unavailable", never a 5xx)."""

from __future__ import annotations

import pytest

from dashboard.controlplane.api.contract import document
from dashboard.controlplane.health import SCALED_TO_ZERO
from dashboard.controlplane.models import App
from tests.runtime.conftest import deploy_example, runtime, runtime_factory  # noqa: F401
from tests.runtime.test_health import BOOM

KEYS = {"status", "message", "window_s", "current", "previous", "runners", "summary"}


def _documented(name: str) -> set[str]:
    return set(document()["components"]["schemas"][name]["properties"])


def test_the_document_describes_every_key_of_the_answer():
    assert _documented("Health") == KEYS
    assert "health" in _documented("AppDetail")
    assert "health" in _documented("AppListed")
    traffic = {"requests", "errors_5xx", "error_rate", "p50_ms", "p99_ms", "window_s"}
    assert traffic <= _documented("RevisionTraffic")
    assert "get" in document()["paths"]["/apps/{app}/health"]


# -- the runtime is down (the fixtures point the client at a closed port) -------------------


def test_with_the_runtime_down_the_health_is_unavailable_not_an_error(viewer, demo_app):
    response = viewer.get("apps/demo/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == KEYS | {"app"}
    assert body["app"] == "demo"
    assert body["status"] == "unavailable"
    assert body["message"].startswith("runtime unavailable: cannot connect to")
    assert (body["current"], body["previous"], body["runners"]) == (None, None, None)
    assert body["summary"] == "unavailable"


def test_with_the_runtime_down_the_app_list_and_detail_still_answer(viewer, demo_app):
    listed = viewer.get("apps")
    assert listed.status_code == 200
    (app,) = listed.json()["apps"]
    assert app["health"]["status"] == "unavailable"
    assert app["current_revision"]["id"] == str(demo_app.current_revision_id)
    detail = viewer.get("apps/demo")
    assert detail.status_code == 200
    assert detail.json()["health"]["status"] == "unavailable"


def test_an_app_without_a_current_revision_has_no_figures(viewer, db):
    App.objects.create(name="empty")
    body = viewer.get("apps/empty/health").json()
    assert body["status"] == "no current revision"
    assert body["current"] is None and body["runners"] is None


def test_an_unknown_app_is_a_404_naming_it(viewer, db):
    response = viewer.get("apps/nope/health")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "no app named 'nope'"


def test_an_anonymous_caller_is_refused(demo_app):
    from tests.controlplane.conftest import ApiClient

    response = ApiClient(None).get("apps/demo/health")
    assert response.status_code == 401


# -- against a live runtime ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_figures_follow_real_gateway_traffic(runtime, api_as, settings):  # noqa: F811
    settings.RUNTIME_URL = runtime.admin_url
    previous = deploy_example("live", "fast", replace=BOOM)
    app = App.objects.get(name="live")
    current = deploy_example(app, "fast", replace={**BOOM, '"fast v1"': '"fast v2"'})
    app.refresh_from_db()
    app.previous_revision = previous
    app.save()
    viewer = api_as("viewer")

    quiet = viewer.get("apps/live/health").json()
    assert quiet["status"] == "available"
    assert quiet["current"]["revision"] == str(current.id)
    assert quiet["current"]["requests"] == 0
    assert quiet["current"]["p99_ms"] is None
    assert quiet["runners"]["scaled_to_zero"] is True
    assert quiet["runners"]["text"] == SCALED_TO_ZERO
    assert quiet["summary"] == "0 req · scaled to zero"

    for _ in range(9):
        assert runtime.gateway("POST", "/live/", json={}).status_code == 200
    assert runtime.gateway("GET", "/live/boom").status_code == 500
    # Previous, called by its own URL.
    assert runtime.gateway("POST", f"/live@{previous.short_id}/", json={}).status_code == 200

    body = viewer.get("apps/live/health").json()
    now = body["current"]
    assert (now["requests"], now["errors_5xx"], now["error_rate"]) == (10, 1, 0.1)
    assert 0 < now["p50_ms"] <= now["p99_ms"]
    assert now["window_s"] == body["window_s"] == 300
    assert now["short_id"] == current.short_id
    assert now["text"].startswith("10 req · 1 5xx (10%) · p50 ")
    assert body["previous"]["revision"] == str(previous.id)
    assert body["previous"]["requests"] == 1
    assert body["runners"] == {
        "ready": 1,
        "busy": 0,
        "starting": 0,
        "failing": 0,
        "scaled_to_zero": False,
        "text": "1 ready",
    }
    assert body["summary"].startswith("10 req · 10% 5xx · p99 ")
    assert body["summary"].endswith(" ms · 1 ready")

    (listed,) = viewer.get("apps").json()["apps"]
    assert listed["health"]["current"]["requests"] == 10


def test_the_summary_reads_as_one_short_line():
    from dashboard.controlplane import health

    assert health.percent(0.0083) == "0.8%"
    assert health.percent(0.15) == "15%"
    assert health.percent(0.0) == "0%"
    assert health.percent(0.0004) == "<0.1%"  # Some errors are never shown as 0%.
    assert health.milliseconds(45.3) == "45 ms"
    assert health.milliseconds(0.42) == "0.4 ms"
    current = {"requests": 120, "errors_5xx": 1, "error_rate": 0.0083, "p99_ms": 45.3}
    runners = {"text": "2 ready · 1 busy"}
    assert health.summary(current, runners) == "120 req · 0.8% 5xx · p99 45 ms · 2 ready · 1 busy"
    assert health.summary({**current, "requests": 0}, {"text": SCALED_TO_ZERO}) == (
        "0 req · scaled to zero"
    )
