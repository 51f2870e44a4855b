from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dashboard.controlplane.models import (
    OperationKind,
    OperationState,
    OperationStep,
)
from tests.web.factories import make_app, make_history, make_operation, make_revision, make_user

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def rows(html: str) -> int:
    return html.count('data-testid="revision-row"')


def test_it_shows_every_revision_newest_first_with_badges(viewer, demo):
    app, old, current, failed = demo
    html = viewer.get("/apps/demo/versions").content.decode()
    assert rows(html) == 3
    order = [html.index(f'data-revision="{r.short_id}"') for r in (failed, current, old)]
    assert order == sorted(order)
    assert 'data-testid="current-badge"' in html
    assert html.count('data-testid="current-badge"') == 1
    for label in ("Deployed", "Failed"):
        assert f"</span> {label}</span>" in html
    assert "ImportError: nope" in html


def test_status_badges_carry_text_and_an_icon_not_only_colour(viewer):
    app = make_app("demo")
    for status in ("deployed", "failed", "deploying", "suspended"):
        make_revision(app, status)
    html = viewer.get("/apps/demo/versions").content.decode()
    for status, label in [
        ("deployed", "Deployed"),
        ("failed", "Failed"),
        ("deploying", "Deploying"),
        ("suspended", "Suspended"),
    ]:
        assert f'class="badge status-{status}"' in html
        assert label in html


def test_it_filters_by_status(viewer, demo):
    _app, _old, _current, failed = demo
    html = viewer.get("/apps/demo/versions?status=failed").content.decode()
    assert rows(html) == 1
    assert failed.short_id in html


def test_a_filter_that_matches_nothing_says_so(viewer, demo):
    html = viewer.get("/apps/demo/versions?status=suspended").content.decode()
    assert rows(html) == 0
    assert "No Suspended revisions." in html


def test_an_unknown_status_filter_says_so_and_shows_all(viewer, demo):
    html = viewer.get("/apps/demo/versions?status=bogus").content.decode()
    assert "Unknown status" in html
    assert rows(html) == 3


def test_it_paginates_by_twenty_five(viewer):
    make_history(make_app("demo"), 60)
    first = viewer.get("/apps/demo/versions").content.decode()
    third = viewer.get("/apps/demo/versions?page=3").content.decode()
    assert rows(first) == 25
    assert rows(third) == 10
    assert "change number 60" in first and "change number 1<" in third
    # A visitor may pick the page size (django-tables2's ?per_page=), up to 100 rows.
    assert rows(viewer.get("/apps/demo/versions?per_page=5").content.decode()) == 5
    make_history(make_app("big"), 120)
    assert rows(viewer.get("/apps/big/versions?per_page=100000").content.decode()) == 100


def test_the_query_count_does_not_grow_with_revisions(viewer, django_assert_num_queries):
    make_history(make_app("small"), 10)
    make_history(make_app("large"), 1000)
    viewer.get("/apps/small/versions")  # Warm caches (content types, session) first.
    with CaptureQueriesContext(connection) as small:
        assert viewer.get("/apps/small/versions").status_code == 200
    with django_assert_num_queries(len(small.captured_queries)):
        assert viewer.get("/apps/large/versions").status_code == 200


def test_the_htmx_fragment_renders_the_table_alone(viewer, demo):
    response = viewer.get("/apps/demo/versions", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith("{#") is False
    assert 'id="versions-region"' in html
    assert "<html" not in html
    assert rows(html) == 3


def test_an_unchanged_table_answers_204_to_its_poll(viewer, demo):
    html = viewer.get("/apps/demo/versions", **HTMX).content.decode()
    poll_url = html.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert viewer.get(poll_url, **HTMX).status_code == 204


def test_a_new_deploy_changes_the_stamp_and_the_poll_returns_the_table(viewer, demo):
    app = demo[0]
    html = viewer.get("/apps/demo/versions", **HTMX).content.decode()
    poll_url = html.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    new = make_revision(app, "deploying", message="from the cli")
    make_operation(
        app,
        OperationKind.DEPLOY,
        revision=new,
        state=OperationState.RUNNING,
        steps=("bundle received",),
    )
    response = viewer.get(poll_url, **HTMX)
    assert response.status_code == 200
    assert "from the cli" in response.content.decode()
    assert "bundle received" in response.content.decode()


def test_times_are_relative_with_the_absolute_time_in_the_viewers_zone(viewer):
    app = make_app("demo")
    with time_machine.travel(datetime(2026, 1, 15, 12, 0, tzinfo=UTC), tick=False):
        make_revision(app, current=True)
    viewer.cookies["tz"] = "Asia/Tokyo"
    with time_machine.travel(datetime(2026, 1, 15, 15, 0, tzinfo=UTC), tick=False):
        html = viewer.get("/apps/demo/versions").content.decode()
    assert '<time datetime="2026-01-15T12:00:00+00:00" title="2026-01-15 21:00:00 JST">3' in html
    assert "hours ago</time>" in html


def test_viewers_see_no_action_buttons(viewer, demo):
    html = viewer.get("/apps/demo/versions").content.decode()
    for action in ("rollback", "delete", "suspend", "rollout", "scale"):
        assert f'data-testid="{action}-button"' not in html
    assert ">Actions<" not in html  # Nor an empty column for them.


def test_deployers_may_roll_back_only_deployed_non_current_rows(deployer, demo):
    _app, old, current, failed = demo
    html = deployer.get("/apps/demo/versions").content.decode()
    assert f"/apps/demo/confirm/rollback?rev={old.short_id}" in html
    assert f"/apps/demo/confirm/rollback?rev={current.short_id}" not in html
    assert f"/apps/demo/confirm/rollback?rev={failed.short_id}" not in html
    assert f"revision {current.short_id} is already Current for demo" in html
    assert f"revision {failed.short_id} is Failed (" in html
    assert "a Failed revision can never become Current" in html
    assert 'data-testid="delete-button"' not in html


def test_admins_may_delete_any_row_but_the_current_one(admin, demo):
    _app, old, current, failed = demo
    html = admin.get("/apps/demo/versions").content.decode()
    assert f"/apps/demo/confirm/delete?rev={old.short_id}" in html
    assert f"/apps/demo/confirm/delete?rev={failed.short_id}" in html
    assert f"/apps/demo/confirm/delete?rev={current.short_id}" not in html
    assert "the Current revision is never deleted" in html


def test_messages_and_annotations_are_escaped(viewer):
    app = make_app("demo")
    make_revision(app, message="<b>bold</b>", annotations={"<i>k</i>": "<script>v</script>"})
    html = viewer.get("/apps/demo/versions").content.decode()
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>v</script>" not in html and "&lt;i&gt;k&lt;/i&gt;" in html


def test_an_unknown_app_is_a_404(viewer):
    assert viewer.get("/apps/nope/versions").status_code == 404


def test_anonymous_visitors_are_sent_to_login(db):
    make_app("demo")
    response = Client().get("/apps/demo/versions")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_an_inactive_user_is_sent_to_login(db, demo):
    client = Client()
    user = make_user("admin")
    client.force_login(user)
    user.is_active = False
    user.save()
    assert client.get("/apps/demo/versions").status_code == 302


def test_a_failed_revision_explains_itself_with_everything_escaped(viewer):
    app = make_app("demo")
    failed = make_revision(
        app, "failed", error="ImportError: <no module>", log_tail="Traceback <script>x</script>"
    )
    make_operation(app, revision=failed, state=OperationState.FAILED, steps=("import <check>",))
    html = viewer.get("/apps/demo/versions").content.decode()
    assert 'data-testid="failure-detail"' in html
    assert "ImportError: &lt;no module&gt;" in html
    assert "Traceback &lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    assert "import &lt;check&gt;</li>" in html


def test_a_deploying_revision_shows_its_timestamped_steps(viewer):
    app = make_app("demo")
    deploying = make_revision(app, "deploying")
    make_operation(
        app, revision=deploying, state=OperationState.RUNNING, steps=("bundle received",)
    )
    html = viewer.get("/apps/demo/versions").content.decode()
    steps = html.split('data-testid="deploy-steps">', 1)[1].split("</ol>", 1)[0]
    assert "<time datetime=" in steps and "bundle received</li>" in steps


def test_admins_may_resume_a_suspended_revision_but_not_suspend_it_again(admin):
    app = make_app("demo")
    make_revision(app, current=True)
    suspended = make_revision(app, "suspended")
    html = admin.get("/apps/demo/versions").content.decode()
    assert f"/apps/demo/confirm/resume?rev={suspended.short_id}" in html
    assert f"/apps/demo/confirm/suspend?rev={suspended.short_id}" not in html
    assert f"revision {suspended.short_id} is Suspended; resume it before making it Current" in html


def test_rows_carry_their_revision_status_and_whether_they_are_current(viewer, demo):
    _app, old, current, _failed = demo
    html = viewer.get("/apps/demo/versions").content.decode()
    assert (
        f'data-testid="revision-row" data-revision="{current.short_id}" data-status="deployed"'
        ' data-current="true"'
    ) in html
    assert f'data-revision="{old.short_id}" data-status="deployed" data-current="false"' in html
    assert '<td data-label="Machine &amp; scaling">' in html


def test_an_unchanged_poll_costs_three_queries_however_many_operations(
    viewer, django_assert_num_queries
):
    app = make_app("demo")
    make_history(app, 30)
    for _ in range(20):
        make_operation(app, OperationKind.ROLLOUT, steps=("a", "b"))
    html = viewer.get("/apps/demo/versions", **HTMX).content.decode()
    poll_url = html.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    # User, app, and the stamp: the session comes from Redis (dashboard/web/sessions.py).
    with django_assert_num_queries(3):
        assert viewer.get(poll_url, **HTMX).status_code == 204


def test_a_new_step_of_the_running_operation_refreshes_the_table(viewer):
    app = make_app("demo")
    make_revision(app, current=True)
    deploying = make_revision(app, "deploying")
    running = make_operation(
        app, revision=deploying, state=OperationState.RUNNING, steps=("bundle received",)
    )
    html = viewer.get("/apps/demo/versions", **HTMX).content.decode()
    poll_url = html.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    OperationStep.objects.create(operation=running, message="runner healthy")
    response = viewer.get(poll_url, **HTMX)
    assert response.status_code == 200 and "runner healthy" in response.content.decode()


def test_a_revision_made_without_an_operation_refreshes_the_table_too(viewer):
    app = make_app("demo")
    make_revision(app, current=True)
    html = viewer.get("/apps/demo/versions", **HTMX).content.decode()
    poll_url = html.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    make_revision(app, message="made by hand")
    response = viewer.get(poll_url, **HTMX)
    assert response.status_code == 200 and "made by hand" in response.content.decode()


def test_the_versions_region_polls_every_second_so_a_cli_deploy_shows_within_two(viewer, demo):
    html = viewer.get("/apps/demo/versions").content.decode()
    region = html.split('id="versions-region"', 1)[1].split(">", 1)[0]
    assert 'data-poll="1000"' in region
