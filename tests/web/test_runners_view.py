from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.test import Client, RequestFactory
from django_tables2 import RequestConfig

from dashboard.controlplane.models import Role
from dashboard.web.runners import AppRunners, counts_by_app, for_display
from dashboard.web.tables import RunnersTable
from tests.web.factories import make_app

pytestmark = pytest.mark.django_db


def test_the_page_says_the_runtime_is_unavailable_and_still_renders(viewer, demo):
    response = viewer.get("/apps/demo/runners")
    assert response.status_code == 200
    assert b'data-testid="runtime-unavailable"' in response.content
    # The control plane's words, as the API says them (runtime_client.error).
    assert b"runtime unavailable: cannot connect to" in response.content
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


def test_runner_counts_are_the_current_revisions_grouped_by_app_without_terminated_runners():
    runners = [
        {"app": "a", "revision": "aaaa-1", "state": "IDLE"},
        {"app": "a", "revision": "aaaa-1", "state": "RUNNING"},
        {"app": "a", "revision": "aaaa-1", "state": "IDLE"},
        {"app": "a", "revision": "aaaa-1", "state": "TERMINATED"},
        {"app": "a", "revision": "aaaa-0", "state": "FAILED"},
        {"app": "a", "revision": "aaaa-0", "state": "DRAINING"},
        {"app": "b", "revision": "bbbb1", "state": "SETUP"},
    ]
    counts = counts_by_app(runners, {"a": "aaaa1", "b": "bbbb-1"})
    assert counts["a"] == AppRunners(current=[("RUNNING", 1), ("IDLE", 2)], other_live=1)
    assert counts["b"] == AppRunners(current=[("SETUP", 1)])


def runner(state: str, **times: str) -> dict:
    return {
        "id": "r-e4cd0a20",
        "app": "demo",
        "revision": "0123456789abcdef0123456789abcdef",
        "state": state,
        "in_flight": 0,
        "started_at": "2026-01-01T12:00:00+00:00",
        **times,
    }


LATER = datetime(2026, 1, 1, 12, 0, 27, tzinfo=UTC)


@pytest.mark.parametrize("state", ["TERMINATED", "FAILED"])
def test_a_stopped_runner_has_no_uptime_and_no_time_left_before_idle_shutdown(state):
    # It lived 2 s and was killed long ago: an uptime counted from its start would grow for ever.
    gone = runner(state, idle_shutdown_at="2026-01-01T12:01:00+00:00")
    with time_machine.travel(LATER, tick=False):
        [shown] = for_display([gone])
    assert shown["uptime"] is None
    assert shown["idle_left"] is None
    assert shown["lifetime"] is None
    assert shown["active"] is False


def test_a_stopped_runner_shows_how_long_it_lived_when_the_runtime_says_when_it_ended():
    gone = runner("TERMINATED", ended_at="2026-01-01T12:00:02+00:00")
    with time_machine.travel(LATER, tick=False):
        [shown] = for_display([gone])
    assert shown["uptime"] is None
    assert shown["lifetime"] == 2


def render_table(records: list[dict], role: str = Role.ADMIN, app=None) -> str:
    request = RequestFactory().get("/apps/demo/runners")
    table = RunnersTable(records, app=app or make_app("demo"), role=role)
    RequestConfig(request, paginate=False).configure(table)
    return table.as_html(request)


def cell(html: str, label: str) -> str:
    return html.split(f'data-label="{label}"', 1)[1].split(">", 1)[1].split("</td>", 1)[0]


def test_the_table_shows_a_dash_for_a_stopped_runners_uptime_and_idle_shutdown():
    with time_machine.travel(LATER, tick=False):
        html = render_table(for_display([runner("TERMINATED")]))
    assert cell(html, "Uptime").strip() == "—"
    assert cell(html, "Idle shutdown in").strip() == "—"


def test_the_table_shows_a_stopped_runners_lifetime_when_it_is_known():
    with time_machine.travel(LATER, tick=False):
        html = render_table(for_display([runner("FAILED", ended_at="2026-01-01T12:00:02+00:00")]))
    assert "ran 2s" in cell(html, "Uptime")


def test_a_running_runners_uptime_still_counts_from_its_start():
    with time_machine.travel(LATER, tick=False):
        html = render_table(for_display([runner("RUNNING")]))
    assert cell(html, "Uptime").strip() == "27s"


def test_runner_and_revision_ids_are_marked_as_identifiers_that_never_wrap():
    html = render_table(for_display([runner("IDLE")]))
    assert '<td class="ident" data-label="Runner">r-e4cd0a20</td>' in html
    assert '<td class="ident" data-label="Revision">01234567</td>' in html


def test_every_cell_carries_its_column_label_for_the_phone_card_layout():
    html = render_table(for_display([runner("IDLE")]))
    assert 'class="table cards"' in html
    for label in ("Runner", "State", "Revision", "In flight", "Uptime", "Idle shutdown in"):
        assert f'data-label="{label}"' in html


def test_a_sub_second_lifetime_is_shown_in_milliseconds_not_as_zero_seconds():
    gone = runner("FAILED", ended_at="2026-01-01T12:00:00.370000+00:00")
    with time_machine.travel(LATER, tick=False):
        html = render_table(for_display([gone]))
    assert "ran 370 ms" in cell(html, "Uptime")


@pytest.mark.parametrize(
    ("state", "css", "icon", "word"),
    [
        ("FAILED", "runner-failed", "✕", "Failed"),
        ("RUNNING", "runner-running", "▶", "Running"),
        ("IDLE", "runner-idle", "○", "Idle"),
        ("SETUP", "runner-setup", "◌", "Setup"),
        ("DRAINING", "runner-draining", "↓", "Draining"),
        ("TERMINATED", "runner-terminated", "■", "Terminated"),
        ("CRASH_BACKOFF", "runner-crash-backoff", "↻", "Crash backoff"),
    ],
)
def test_a_runner_state_is_a_badge_with_its_own_colour_an_icon_and_a_word(state, css, icon, word):
    badge = cell(render_table(for_display([runner(state)])), "State")
    assert f'class="badge {css}"' in badge
    assert '<span aria-hidden="true"' in badge and icon in badge
    assert badge.rstrip().endswith(f"{word}</span>")


def test_a_failed_runner_is_red_like_a_failed_revision():
    css = (Path(__file__).parents[2] / "static/css/switchboard.css").read_text()
    failed_rule = next(line for line in css.splitlines() if ".status-failed" in line)
    assert ".runner-failed" in failed_rule


def test_a_crash_looping_runner_says_so_with_its_last_exit_reason():
    looping = {
        **runner("CRASH_BACKOFF"),
        "crash_looping": True,
        "error": "process exited with code 3; restarting in 30s",
    }
    state = cell(render_table(for_display([looping])), "State")
    assert "crash-looping" in state
    assert "process exited with code 3; restarting in 30s" in state


def test_a_runner_restarted_after_one_crash_is_not_called_crash_looping():
    once = cell(render_table(for_display([runner("CRASH_BACKOFF")])), "State")
    assert "crash-looping" not in once


def test_runners_on_several_nodes_show_their_node_and_one_machines_show_no_column():
    # Two Ray nodes on one machine share an address: the start of each one's id tells them apart.
    with time_machine.travel(LATER, tick=False):
        records = for_display(
            [
                runner("RUNNING", node="127.0.0.2", node_id="6775657063f98f1abd5d"),
                runner("IDLE", node="127.0.0.2", node_id="a67ed3f2515b43864ae7"),
            ]
        )
        app = make_app("demo")
        spread = render_table(records, app=app)
        local = render_table(
            [{k: v for k, v in r.items() if not k.startswith("node")} for r in records], app=app
        )
    nodes = re.findall(r'data-label="Node"[^>]*>\s*([^<]*?)\s*</td>', spread)
    assert nodes == ["127.0.0.2 (67756570)", "127.0.0.2 (a67ed3f2)"]
    assert 'data-label="Node"' not in local
