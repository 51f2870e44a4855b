from __future__ import annotations

import pytest
from django.test import Client

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
