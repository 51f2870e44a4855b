from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.controlplane.models import OperationKind, OperationState, Source
from tests.web.factories import make_operation

pytestmark = pytest.mark.django_db


def test_it_lists_operations_with_who_source_reason_parameters_and_outcome(viewer, demo):
    app, old, _current, _failed = demo
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        requester_name="carol",
        source=Source.CLI,
        reason="bad release <tonight>",
        params={"strategy": "recreate"},
        state=OperationState.FAILED,
        error="target failed its health check",
    )
    html = viewer.get("/apps/demo/history").content.decode()
    assert 'data-testid="operation-row"' in html
    for text in (
        "set-rev",
        "carol",
        "cli",
        "strategy",
        "recreate",
        "target failed its health check",
    ):
        assert text in html
    assert "bad release &lt;tonight&gt;" in html


def test_the_htmx_fragment_renders_the_table_alone(viewer, demo):
    make_operation(demo[0], OperationKind.ROLLOUT)
    html = viewer.get("/apps/demo/history", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="history-region"' in html and "<html" not in html


def test_anonymous_visitors_are_sent_to_login(demo):
    assert Client().get("/apps/demo/history").status_code == 302


def test_an_unknown_app_is_a_404(viewer):
    assert viewer.get("/apps/nope/history").status_code == 404


def test_every_cell_carries_its_column_label_for_the_phone_card_layout(viewer, demo):
    app, old, _current, _failed = demo
    make_operation(app, OperationKind.SET_REV, revision=old, reason="why not")
    html = viewer.get("/apps/demo/history").content.decode()
    assert 'class="table cards"' in html
    labels = ("Operation", "Who", "Source", "When", "Reason", "Parameters", "Outcome", "Duration")
    for label in labels:
        assert f'data-label="{label}"' in html


def operation_rows(html: str) -> list[str]:
    """The reason of each operation row, top to bottom (the tests use it as a name)."""
    rows = html.split('data-testid="operation-row"')[1:]
    return [row.split('data-label="Reason">', 1)[1].split("</td>", 1)[0] for row in rows]


def make_operations(app, count: int) -> None:
    now = timezone.now()
    for i in range(count):
        make_operation(
            app,
            OperationKind.SCALE,
            reason=f"op {i}",
            created_at=now - timedelta(minutes=count - i),
        )


def test_it_shows_25_operations_a_page_newest_first_with_links_to_the_others(viewer, demo):
    make_operations(demo[0], 30)
    first = viewer.get("/apps/demo/history").content.decode()
    assert operation_rows(first) == [f"op {i}" for i in range(29, 4, -1)]
    assert 'class="pagination"' in first and "?page=2" in first
    second = viewer.get("/apps/demo/history?page=2").content.decode()
    assert operation_rows(second) == ["op 4", "op 3", "op 2", "op 1", "op 0"]


def test_the_region_polls_the_page_it_shows_and_gets_a_204_while_nothing_changed(viewer, demo):
    make_operations(demo[0], 30)
    html = viewer.get("/apps/demo/history?page=2").content.decode()
    poll_url = html.split('id="history-region"', 1)[1].split('hx-get="', 1)[1].split('"', 1)[0]
    poll_url = poll_url.replace("&amp;", "&")
    assert "page=2" in poll_url and "stamp=" in poll_url
    assert 'hx-trigger="sb-poll"' in html
    assert viewer.get(poll_url, HTTP_HX_REQUEST="true").status_code == 204

    make_operation(demo[0], OperationKind.ROLLOUT, reason="newest")
    fresh = viewer.get(poll_url, HTTP_HX_REQUEST="true").content.decode()
    # Still page 2: the newest operation pushed "op 5" down from page 1.
    assert operation_rows(fresh)[0] == "op 5"
