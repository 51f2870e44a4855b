from __future__ import annotations

import pytest
from django.test import Client

from dashboard.controlplane.models import OperationKind, OperationState
from dashboard.web import runners as runner_data
from tests.web.factories import make_app, make_operation, make_revision

pytestmark = pytest.mark.django_db


def test_it_lists_every_app_with_its_current_revision_and_last_operation(viewer, demo):
    app, _old, current, _failed = demo
    make_operation(app, OperationKind.SET_REV, revision=current, state=OperationState.FAILED)
    make_app("empty")
    response = viewer.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert current.short_id in html
    assert "the current one" in html
    assert "set-rev" in html and "Failed" in html
    assert "No revision yet" in html


def test_it_still_renders_when_the_runtime_is_unreachable(viewer, demo):
    response = viewer.get("/")
    assert response.status_code == 200
    assert b'data-testid="runtime-unavailable"' in response.content
    assert b"runtime unavailable" in response.content


def test_a_suspended_app_stands_out(viewer):
    app = make_app("paused")
    make_revision(app, "suspended", current=True)
    html = viewer.get("/").content.decode()
    assert 'data-suspended="true"' in html
    assert 'data-testid="app-suspended"' in html


def test_anonymous_visitors_are_sent_to_login(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_app_names_and_messages_are_escaped(viewer):
    app = make_app("x")
    make_revision(app, message="<script>alert(1)</script>", current=True)
    html = viewer.get("/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_admins_get_a_link_to_manage_users_and_tokens(db, admin, viewer):
    # The admin fixture's user is not staff, so give staff to a superuser.
    from django.contrib.auth.models import User
    from django.http import HttpRequest

    User.objects.create_superuser("root", "r@example.com", "pw-secret-1")
    client = Client()
    # django-axes checks every sign-in against its request's address: it needs one.
    client.login(request=HttpRequest(), username="root", password="pw-secret-1")
    assert b"Users &amp; tokens" in client.get("/").content
    assert b"Users &amp; tokens" not in viewer.get("/").content


# Runner counts are computed from the runtime's listing by a plain function: these give
# it listings the runtime sends; test_apps_live.py shows the real runtime's on the page.


def test_runner_counts_are_the_current_revisions(demo):
    app, _old, current, failed = demo
    summary = runner_data.counts_by_app(
        [
            {"id": "r-1", "app": "demo", "revision": str(current.id), "state": "IDLE"},
            # A runner of the Failed revision: the app still serves fine on Current.
            {"id": "r-2", "app": "demo", "revision": str(failed.id), "state": "FAILED"},
            {"id": "r-3", "app": "demo", "revision": str(current.id), "state": "TERMINATED"},
        ],
        {"demo": current.id},
    )["demo"]
    assert (summary.current, summary.other_live) == ([("IDLE", 1)], 0)


def test_live_runners_of_other_revisions_are_counted_apart(demo):
    app, old, current, _failed = demo
    summary = runner_data.counts_by_app(
        [
            {"id": "r-1", "app": "demo", "revision": current.id.hex, "state": "RUNNING"},
            {"id": "r-2", "app": "demo", "revision": str(old.id), "state": "DRAINING"},
        ],
        {"demo": current.id},
    )["demo"]
    assert (summary.current, summary.other_live) == ([("RUNNING", 1)], 1)


def test_a_failed_runner_of_the_current_revision_is_counted(demo):
    app, _old, current, _failed = demo
    summary = runner_data.counts_by_app(
        [{"id": "r-1", "app": "demo", "revision": str(current.id), "state": "FAILED"}],
        {"demo": current.id},
    )["demo"]
    assert summary.current == [("FAILED", 1)]


def test_every_cell_carries_its_column_label_for_the_phone_card_layout(viewer, demo):
    html = viewer.get("/").content.decode()
    assert 'class="table cards"' in html
    for label in ("App", "Current revision", "Status", "Runners (Current)", "Last operation"):
        assert f'data-label="{label}"' in html


def test_the_htmx_fragment_is_the_polled_region_alone_asking_for_the_same_page(viewer, demo):
    html = viewer.get("/?page=1", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html
    assert 'id="apps-region"' in html
    assert 'hx-get="/?page=1"' in html and 'hx-trigger="sb-poll"' in html and "data-poll=" in html


def test_the_page_polls_its_table_region(viewer, demo):
    html = viewer.get("/").content.decode()
    assert 'id="apps-region"' in html and 'hx-trigger="sb-poll"' in html
