from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client

from dashboard.web.runners import counts_by_app, for_display

pytestmark = pytest.mark.django_db


def test_the_page_says_the_runtime_is_unavailable_and_still_renders(viewer, demo):
    response = viewer.get("/apps/demo/runners")
    assert response.status_code == 200
    assert b'data-testid="runtime-unavailable"' in response.content
    assert b'id="runners-region"' in response.content


def test_the_htmx_fragment_renders_the_panel_alone(viewer, demo):
    html = viewer.get("/apps/demo/runners", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="runners-region"' in html and "<html" not in html


def test_anonymous_visitors_are_sent_to_login(demo):
    assert Client().get("/apps/demo/runners").status_code == 302


def test_uptime_and_time_left_before_idle_shutdown_are_computed_from_the_runtimes_times():
    runner = {
        "id": "r-1",
        "app": "demo",
        "revision": "0123456789abcdef0123456789abcdef",
        "state": "IDLE",
        "in_flight": 0,
        "started_at": "2026-01-01T12:00:00+00:00",
        "idle_shutdown_at": "2026-01-01T12:05:00+00:00",
    }
    with time_machine.travel(datetime(2026, 1, 1, 12, 4, 30, tzinfo=UTC), tick=False):
        [shown] = for_display([runner])
    assert shown["uptime"] == 270
    assert shown["idle_left"] == 30
    assert shown["short_revision"] == "01234567"


def test_runner_counts_are_grouped_by_app_and_leave_out_terminated_runners():
    runners = [
        {"app": "a", "state": "IDLE"},
        {"app": "a", "state": "RUNNING"},
        {"app": "a", "state": "IDLE"},
        {"app": "a", "state": "TERMINATED"},
        {"app": "b", "state": "SETUP"},
    ]
    assert counts_by_app(runners) == {"a": [("RUNNING", 1), ("IDLE", 2)], "b": [("SETUP", 1)]}
