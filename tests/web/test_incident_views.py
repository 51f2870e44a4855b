"""The incident view of the dashboard (issue 10): acting on the Current you saw, the hold
a rollback sets and its release, who made Current what it is, the Previous revision,
a queued action that no worker takes, cancelling a running action, and search.

Each view change has the standard cases: it works, an anonymous visitor and a too-low
role are refused (and nothing changes), and the htmx fragment carries it too.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from dashboard.controlplane.models import (
    App,
    OperationKind,
    OperationState,
    RevisionStatus,
)
from dashboard.web import progress
from tests.controlplane.conftest import app_state
from tests.web.conftest import queued_task_ids
from tests.web.factories import make_app, make_operation, make_revision, make_user

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def _rolled_back(name: str = "shop"):
    """old <- rollback target, mid, new (was Current), and the rollback that held it."""
    app = make_app(name)
    old = make_revision(app, message="old but good", age=timedelta(hours=3))
    new = make_revision(app, message="the bad one", age=timedelta(hours=1))
    ada = make_user("deployer", f"ada-{name}")
    op = make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        requester=ada,
        requester_name=ada.username,
        reason="500s after the release",
        params={"revision": str(old.id), "from_revision": str(new.id)},
    )
    App.objects.filter(pk=app.pk).update(
        current_revision=old,
        previous_revision=new,
        current_since=timezone.now(),
        current_operation=op,
        held=True,
        held_at=timezone.now(),
        held_operation=op,
    )
    return App.objects.get(pk=app.pk), old, new, op


# -- acting on the Current the dialog showed ---------------------------------------------


def test_each_dialog_about_current_carries_the_current_it_shows(deployer, admin, demo):
    _app, old, current, _failed = demo
    field = f'name="expected_current" value="{current.id}"'
    assert field in deployer.get(f"/apps/demo/confirm/rollback?rev={old.short_id}").content.decode()
    assert field in deployer.get("/apps/demo/confirm/rollout", **HTMX).content.decode()
    assert field in admin.get(f"/apps/demo/confirm/suspend?rev={old.short_id}").content.decode()
    assert field in admin.get(f"/apps/demo/confirm/delete?rev={old.short_id}").content.decode()


def test_a_stale_rollback_dialog_is_refused_shows_who_changed_current_and_asks_again(
    deployer, demo, empty_queue
):
    app, old, current, failed = demo
    # A colleague switched Current from the CLI while the dialog was open.
    newer = make_revision(app, message="hotfix")
    op = make_operation(
        app,
        OperationKind.SET_REV,
        revision=newer,
        requester_name="grace",
        reason="hotfix for checkout",
        source="cli",
    )
    App.objects.filter(pk=app.pk).update(
        current_revision=newer,
        previous_revision=current,
        current_operation=op,
        current_since=timezone.now(),
    )
    key = str(uuid.uuid4())
    response = deployer.post(
        f"/apps/demo/confirm/rollback?rev={old.short_id}",
        {
            "key": key,
            "strategy": "rolling",
            "reason": "revert",
            "expected_current": current.short_id,
        },
        **HTMX,
    )
    assert response.status_code == 200  # The dialog, shown again (409 without htmx).
    assert response["HX-Retarget"] == "#dialog-content"
    html = response.content.decode()
    assert 'data-testid="current-changed"' in html
    assert f'<code data-testid="changed-current">{newer.short_id}</code>' in html
    assert "set by <strong>grace</strong>" in html and "hotfix for checkout" in html
    # Asked again: the dialog now carries the new Current, a new key and the user's input.
    assert f'name="expected_current" value="{newer.id}"' in html
    assert f'value="{key}"' not in html
    assert 'value="revert"' in html
    # Nothing was sent and nothing changed.
    assert queued_task_ids(empty_queue) == {}
    assert App.objects.get(pk=app.pk).current_revision_id == newer.id


def test_confirming_with_the_current_it_showed_still_goes_through(deployer, demo, empty_queue):
    _app, old, current, _failed = demo
    key = str(uuid.uuid4())
    response = deployer.post(
        f"/apps/demo/confirm/rollback?rev={old.short_id}",
        {"key": key, "strategy": "rolling", "expected_current": str(current.id)},
        **HTMX,
    )
    assert response.status_code == 200
    assert queued_task_ids(empty_queue)[key]["args"][2]["expected_current"] == str(current.id)


# -- the hold and its release ------------------------------------------------------------


def test_a_held_app_shows_who_rolled_back_when_why_and_a_release_button(deployer):
    app, old, _new, op = _rolled_back()
    html = deployer.get("/apps/shop/versions").content.decode()
    banner = html.split('data-testid="hold-banner"', 1)[1].split("</section>", 1)[0]
    assert op.requester_name in banner and old.short_id in banner
    assert "500s after the release" in banner
    assert "do not go live" in banner
    assert "<time" in banner and 'class="abs"' in banner  # When, in visible text.
    assert 'data-testid="release-button"' in banner
    assert 'hx-get="/apps/shop/confirm/release?"' in banner


def test_a_viewer_sees_the_hold_but_no_release_button(viewer):
    _rolled_back()
    html = viewer.get("/apps/shop/versions").content.decode()
    assert 'data-testid="hold-banner"' in html
    assert 'data-testid="release-button"' not in html


def test_the_hold_banner_is_in_the_polled_fragment(deployer):
    _rolled_back()
    html = deployer.get("/apps/shop/versions", **HTMX).content.decode()
    assert 'data-testid="hold-banner"' in html and "<h1>" not in html


def test_confirming_release_enqueues_it(deployer, empty_queue):
    _rolled_back()
    page = deployer.get("/apps/shop/confirm/release", **HTMX).content.decode()
    assert "The next deploy becomes Current again" in page
    key = str(uuid.uuid4())
    response = deployer.post("/apps/shop/confirm/release", {"key": key, "reason": "fixed"}, **HTMX)
    assert response.status_code == 200
    queued = queued_task_ids(empty_queue)[key]
    assert queued["args"][:3] == ["release", "shop", {"reason": "fixed"}]


def test_release_is_refused_when_nothing_is_held(deployer, demo, empty_queue):
    response = deployer.post("/apps/demo/confirm/release", {"key": str(uuid.uuid4())}, **HTMX)
    assert response.status_code == 409
    assert "not held" in response.content.decode()
    assert queued_task_ids(empty_queue) == {}


def test_release_is_refused_to_a_viewer_and_to_anonymous_visitors(viewer, empty_queue):
    app, *_ = _rolled_back()
    before = app_state("shop")
    refused = viewer.post("/apps/shop/confirm/release", {"key": str(uuid.uuid4())})
    assert refused.status_code == 403
    assert "This needs the Deployer role; you have Viewer." in refused.content.decode()
    assert app_state("shop") == before
    anonymous = Client().post("/apps/shop/confirm/release", {"key": str(uuid.uuid4())})
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    assert queued_task_ids(empty_queue) == {}
    assert App.objects.get(pk=app.pk).held


def test_the_apps_page_shows_the_hold_and_current_since_by(viewer):
    _rolled_back()
    html = viewer.get("/").content.decode()
    assert 'data-testid="app-held"' in html and "new deploys don't go live" in html
    story = html.split('data-testid="current-story"', 1)[1].split("</div>", 1)[0]
    assert "Current since" in story and "set by <strong>ada-shop</strong>" in story
    assert ">rollback</span>" in story and "500s after the release" in story
    assert 'data-testid="current-story"' in viewer.get("/", **HTMX).content.decode()


# -- who, when, why; Previous; Switch to / Roll back ---------------------------------------


def test_current_says_since_when_by_whom_how_and_why_and_previous_is_one_click_back(deployer):
    _app, old, new, _op = _rolled_back()
    html = deployer.get("/apps/shop/versions").content.decode()
    summary = html.split('aria-label="Current state"', 1)[1].split("</section>", 1)[0]
    assert "Current since" in summary and ">rollback</span>" in summary
    assert "set by <strong>ada-shop</strong>" in summary
    previous = summary.split('data-testid="summary-previous"', 1)[1]
    assert new.short_id in previous
    # Back to the newer revision is a roll forward: "Switch to previous".
    assert f'hx-get="/apps/shop/confirm/rollback?rev={new.short_id}"' in previous
    assert "Switch to previous" in previous
    row = re.search(rf'<tr id="rev-{new.short_id}".*?</tr>', html, re.S).group(0)
    assert 'data-previous="true"' in row and 'data-testid="previous-badge"' in row


def test_rows_newer_than_current_say_switch_to_and_older_ones_roll_back(deployer, demo):
    app, old, current, _failed = demo
    newer = make_revision(app, message="newer")
    html = deployer.get("/apps/demo/versions").content.decode()

    def label(rev):
        row = re.search(rf'<tr id="rev-{rev.short_id}".*?</tr>', html, re.S).group(0)
        return re.search(r'data-testid="rollback-button">([^<]+)<', row).group(1)

    assert label(newer) == "Switch to"
    assert label(old) == "Roll back"
    dialog = deployer.get(f"/apps/demo/confirm/rollback?rev={newer.short_id}", **HTMX)
    assert f"Switch to {newer.short_id}" in dialog.content.decode()


def test_a_disabled_action_says_why_in_visible_text(deployer, demo):
    _app, _old, current, _failed = demo
    html = deployer.get("/apps/demo/versions").content.decode()
    row = re.search(rf'<tr id="rev-{current.short_id}".*?</tr>', html, re.S).group(0)
    assert (
        '<small id="why-rollback-' in row
        and f"revision {current.short_id} is already Current for demo" in row
    )
    assert 'class="visually-hidden"' not in row


def test_suspending_current_is_a_red_action_and_a_suspended_current_shows_an_outage(admin, demo):
    app, old, current, _failed = demo
    html = admin.get("/apps/demo/versions").content.decode()
    row = re.search(rf'<tr id="rev-{current.short_id}".*?</tr>', html, re.S).group(0)
    assert re.search(r'class="btn small danger"[^>]*data-testid="suspend-button"', row)
    dialog = admin.get(f"/apps/demo/confirm/suspend?rev={current.short_id}", **HTMX)
    assert 'class="btn danger" data-testid="confirm-button"' in dialog.content.decode()
    current.status = RevisionStatus.SUSPENDED
    current.save()
    banner = admin.get("/apps/demo/versions", **HTMX).content.decode()
    assert 'data-testid="outage-banner"' in banner and "503 “app suspended”" in banner


def test_history_says_rollback_and_roll_forward_in_words_with_short_ids(viewer):
    app, old, new, _op = _rolled_back()
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=new,
        params={"revision": str(new.id), "from_revision": str(old.id)},
    )
    html = viewer.get("/apps/shop/history").content.decode()
    assert f"rollback to {old.short_id} from {new.short_id}" in html
    assert f"roll forward to {new.short_id} from {old.short_id}" in html
    assert "roll forward to" in viewer.get("/apps/shop/history", **HTMX).content.decode()


# -- search and jump to Current --------------------------------------------------------------


def test_versions_search_by_id_message_author_and_annotation(deployer):
    app = make_app("shop")
    ada = make_user("deployer", "ada")
    by_ada = make_revision(app, message="first", deployed_by=ada)
    checkout = make_revision(app, message="Fix the Checkout button", current=True)
    tagged = make_revision(app, message="third", annotations={"ticket": "INC-4711"})

    def found(q: str) -> set[str]:
        html = deployer.get("/apps/shop/versions", {"q": q}).content.decode()
        return set(re.findall(r'data-testid="revision-row" data-revision="(\w+)"', html))

    assert found("checkout") == {checkout.short_id}
    assert found("ADA") == {by_ada.short_id}
    assert found("inc-4711") == {tagged.short_id}
    assert found(tagged.short_id[:6]) == {tagged.short_id}
    assert found("nothing like this") == set()
    assert "No revision matches" in deployer.get("/apps/shop/versions?q=zzz").content.decode()
    fragment = deployer.get("/apps/shop/versions", {"q": "checkout"}, **HTMX).content.decode()
    assert checkout.short_id in fragment and tagged.short_id not in fragment


def test_a_search_longer_than_100_characters_is_refused(viewer, demo):
    response = viewer.get("/apps/demo/versions", {"q": "x" * 101})
    assert response.status_code == 400
    assert "at most 100 characters" in response.content.decode()


def test_versions_search_is_refused_to_anonymous_visitors(db, demo):
    response = Client().get("/apps/demo/versions?q=old")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_jump_to_current_links_to_the_page_holding_current(viewer):
    app = make_app("big")
    current = make_revision(app, age=timedelta(days=1), current=True)
    for i in range(30):
        make_revision(app, message=f"newer {i}", age=timedelta(minutes=i))
    html = viewer.get("/apps/big/versions").content.decode()
    assert f'href="/apps/big/versions?page=2#rev-{current.short_id}"' in html
    assert (
        f'id="rev-{current.short_id}"' in viewer.get("/apps/big/versions?page=2").content.decode()
    )


# -- the action panel: waiting for a worker, and Cancel ---------------------------------------


def _panel(client: Client, key: str) -> str:
    return client.get(f"/apps/demo/actions/{key}", **HTMX).content.decode()


def test_a_queued_action_shows_its_wait_and_after_10s_what_to_check(deployer, demo):
    user = deployer.session["_auth_user_id"]
    key = str(uuid.uuid4())
    start = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        progress.remember(
            key, int(user), "Roll back 1234abcd", "switchboard apps set-rev demo 1234abcd"
        )
    with time_machine.travel(start + timedelta(seconds=4), tick=False):
        html = _panel(deployer, key)
    assert "waiting 4 s" in html and 'data-testid="panel-stalled"' not in html
    with time_machine.travel(start + timedelta(seconds=12), tick=False):
        html = _panel(deployer, key)
    assert "waiting 12 s" in html
    assert "No worker has taken this action in 12 s" in html
    assert "celery -A dashboard worker" in html
    assert "switchboard apps set-rev demo 1234abcd" in html


def test_a_running_action_offers_cancel_and_cancelling_enqueues_it(deployer, demo, empty_queue):
    app, old, _current, _failed = demo
    user_id = int(deployer.session["_auth_user_id"])
    key = str(uuid.uuid4())
    op = make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.RUNNING,
        requester_id=user_id,
        idempotency_key=key,
    )
    assert 'data-testid="panel-cancel"' in _panel(deployer, key)
    response = deployer.post(f"/apps/demo/actions/{key}/cancel", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="panel-cancelling"' in html and 'data-testid="panel-cancel"' not in html
    (queued,) = queued_task_ids(empty_queue).values()
    assert queued["args"][:2] == ["cancel", "demo"]
    assert queued["args"][2]["operation"] == str(op.id)


def test_cancel_is_refused_to_anonymous_visitors_and_viewers_and_for_finished_actions(
    deployer, demo, empty_queue
):
    app, old, _current, _failed = demo
    viewer_user = make_user("viewer")
    key = str(uuid.uuid4())
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.RUNNING,
        requester=viewer_user,
        idempotency_key=key,
    )
    anonymous = Client().post(f"/apps/demo/actions/{key}/cancel")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    viewer = Client()
    viewer.force_login(viewer_user)
    assert viewer.post(f"/apps/demo/actions/{key}/cancel").status_code == 403
    done = str(uuid.uuid4())
    make_operation(
        app,
        OperationKind.SET_REV,
        revision=old,
        state=OperationState.SUCCEEDED,
        requester_id=int(deployer.session["_auth_user_id"]),
        idempotency_key=done,
    )
    response = deployer.post(f"/apps/demo/actions/{done}/cancel", **HTMX)
    assert response.status_code == 409 and "nothing to cancel" in response.content.decode()
    assert deployer.get(f"/apps/demo/actions/{key}/cancel").status_code == 405
    assert queued_task_ids(empty_queue) == {}
