"""The incident path in the browser, as on-call clicks it (issue 10): a stale dialog,
the hold and its release, who made Current what it is, a paused worker, focus across
refreshes, and the Rollback dialog on a phone."""

from __future__ import annotations

import os
import re
import signal
import uuid

import pytest
from playwright.sync_api import Page, expect

from dashboard.api_client import ControlApi
from dashboard.controlplane.models import ApiToken, App
from tests.browser.conftest import save_screenshot, sign_in
from tests.browser.test_versions_page import PASSWORD, deploy, make_user, row, versions_url

pytestmark = [pytest.mark.browser, pytest.mark.system, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people():
    return {role: make_user(f"{role}-user", role) for role in ("deployer", "admin")}


@pytest.fixture
def cli(system, people) -> ControlApi:
    """What a colleague's `switchboard` CLI sends: the control API as admin-user."""
    _, token = ApiToken.issue(people["admin"], "colleague's CLI", "admin")
    return ControlApi(system.api_url, token, source="cli", timeout=60)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _open_rollback(page: Page, revision, strategy: str = "recreate"):
    row(page, revision).get_by_test_id("rollback-button").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog.get_by_test_id("rollback-target")).to_contain_text(revision.short_id)
    dialog.get_by_label(re.compile(strategy, re.I)).check()
    return dialog


def test_a_stale_rollback_dialog_says_who_changed_current_and_asks_again(
    system, cli, people, page, tmp_path
):
    name = _name("stale")
    v1 = deploy(cli, tmp_path, name, "v1")
    v2 = deploy(cli, tmp_path, name, "v2")
    deploy(cli, tmp_path, name, "v3")
    sign_in(page, system.api_url, "deployer-user", PASSWORD)
    page.goto(versions_url(system, name))
    dialog = _open_rollback(page, v1)

    # While the dialog is open a colleague switches Current from the CLI.
    cli.set_rev(name, v2.short_id, strategy="recreate", reason="colleague's fix")
    dialog.get_by_test_id("confirm-button").click()
    changed = dialog.get_by_test_id("current-changed")
    expect(changed).to_contain_text(v2.short_id)
    expect(changed).to_contain_text("admin-user")
    expect(changed).to_contain_text("colleague's fix")
    save_screenshot(page, "stale-dialog.png")
    assert App.objects.get(name=name).current_revision_id == v2.id  # Nothing overridden.

    # Asked again on the new state, the rollback goes through.
    dialog.get_by_test_id("confirm-button").click()
    expect(row(page, v1).get_by_test_id("current-badge")).to_be_visible(timeout=20_000)
    assert App.objects.get(name=name).current_revision_id == v1.id


def test_after_a_cli_rollback_on_call_sees_who_when_why_and_the_hold_and_releases_it(
    system, cli, people, page, tmp_path
):
    name = _name("held")
    v1 = deploy(cli, tmp_path, name, "v1")
    v2 = deploy(cli, tmp_path, name, "v2")
    cli.set_rev(name, v1.short_id, strategy="recreate", reason="checkout answers 500")
    sign_in(page, system.api_url, "deployer-user", PASSWORD)

    page.goto(system.api_url + "/")
    app_row = page.locator(f'[data-app="{name}"]')
    expect(app_row.get_by_test_id("app-held")).to_be_visible()
    story = app_row.get_by_test_id("current-story")
    for words in ("Current since", "set by admin-user", "rollback", "checkout answers 500"):
        expect(story).to_contain_text(words)
    save_screenshot(page, "apps-current-since-by.png")

    page.goto(versions_url(system, name))
    banner = page.get_by_test_id("hold-banner")
    for words in ("admin-user", v1.short_id, "checkout answers 500", "do not go live"):
        expect(banner).to_contain_text(words)
    summary = page.locator(".app-summary")
    expect(summary.get_by_test_id("current-story")).to_contain_text("rollback")
    expect(summary.get_by_test_id("summary-previous")).to_contain_text("Switch to previous")
    expect(row(page, v2).get_by_test_id("previous-badge")).to_be_visible()
    expect(row(page, v2).get_by_test_id("rollback-button")).to_have_text("Switch to")
    save_screenshot(page, "hold-banner.png")

    banner.get_by_test_id("release-button").click()
    page.get_by_test_id("confirm-dialog").get_by_test_id("confirm-button").click()
    expect(page.get_by_test_id("hold-banner")).to_have_count(0, timeout=20_000)
    assert not App.objects.get(name=name).held


def test_with_the_worker_paused_a_queued_action_counts_its_wait_and_says_what_to_check(
    system, cli, people, page, tmp_path
):
    name = _name("paused")
    v1 = deploy(cli, tmp_path, name, "v1")
    deploy(cli, tmp_path, name, "v2")
    sign_in(page, system.api_url, "deployer-user", PASSWORD)
    page.goto(versions_url(system, name))
    os.kill(system.worker.pid, signal.SIGSTOP)
    try:
        _open_rollback(page, v1).get_by_test_id("confirm-button").click()
        panel = page.get_by_test_id("action-panel").first
        expect(panel.get_by_test_id("panel-elapsed")).to_contain_text(re.compile(r"waiting \d+ s"))
        expect(panel.get_by_test_id("panel-stalled")).to_be_visible(timeout=30_000)
        expect(panel.get_by_test_id("panel-stalled")).to_contain_text("celery -A dashboard worker")
        expect(panel.get_by_test_id("panel-cli")).to_have_text(
            re.compile(rf"switchboard apps set-rev {name} {v1.short_id} --strategy recreate")
        )
        save_screenshot(page, "panel-worker-paused.png")
    finally:
        os.kill(system.worker.pid, signal.SIGCONT)
    # Not lost: once the worker runs again the rollback goes through.
    expect(panel).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(row(page, v1).get_by_test_id("current-badge")).to_be_visible()


def test_refreshes_keep_keyboard_focus_and_opened_details(system, cli, people, page, tmp_path):
    name = _name("focus")
    v1 = deploy(cli, tmp_path, name, "v1")
    deploy(cli, tmp_path, name, "v2")
    sign_in(page, system.api_url, "deployer-user", PASSWORD)
    page.goto(versions_url(system, name))

    # The first Tab reaches the skip link, shown while focused.
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    url = row(page, v1).locator("details.rev-url")
    url.locator("summary").focus()
    page.keyboard.press("Enter")  # Opens the revision's URL.
    expect(url).to_have_attribute("open", "")
    button = row(page, v1).get_by_test_id("rollback-button")
    button.focus()
    page.evaluate("document.getElementById('versions-region').sbMarker = 'before'")

    cli.scale(name, {"keep_alive": 90})  # The table refreshes with the change.
    region = page.get_by_test_id("versions-region")
    expect(region).to_contain_text("keep-alive 90s")
    expect(button).to_be_focused()
    expect(url).to_have_attribute("open", "")
    # Morphed, not replaced: the region is the same element.
    assert page.evaluate("document.getElementById('versions-region').sbMarker") == "before"

    # The Apps page polls every 2 s; focus stays on the link through two refreshes.
    page.goto(system.api_url + "/")
    link = page.locator(f'[data-app="{name}"] a.app-link')
    link.focus()
    for _ in range(2):
        with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true"):
            pass
    expect(link).to_be_focused()


def test_on_a_phone_the_rollback_dialogs_confirm_is_on_screen(system, cli, people, phone, tmp_path):
    name = _name("phone")
    v1 = deploy(cli, tmp_path, name, "v1")
    deploy(cli, tmp_path, name, "v2")
    sign_in(phone, system.api_url, "deployer-user", PASSWORD)
    phone.goto(versions_url(system, name))
    row(phone, v1).get_by_test_id("rollback-button").click()
    dialog = phone.get_by_test_id("confirm-dialog")
    confirm = dialog.get_by_test_id("confirm-button")
    expect(confirm).to_be_in_viewport(ratio=1)
    expect(dialog.get_by_test_id("unchanged-settings")).to_contain_text("unchanged")
    for button in dialog.locator("button:visible, summary:visible").all():
        box = button.bounding_box()
        assert box["height"] >= 24, (
            f"touch target under 24 px: {button.evaluate('e => e.outerHTML')}"
        )
    save_screenshot(phone, "phone-rollback-dialog.png")
